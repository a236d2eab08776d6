"""Sharding: ``SHARD_COUNT``/``SHARD_IDS`` against a simulator that routes each server's
events to shard ``(guild_id >> 22) % shard_count``, as Discord does.

The two-process test runs ``python -m bot`` twice (shards 0,1 and 2,3 of 4), with the real
LocalBackend, on the current per-process JSON store (each process its own DATA_DIR):
every server's image gets exactly one auto-reply.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.core.sharding import ShardedClassifierBot
from tests.bot.core.test_lifecycle import finish, run_bot_process
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import World, data_dir_with_model, flower_bytes, launch_scripted
from tests.bot.harness import settings_from_env as settings_of
from tests.discord_sim.model import _EPOCH_MS

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHARDS = 4


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_IDS": "0"}, "needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "0,2"}, "not in 0..1"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1,1"}, "twice"),
        ({"SHARD_COUNT": "0"}, "greater than or equal to 1"),
        ({"SHARD_COUNT": "two"}, "valid integer"),
    ],
)
async def test_bad_shard_settings_are_refused(env: dict[str, str], message: str):
    with pytest.raises(ValidationError, match=message):
        settings_of({"DISCORD_TOKEN": "a.b.c", **env})


async def test_one_process_runs_every_shard_of_shard_count(world: World, tmp_path: Path):
    sim = world.sim
    running, _ = await launch_scripted(world, "ShardedOne", tmp_path, {"SHARD_COUNT": "2"})
    try:
        assert isinstance(running.bot, ShardedClassifierBot)
        sim.recommended_shards = 3  # what AutoShardedBot asks when SHARD_COUNT is not given
        shards, url, limits = await running.bot.http.get_bot_gateway()
        assert (shards, url) == (3, sim.gateway_url)
        assert limits["max_concurrency"] >= 1
        await sim.wait_until(lambda: len(sim.shard_sessions(running.app)) == 2, timeout_s=30)
        assert [s.shard_id for s in sim.shard_sessions(running.app)] == [0, 1]
        ix = await running.slash(world.alice, "labels")
        assert "daisy" in str((await running.reply(ix)).embeds)
    finally:
        sim.recommended_shards = 1
        await running.stop()


def guild_id_on_shard(shard: int, step: int) -> int:
    """A server id that Discord routes to ``shard`` of ``SHARDS``."""
    ms = int(time.time() * 1000) - _EPOCH_MS + step * SHARDS
    ms -= ms % SHARDS
    return ((ms + shard) << 22) | step


@pytest.mark.parametrize("engine", ENGINES)
async def test_two_processes_two_shards_each_answer_every_server_once(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path: Path, engine: str
):
    """SQLite: each process its own database file; PostgreSQL: both share one database
    (both migrate it at start, concurrently)."""
    async with database_url(engine, tmp_path) as url:
        await _two_processes(world, tiny_model, tiny_dataset, tmp_path, url, engine)


async def _two_processes(world, tiny_model, tiny_dataset, tmp_path, url: str, engine: str):
    sim = world.sim
    app = sim.create_application(f"ShardedPair-{engine}")
    guilds, channels = [], []
    for step in range(2):
        for shard in range(SHARDS):
            owner = sim.create_user(f"shard{shard}-owner{step}-{engine}")
            gid = guild_id_on_shard(shard, step + (10 if engine == "postgresql" else 0))
            guild = sim.create_guild(f"shard {shard} #{step}", owner, guild_id=gid)
            guilds.append(guild)
            channels.append(sim.create_channel(guild, "flowers"))
    assert sorted((g.id >> 22) % SHARDS for g in guilds) == [0, 0, 1, 1, 2, 2, 3, 3]
    common = {
        **sim.bot_env(app),
        "DATASET_DIR": str(tiny_dataset),
        "LOCAL_WORKERS": "1",
        "MESSAGE_CONTENT_INTENT": "true",
        "SYNC_COMMANDS": "false",
        "AUTOCLASSIFY_CHANNEL_IDS": ",".join(str(c.id) for c in channels),
        "COOLDOWN_USES": "1000",
        "SHARD_COUNT": str(SHARDS),
    }
    procs = []
    for n, ids in enumerate(("0,1", "2,3")):
        data_dir = data_dir_with_model_at(tmp_path / f"p{n}", tiny_model)
        env = {**common, "SHARD_IDS": ids, "DATA_DIR": str(data_dir)}
        if engine == "postgresql":
            env["DATABASE_URL"] = url
        procs.append(await run_bot_process(env, tmp_path))
    try:
        connected = asyncio.create_task(
            sim.wait_until(lambda: len(sim.shard_sessions(app)) == SHARDS, timeout_s=120)
        )
        exited = [asyncio.create_task(p.wait()) for p in procs]
        await asyncio.wait([connected, *exited], return_when=asyncio.FIRST_COMPLETED)
        for task in exited:
            task.cancel()
        if not connected.done():
            connected.cancel()
            failed = [p for p in procs if p.returncode is not None]
            outputs = [await finish(p) for p in failed]
            raise AssertionError(f"a bot process stopped before connecting: {outputs}")
        connected.result()
        assert [s.shard_id for s in sim.shard_sessions(app)] == [0, 1, 2, 3]
        assert {s.shard_count for s in sim.shard_sessions(app)} == {SHARDS}
        poster = sim.create_user("shard-poster")
        posted = []
        for i, (guild, channel) in enumerate(zip(guilds, channels, strict=True)):
            sim.add_member(guild, poster)
            att = sim.upload(flower_bytes("daisy", 60 + i), f"d{i}.jpg", content_type="image/jpeg")
            posted.append(await sim.post_message(channel, poster, "", [att]))

        def replies(channel):
            return [m for m in sim.bot_messages(channel) if m.author.id == app.user.id]

        await sim.wait_until(lambda: all(replies(c) for c in channels), timeout_s=120)
        # a duplicate (a server's event sent to, or answered by, two shards) would arrive
        # as fast as the first answer: give it that long again before counting
        await asyncio.sleep(1.0)
        counts = [len(replies(c)) for c in channels]
        assert counts == [1] * len(channels), counts
        for msg, channel in zip(posted, channels, strict=True):
            assert replies(channel)[0].reference_id == msg.id
    finally:
        outputs = []
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            outputs.append(await finish(proc, timeout_s=60))
    for code, output in outputs:
        assert code == 0, output
        assert "Traceback" not in output, output


def data_dir_with_model_at(path: Path, model: Path) -> Path:
    class _Factory:  # data_dir_with_model wants a tmp_path_factory
        @staticmethod
        def mktemp(name: str) -> Path:
            path.mkdir(parents=True)
            return path

    return data_dir_with_model(_Factory, model, path.name)
