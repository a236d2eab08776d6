"""A real browser for the tests: Debian's Chromium driven by Playwright (async API).

Playwright's own browser download cannot reach its servers here, so the tests drive the
Debian package ``chromium`` (``bash .ci/chromium.sh`` installs it; ``CHROMIUM`` names
another binary), headless, in a fresh profile per test. A missing browser fails the test
with the command that installs it: it is never skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright

#: flags for a headless Chromium that talks to nothing but the pages a test opens
CHROMIUM_FLAGS = (
    "--no-sandbox",  # root in CI; the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> Path:
    """The Chromium binary, or a failed test saying how to install it."""
    configured = os.environ.get("CHROMIUM")
    found = configured or shutil.which("chromium") or "/usr/bin/chromium"
    path = Path(found)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"Chromium is not installed ({path} is missing): the browser tests need it. "
            "Run `bash .ci/chromium.sh` as root (Debian's package `chromium`).",
            pytrace=False,
        )
    return path


@pytest_asyncio.fixture
async def browser_page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium (its own profile folder, nothing shared)."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_FLAGS),
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            await context.close()
