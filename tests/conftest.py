"""Fixtures shared by every test folder."""

from tests.browser import browser_page  # noqa: F401  (a fixture: a real Chromium page)
