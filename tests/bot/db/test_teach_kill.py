"""Nothing the bot told a member it had saved is lost (issue 19, crash safety), end to end:
the real bot process (``python -m bot``, local backend) against the simulator, on SQLite
and PostgreSQL, answers /teach with "Learned", is killed with SIGKILL right after that
reply, and once started again has the image: its row, its file (the same bytes) and the
label in /labels."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from pathlib import Path

import pytest

from bot.db import Store
from tests.bot.core.test_lifecycle import descendants, finish, run_bot_process, wait_exited
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import World, data_dir_with_model, flower_bytes
from tests.discord_sim import Application

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def start(
    world: World, app: Application, env: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    proc = await run_bot_process(env, cwd)
    connected = asyncio.create_task(world.sim.wait_connected(app, timeout_s=180))
    exited = asyncio.create_task(proc.wait())
    await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
    if exited.done():
        connected.cancel()
        pytest.fail(f"the bot exited: {await finish(proc)}")
    exited.cancel()
    return proc


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_bot_killed_right_after_teach_replied_still_has_the_image(
    world: World,
    tiny_model: Path,
    tiny_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
    engine: str,
):
    sim = world.sim
    tmp = tmp_path_factory.mktemp(f"teach-kill-{engine}")
    app = sim.create_application(f"TeachKillBot-{engine}")
    sim.guilds[world.guild.id].members.setdefault(app.user.id, [])
    data = data_dir_with_model(tmp_path_factory, tiny_model, f"teach-kill-data-{engine}")
    image = flower_bytes("daisy", 5)
    async with database_url(engine, tmp) as url:
        env = {
            **sim.bot_env(app),
            "DATA_DIR": str(data),
            "DATASET_DIR": str(tiny_dataset),
            "DATABASE_URL": url,
            "LOCAL_WORKERS": "1",
            "DEV_GUILD_ID": str(world.guild.id),
        }
        proc = await start(world, app, env, tmp)
        children = descendants(proc.pid)
        att = sim.upload(image, "kept.jpg")
        options = {"label": "kept", "image": att}
        ix = await sim.slash(app, world.general, world.admin, "teach images", options)
        reply = await sim.wait_response(ix, timeout_s=60)
        proc.send_signal(signal.SIGKILL)  # the moment the member read "Learned"
        code, _ = await finish(proc)
        assert code == -signal.SIGKILL
        assert reply.content.startswith("Learned **kept** from `kept.jpg`"), reply.content
        for pid in await wait_exited(children, timeout_s=30):  # workers left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await sim.wait_until(lambda: not sim.session_for(app), 30)

        proc = await start(world, app, env, tmp)  # the start-up check runs first
        try:
            ix = await sim.slash(app, world.general, world.alice, "labels", {})
            shown = str((await sim.wait_response(ix, timeout_s=60)).embeds)
            assert "kept" in shown, shown
        finally:
            proc.send_signal(signal.SIGTERM)
            code, output = await finish(proc, timeout_s=120)
        assert code == 0, output
        store = Store(url, data)
        await store.open()
        try:
            [record] = await store.guild(world.guild.id).taught()
            assert record.label == "kept" and record.missing_since is None
            assert record.sha256 == hashlib.sha256(image).hexdigest()
            assert record.path.read_bytes() == image
        finally:
            await store.close()
