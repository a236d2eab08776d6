"""`.env.example` documents every setting, and only real ones."""

import re
from pathlib import Path

from bot.core.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def _names() -> set[str]:
    pattern = re.compile(r"^#?([A-Z][A-Z0-9_]+)=", re.MULTILINE)
    return set(pattern.findall(ENV_EXAMPLE.read_text()))


def test_every_setting_is_documented():
    fields = {name.upper() for name in Settings.model_fields}
    missing = fields - _names()
    assert not missing, f".env.example lacks: {sorted(missing)}"


def test_no_stale_names_in_env_example():
    fields = {name.upper() for name in Settings.model_fields}
    stale = _names() - fields
    assert not stale, f".env.example names settings that do not exist: {sorted(stale)}"


def test_every_setting_has_a_comment_above_it():
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#?[A-Z][A-Z0-9_]+=", line):
            above = lines[i - 1]
            assert above.startswith("#"), f"no comment above {line!r}"
