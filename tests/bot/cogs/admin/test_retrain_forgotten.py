"""A retrain whose server forgot something while it ran registers nothing (issue 19, item
1), through the simulator and the real bot: /forget all, /forget label and the retention
purge during /retrain and during the auto-retrain. The backend's retrain is held at a gate
while the server forgets; the member who ran /retrain is told why nothing was registered,
and the forgotten server's rows and folder do not come back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import World
from tests.bot.tenancy_world import Servers, poll, two_servers
from tests.discord_sim import Interaction

pytestmark = pytest.mark.asyncio(loop_scope="session")

FORGOTTEN = (
    "❌ Retraining failed: This server's data changed while the retrain ran (something was "
    "forgotten), so its model was discarded. Run /retrain again to train on what is left."
)


async def servers_on(
    request: pytest.FixtureRequest, world: World, tmp_path: Path, env: dict[str, str]
) -> AsyncIterator[Servers]:
    """Two servers on a new bot whose database is SQLite or PostgreSQL (the parameter)."""
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path, {"DATABASE_URL": url, **env}):
            yield servers


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def servers(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Servers]:
    async for s in servers_on(request, world, tmp_path, {}):
        yield s


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def purging(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Servers]:
    """The bot purges a server as soon as it leaves."""
    env = {"GUILD_DATA_RETENTION_DAYS": "0", "RETENTION_CHECK_INTERVAL_S": "0.2"}
    async for s in servers_on(request, world, tmp_path, env):
        yield s


async def start_held_retrain(s: Servers) -> Interaction:
    """/retrain in server A, its training held by the backend until the gate opens."""
    s.backend.retrain_gate = asyncio.Event()
    s.backend.retraining.clear()
    ix = await s.ix(s.admin_a, s.a_chan, "retrain")
    await asyncio.wait_for(s.backend.retraining.wait(), 15)
    return ix


async def test_forget_all_while_retraining_registers_nothing(servers: Servers):
    s = servers
    a = s.bot.bot.store.guild(s.a.id)
    for i in range(2):
        await s.teach(s.admin_a, s.a_chan, "rose", i)
    ix = await start_held_retrain(s)
    ask = await s.run(s.admin_a, s.a_chan, "forget all")
    await s.bot.sim.press_button(s.bot.app, ask, s.admin_a, "Forget everything")
    await s.bot.sim.wait_until(lambda: ask.content.startswith("Forgotten:"))
    s.backend.retrain_gate.set()
    failed = await s.bot.sim.wait_response(ix, predicate=lambda m: "failed" in m.content)
    assert failed.content == FORGOTTEN and not failed.ephemeral
    assert await a.current_model() is None and await a.models() == []
    assert await a.taught() == [] and await a.last_retrain() is None
    assert not a.folder.exists()  # the trained file was removed, and the folder again
    answer = await s.classify(s.a_chan)
    assert answer.embeds[0]["footer"]["text"] == "model scripted-1"  # the default model


async def test_forget_label_while_retraining_registers_nothing(servers: Servers):
    s = servers
    a = s.bot.bot.store.guild(s.a.id)
    for i, label in enumerate(("rose", "rose", "lily", "lily")):
        await s.teach(s.admin_a, s.a_chan, label, i)
    ix = await start_held_retrain(s)
    forgot = await s.run(s.admin_a, s.a_chan, "forget label", label="rose")
    assert forgot.content.startswith("Forgot 2 taught image(s)")
    s.backend.retrain_gate.set()
    failed = await s.bot.sim.wait_response(ix, predicate=lambda m: "failed" in m.content)
    assert failed.content == FORGOTTEN
    assert await a.current_model() is None
    assert list(a.models_dir.glob("*.model")) == []  # the discarded model's file
    retrain = await a.last_retrain()
    assert retrain is not None and retrain.outcome == "failed"
    # run again, as the message says: trained on what is left
    s.backend.retrain_gate = None
    report = await s.retrain(s.admin_a, s.a_chan)
    assert report.embeds and report.embeds[0]["title"] == "Retraining finished"
    model = await a.current_model()
    assert model is not None and model.labels == ("lily",)


async def test_the_retention_purge_during_an_auto_retrain_registers_nothing(purging: Servers):
    s = purging
    a = s.bot.bot.store.guild(s.a.id)
    auto = s.bot.bot.get_cog("AutoRetrainCog")
    assert auto is not None
    await s.run(s.admin_a, s.a_chan, "settings", auto_retrain=2)
    s.backend.retrain_gate = asyncio.Event()
    for i in range(2):
        await s.teach(s.admin_a, s.a_chan, "rose", i)
    await asyncio.wait_for(s.backend.retraining.wait(), 15)  # the auto-retrain trains
    folder = a.folder
    await s.bot.sim.remove_bot(s.bot.app, s.a)  # the bot leaves: purged at once
    await poll(lambda: not folder.exists())
    s.backend.retrain_gate.set()
    await poll(lambda: s.a.id in auto.outcomes)  # type: ignore[attr-defined]
    outcome = auto.outcomes[s.a.id]  # type: ignore[attr-defined]
    assert not outcome.ok and outcome.detail.startswith(
        "failed: This server's data changed while the retrain ran"
    )
    assert await a.current_model() is None and await a.taught() == []
    assert s.a.id not in await s.bot.bot.store.operator.scope_ids()  # no row came back
    assert not folder.exists()
