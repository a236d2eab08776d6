"""Bursts through the door with the real bot and the real local backend (one worker, the
session's small model), through the simulator: 100 /classify at once from one server,
60 over three servers, and ``python -m bot`` stopped by SIGTERM with a full queue."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.core.test_lifecycle import finish, run_bot_process
from tests.bot.crowd_world import Crowd, crowd
from tests.bot.harness import World, data_dir_with_model, flower_bytes
from tests.discord_sim import Interaction, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

RESTARTING = "I'm restarting right now. Please try again in a minute."


def is_answer(msg: Message) -> bool:
    return bool(msg.embeds) and "%" in msg.embeds[0].get("title", "")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def real(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Crowd]:
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "burst-data")
    env = {"DATASET_DIR": str(tiny_dataset), "LOCAL_WORKERS": "1"}  # the default bound, 10 s
    async for c in crowd(world, data_dir, env, backend=None, servers=3, members=100):
        yield c


async def test_a_hundred_at_once_from_one_server_are_all_answered(real: Crowd):
    """Issue 20: the old gate answered 8 of them and told 92 "busy"."""
    c = real
    s = c.servers[0]
    admission = c.bot.bot.admission
    before = Counter(admission.stats().admitted)
    started = time.monotonic()
    ixs = [await c.classify(s, index=i) for i in range(100)]
    replies = await c.replies(ixs, timeout_s=120)
    took = time.monotonic() - started
    assert all(is_answer(m) and not m.ephemeral for m in replies), Counter(
        m.text[:60] for m in replies if not is_answer(m)
    )
    assert Counter(admission.stats().admitted) - before == {"classify": 100}
    assert admission.stats().refused == {}
    assert not any(ix.late for ix in ixs)  # each acknowledged within Discord's 3 s
    assert took < 60, f"the last answer after {took:.1f} s"


async def test_sixty_at_once_over_three_servers_are_all_answered(real: Crowd):
    """Issue 20: the old gate answered 16 of them and told 44 "busy"."""
    c = real
    ixs: list[Interaction] = []
    for i in range(20):
        for s in c.servers:
            ixs.append(await c.classify(s, index=40 + i))
    replies = await c.replies(ixs, timeout_s=120)
    assert all(is_answer(m) for m in replies), Counter(m.text[:60] for m in replies)
    assert c.bot.bot.admission.stats().refused == {}
    assert not any(ix.late for ix in ixs)


async def test_sigterm_with_a_full_queue_tells_every_member_and_exits_0(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
):
    """``python -m bot``, 300 /classify at once, SIGTERM once the first is answered: every
    member gets a label or is told the bot is restarting; none is left without an answer,
    and the process exits 0 with no traceback."""
    sim = world.sim
    owner = sim.create_user("sigterm-owner")
    guild = sim.create_guild("Full queue", owner)
    channel = sim.create_channel(guild, "general")
    members = [sim.create_user(f"queued{i}") for i in range(300)]
    for user in members:
        sim.add_member(guild, user)
    app = sim.create_application("FullQueueBot")
    guild.members.setdefault(app.user.id, [])
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "sigterm-data")
    env = {
        **sim.bot_env(app),
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(tiny_dataset),
        "LOCAL_WORKERS": "1",
        "DEV_GUILD_ID": str(guild.id),
        "MAX_QUEUE_WAIT_S": "120",  # all are admitted: most still wait at the SIGTERM
        "SHUTDOWN_GRACE_S": "10",
    }
    proc = await run_bot_process(env, data_dir)
    try:
        connected = asyncio.create_task(sim.wait_connected(app, timeout_s=120))
        exited = asyncio.create_task(proc.wait())
        await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
        assert not exited.done(), await finish(proc)
        image = flower_bytes("daisy", 9)
        ixs = [
            await sim.slash(app, channel, user, "classify", {"image": sim.upload(image, "q.jpg")})
            for user in members
        ]
        await sim.wait_until(lambda: any(ix.final for ix in ixs), timeout_s=60)
        proc.send_signal(signal.SIGTERM)
        replies = list(await asyncio.gather(*(sim.wait_response(ix, timeout_s=60) for ix in ixs)))
        code, output = await finish(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        sim.guilds.pop(guild.id, None)
        sim.channels.pop(channel.id, None)
    kinds = Counter(
        "answer" if is_answer(m) else "restarting" if m.content == RESTARTING else m.text[:80]
        for m in replies
    )
    assert set(kinds) <= {"answer", "restarting"}, kinds
    assert kinds["restarting"] >= 1 and kinds["answer"] >= 1, kinds
    assert all(m.ephemeral for m in replies if not is_answer(m))
    assert code == 0, output
    assert "Traceback" not in output and "told" in output and "restarting" in output, output
