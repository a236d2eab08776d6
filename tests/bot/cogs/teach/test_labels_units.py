"""Labels as members type them: folded to one canonical form, or refused with the rules."""

from __future__ import annotations

import pytest

from bot.cogs.teach import normalize_label
from bot.core.errors import UserError
from golem_backend import UNKNOWN


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Daisy", "daisy"), (" blue bell ", "blue_bell"), ("lily-2", "lily-2")],
)
def test_label_normalisation(raw, expected):
    assert normalize_label(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "..", "../x", "a/b", "a\\b", "x" * 33, "é", "_x", "a\x00b", UNKNOWN, "a.b"]
)
def test_label_validation(raw):
    with pytest.raises(UserError):
        normalize_label(raw)
