"""The JSON state of earlier versions is imported on first start, nothing lost; and the
database and files agree after the process is killed between writing a file and
committing its row."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.db import Store
from bot.db.repair import check_at_start
from tests.bot.db import legacy_v1
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import ROOT, World, flower_bytes, launch, stored_taught
from tests.discord_sim import ADMINISTRATOR

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def write_legacy_state(data_dir: Path, guild_id: int, channel_id: int) -> list[bytes]:
    """What a bot of the previous version left: two server images, one DM image."""
    old = legacy_v1.BotStore(data_dir / "bot-state.json")
    images = [flower_bytes("daisy", 0), flower_bytes("daisy", 1), flower_bytes("tulip", 0)]
    for data, label, gid in zip(
        images, ("daisy", "daisy", "tulip"), (guild_id, guild_id, None), strict=True
    ):
        rec = legacy_v1.save_taught_image(
            data_dir, label, data, user_id=42, user_name="olduser#1", guild_id=gid
        )
        assert await old.add_taught(rec)
    assert await old.set_watched(channel_id, True)
    return images


async def test_the_json_state_is_imported_on_first_start(world: World, tmp_path: Path):
    sim = world.sim
    owner = sim.create_user("import-owner")
    guild = sim.create_guild("Imported server", owner)
    chan = sim.create_channel(guild, "watched-before")
    admin = sim.create_user("import-admin")
    sim.add_member(guild, admin, ADMINISTRATOR)
    images = await write_legacy_state(tmp_path, guild.id, chan.id)
    app = sim.create_application("ImportBot")
    guild.members.setdefault(app.user.id, [])
    env = {
        "DATA_DIR": str(tmp_path),
        "DATASET_DIR": str(tmp_path),
        "MESSAGE_CONTENT_INTENT": "true",
    }
    running = await launch(world, app, env, backend=ScriptedBackend())
    try:
        store = running.bot.store
        server = await store.guild(guild.id).taught()
        assert sorted(r.sha256 for r in server) == sorted(
            hashlib.sha256(d).hexdigest() for d in images[:2]
        )
        assert {(r.label, r.user_id, r.user_name) for r in server} == {("daisy", 42, "olduser#1")}
        assert all(r.path.read_bytes() in images for r in server)
        [dm] = await store.default_scope().taught()
        assert dm.label == "tulip" and dm.path.read_bytes() == images[2]
        # the watched channel joined its server when the server showed up
        for _ in range(100):
            if await store.guild(guild.id).watched_channels():
                break
            await asyncio.sleep(0.02)
        assert await store.guild(guild.id).watched_channels() == {chan.id}
        att = sim.upload(flower_bytes("daisy", 3), "d.jpg", content_type="image/jpeg")
        posted = await sim.post_message(chan, admin, "", [att])
        reply = await sim.wait_bot_message(lambda m: m.reference_id == posted.id)
        assert reply.embeds[0]["title"].startswith("daisy")
    finally:
        await running.stop()
    assert not (tmp_path / "bot-state.json").exists()
    assert json.loads((tmp_path / "bot-state.json.imported").read_text())["version"] == 1
    # a second start imports nothing twice
    again = await stored_taught(running.settings, guild.id)
    assert len(again) == 2


async def test_hostile_and_broken_records_are_reported_not_imported(tmp_path: Path):
    from bot.db.legacy import import_json_state

    (tmp_path / "taught" / "daisy").mkdir(parents=True)
    good = flower_bytes("daisy")
    digest = hashlib.sha256(good).hexdigest()
    (tmp_path / "taught" / "daisy" / f"{digest}.jpg").write_bytes(good)
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    base = {
        "sha256": digest,
        "user_id": 1,
        "user_name": "u",
        "guild_id": 5,
        "added_at": "2026-01-01T00:00:00+00:00",
    }
    records = [
        {**base, "label": "daisy", "path": f"taught/daisy/{digest}.jpg"},
        {**base, "label": "daisy", "path": "taught/../secret.jpg"},
        {**base, "label": "../x", "path": f"taught/daisy/{digest}.jpg"},
        {**base, "label": "daisy", "path": "taught/daisy/missing.jpg"},
    ]
    state = tmp_path / "bot-state.json"
    state.write_text(json.dumps({"version": 1, "watched_channels": [7], "taught": records}))
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", tmp_path)
    await store.open()
    try:
        report = await import_json_state(store, state)
        assert report is not None and report.images == 1 and report.channels == 1
        assert [p.split(":")[0] for p in report.problems] == ["taught[1]", "taught[2]", "taught[3]"]
        assert "outside the taught folder" in report.problems[0]
        [rec] = await store.guild(5).taught()
        assert rec.path.read_bytes() == good
        assert await import_json_state(store, state) is None  # renamed: done
    finally:
        await store.close()


@pytest.mark.parametrize("content", ["{not json", '{"version": 9}', '{"taught": [1]}', "[]"])
async def test_an_unusable_state_file_is_kept_aside_and_the_bot_starts(
    tmp_path: Path, content: str
):
    from bot.db.legacy import import_json_state

    state = tmp_path / "bot-state.json"
    state.write_text(content)
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", tmp_path)
    await store.open()
    try:
        report = await import_json_state(store, state)
        assert report is not None and report.images == 0 and report.problems
    finally:
        await store.close()
    [kept] = list(tmp_path.glob("bot-state.json.corrupt-*"))  # noqa: ASYNC240
    assert kept.read_text() == content


CRASHER = """
import asyncio, os, sys, time
from pathlib import Path
from bot.db import Store, guild_data

def hang(path):
    print("written", path, flush=True)
    time.sleep(60)  # killed here: the file is on disk, its row is not committed

guild_data.after_file_written = hang

async def main():
    store = Store(sys.argv[1], Path(sys.argv[2]))
    await store.open()
    await store.guild(5).add_taught("daisy", Path(sys.argv[3]).read_bytes(), "jpg",
                                    user_id=1, user_name="u")

asyncio.run(main())
"""


async def test_a_process_killed_between_file_and_row_is_set_aside_at_start(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    image = tmp_path / "in.jpg"
    image.write_bytes(flower_bytes("daisy"))
    store = Store(url, tmp_path / "data")
    await store.open()
    await store.guild(5).add_taught(
        "daisy", flower_bytes("daisy", 1), "jpg", user_id=1, user_name="u"
    )
    await store.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHER,
        url,
        str(tmp_path / "data"),
        str(image),
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    written = Path(line.decode().split(" ", 1)[1].strip())
    assert written.is_file()  # noqa: ASYNC240
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    store = Store(url, tmp_path / "data")
    await store.open()
    try:
        report = await check_at_start(store)
        assert report.set_aside == [written] and report.set_aside_to is not None
        assert not written.exists()  # noqa: ASYNC240
        aside = report.set_aside_to / written.relative_to(tmp_path / "data")
        assert aside.read_bytes() == image.read_bytes()  # moved, never deleted
        [kept] = await store.guild(5).taught()  # the earlier, committed image is intact
        assert kept.path.read_bytes() == flower_bytes("daisy", 1)
    finally:
        await store.close()
