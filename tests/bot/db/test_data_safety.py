"""The two misconfigured starts of issue 19, with the real bot (``python -m bot``, local
backend) against the simulator, on SQLite and PostgreSQL: a server taught 6 images, the bot
stopped, then started (1) with ``DATABASE_URL`` at a new, empty database and (2) on the
right database while the servers' folder is missing. Both starts refuse with exit code 7
and one message naming the database, the data folder and the fix; nothing is deleted;
once corrected the bot starts and the server still has its 6 images."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from pathlib import Path

import pytest

from bot.db import Store
from bot.db.repair import check_at_start
from tests.bot.core.test_lifecycle import finish, run_bot_process
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import World, data_dir_with_model, flower_bytes
from tests.discord_sim import Application

pytestmark = pytest.mark.asyncio(loop_scope="session")


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 (the database files aside)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("bot.db")
    }


async def taught_six(url: str, data: Path, guild_id: int) -> None:
    """A server taught 6 images with a bot that then stopped (its start wrote the
    identity)."""
    store = Store(url, data)
    await store.open()
    try:
        await check_at_start(store)
        for i in range(6):
            await store.guild(guild_id).add_taught(
                "daisy", flower_bytes("daisy", i), "jpg", user_id=7, user_name="ann"
            )
    finally:
        await store.close()


async def refused(env: dict[str, str], cwd: Path, url_shown: str, data: Path) -> str:
    proc = await run_bot_process(env, cwd)
    code, output = await finish(proc, timeout_s=180)
    assert code == 7, output
    assert "Refusing to start" in output and "Traceback" not in output
    assert url_shown in output and str(data) in output  # (pytest gives resolved paths)
    assert "python -m bot db repair" in output
    return output


async def serves_six(world: World, app: Application, env: dict[str, str], cwd: Path) -> None:
    """The bot starts, and /labels shows the server's 6 daisies."""
    sim = world.sim
    proc = await run_bot_process(env, cwd)
    try:
        connected = asyncio.create_task(sim.wait_connected(app, timeout_s=180))
        exited = asyncio.create_task(proc.wait())
        await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            connected.cancel()
            pytest.fail(f"the bot exited: {await finish(proc)}")
        exited.cancel()
        ix = await sim.slash(app, world.general, world.alice, "labels", {})
        reply = await sim.wait_response(ix, timeout_s=60)
        shown = str(reply.embeds)
        assert "daisy" in shown and "6" in shown, shown
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code, output = await finish(proc, timeout_s=120)
    assert code == 0, output


@pytest.mark.parametrize("engine", ENGINES)
async def test_misconfigured_starts_refuse_delete_nothing_and_work_once_fixed(
    world: World,
    tiny_model: Path,
    tiny_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
    engine: str,
):
    sim = world.sim
    tmp = tmp_path_factory.mktemp(f"safety-{engine}")
    app = sim.create_application(f"SafetyBot-{engine}")
    sim.guilds[world.guild.id].members.setdefault(app.user.id, [])
    data = data_dir_with_model(tmp_path_factory, tiny_model, f"safety-data-{engine}")
    async with (
        database_url(engine, tmp / "right") as right,
        database_url(engine, tmp / "new") as empty,
    ):
        for sub in ("right", "new"):
            (tmp / sub).mkdir(exist_ok=True)
        await taught_six(right, data, world.guild.id)
        before = tree(data)
        assert len([n for n in before if n.endswith(".jpg")]) == 6
        env = {
            **sim.bot_env(app),
            "DATA_DIR": str(data),
            "DATASET_DIR": str(tiny_dataset),
            "LOCAL_WORKERS": "1",
            "DEV_GUILD_ID": str(world.guild.id),
        }
        # (1) a new, empty database beside the server's files
        shown = empty.split("@")[-1] if engine == "postgresql" else empty
        await refused({**env, "DATABASE_URL": empty}, tmp, shown, data)
        assert tree(data) == before
        # (2) the right database, the servers' folder missing (a volume not mounted)
        (data / "guilds").rename(tmp / "unmounted")
        right_shown = right.split("@")[-1] if engine == "postgresql" else right
        await refused({**env, "DATABASE_URL": right}, tmp, right_shown, data)
        (tmp / "unmounted").rename(data / "guilds")
        assert tree(data) == before
        store = Store(right, data)
        await store.open()
        try:  # no row deleted, none marked
            assert len(await store.guild(world.guild.id).taught(include_missing=True)) == 6
            assert await store.guild(world.guild.id).missing_files() == {}
        finally:
            await store.close()
        # corrected: the bot starts and the server has its images
        await serves_six(world, app, {**env, "DATABASE_URL": right}, tmp)
        assert tree(data) == before
