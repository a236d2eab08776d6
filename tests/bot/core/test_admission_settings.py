"""MAX_QUEUE_WAIT_S, and an old .env naming a setting this version no longer has."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from bot.core.settings import Settings
from tests.bot.harness import settings_from_env


def test_max_queue_wait_defaults_to_ten_seconds_and_is_bounded():
    assert settings_from_env({"DISCORD_TOKEN": "a.b.c"}).max_queue_wait_s == 10.0
    assert (
        settings_from_env({"DISCORD_TOKEN": "a.b.c", "MAX_QUEUE_WAIT_S": "2.5"}).max_queue_wait_s
        == 2.5
    )
    for bad in ("0", "-1", "301", "soon"):
        with pytest.raises(ValidationError):
            settings_from_env({"DISCORD_TOKEN": "a.b.c", "MAX_QUEUE_WAIT_S": bad})


def test_an_old_env_file_with_a_setting_since_removed_still_starts(tmp_path, monkeypatch):
    """What lets MAX_CONCURRENT_REQUESTS go once admission replaces the fixed limit: a
    name the settings do not know is ignored, in .env as in the environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = tmp_path / ".env"
    env.write_text("DISCORD_TOKEN=a.b.c\nMAX_QUEUE_WAIT_S=4\nA_SETTING_SINCE_REMOVED=16\n")
    monkeypatch.setenv("ANOTHER_SETTING_SINCE_REMOVED", "8")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.max_queue_wait_s == 4.0
    assert not hasattr(settings, "a_setting_since_removed")


@pytest.mark.parametrize("where", ["env file", "environment"])
def test_max_concurrent_requests_is_gone_with_a_warning(where, tmp_path, monkeypatch, caplog):
    """An old .env (or environment) still setting MAX_CONCURRENT_REQUESTS starts, with a
    warning that says what replaced it."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = tmp_path / ".env"
    lines = ["DISCORD_TOKEN=a.b.c"]
    if where == "env file":
        lines.append("MAX_CONCURRENT_REQUESTS=16")
    else:
        monkeypatch.setenv("max_concurrent_requests", "8")  # any case, as the others
    env.write_text("\n".join(lines) + "\n")
    caplog.set_level(logging.WARNING, logger="bot.core.settings")
    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert "max_concurrent_requests" not in Settings.model_fields
    assert not hasattr(settings, "max_concurrent_requests")
    assert caplog.messages == [
        "MAX_CONCURRENT_REQUESTS is no longer used and is ignored: requests now queue at the "
        "door and are refused only past MAX_QUEUE_WAIT_S of expected wait "
        "(docs/operating.md, Admission); remove it from .env"
    ]
    caplog.clear()
    monkeypatch.delenv("max_concurrent_requests", raising=False)
    env.write_text("DISCORD_TOKEN=a.b.c\n")
    Settings(_env_file=env)  # type: ignore[call-arg]
    assert caplog.messages == []  # nothing said when it is not set
