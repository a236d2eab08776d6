"""The state file: a broken one is kept aside and the bot starts empty; a failed save
changes nothing and the user is told."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import bot.store
from bot.store import BotStore, StateSaveError, TaughtImage
from tests.bot.harness import RunningBot

RECORD = {
    "label": "daisy",
    "sha256": "ab" * 32,
    "path": f"taught/daisy/{'ab' * 32}.jpg",
    "user_id": 7,
    "user_name": "u",
    "guild_id": None,
    "added_at": "2024-01-01T00:00:00+00:00",
}


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def test_a_good_state_file_loads(tmp_path: Path):
    path = tmp_path / "bot-state.json"
    path.write_text(json.dumps({"version": 1, "watched_channels": [5, 6], "taught": [RECORD]}))
    store = BotStore(path)
    store.load()
    assert store.watched == {5, 6} and store.taught == [TaughtImage(**RECORD)]
    assert backups(path) == []


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '"x"',
        "null",
        "{not json",
        '{"watched_channels": "123"}',
        '{"watched_channels": [1, "2"]}',
        '{"watched_channels": [true]}',
        '{"taught": {}}',
        '{"taught": [1]}',
        '{"taught": [{"label": "daisy"}]}',
        json.dumps({"taught": [{**RECORD, "user_id": "7"}]}),
        json.dumps({"taught": [{**RECORD, "extra": 1}]}),
        '{"version": 99}',
    ],
)
def test_a_state_file_of_the_wrong_shape_is_kept_aside(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "bot-state.json"
    path.write_text(content)
    store = BotStore(path)
    store.load()
    assert store.watched == set() and store.taught == []
    [kept] = backups(path)
    assert kept.read_text() == content and not path.exists()
    assert f"state file {path} is unusable" in caplog.text and str(kept) in caplog.text


def test_an_unreadable_state_file_is_kept_aside(tmp_path: Path):
    path = tmp_path / "bot-state.json"
    path.mkdir()  # reading it raises IsADirectoryError, an OSError
    store = BotStore(path)
    store.load()
    assert store.watched == set() and len(backups(path)) == 1


def test_each_corruption_keeps_its_own_backup(tmp_path: Path):
    path = tmp_path / "bot-state.json"
    for content in ("[]", '"x"', "{bad"):
        path.write_text(content)
        BotStore(path).load()
    assert sorted(p.read_text() for p in backups(path)) == sorted(["[]", '"x"', "{bad"])


async def test_a_failed_save_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "bot-state.json"
    store = BotStore(path)
    assert await store.set_watched(1, True)

    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.store, "write_atomic", broken)
    with pytest.raises(StateSaveError):
        await store.set_watched(2, True)
    with pytest.raises(StateSaveError):
        await store.set_watched(1, False)
    with pytest.raises(StateSaveError):
        await store.add_taught(TaughtImage(**RECORD))
    assert store.watched == {1} and store.taught == []
    assert json.loads(path.read_text())["watched_channels"] == [1]


@pytest.mark.asyncio(loop_scope="session")
async def test_autoclassify_tells_the_user_when_the_state_cannot_be_saved(
    main_bot: RunningBot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    w = main_bot.world
    channel = w.sim.create_channel(w.guild, "disk-full")

    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.store, "write_atomic", broken)
    caplog.set_level(logging.ERROR, logger="bot.store")
    ix = await main_bot.slash(w.admin, "autoclassify", channel=channel, mode="on")
    msg = await main_bot.reply(ix)
    assert msg.ephemeral and msg.content.startswith("I couldn't save that to my state file")
    assert channel.id not in main_bot.bot.watched_channels()
    assert "No space left on device" in caplog.text
