"""Discord unreachable at start: a login that never gets an answer, and a gateway that
refuses the first connection. ``python -m bot`` ends with one clear line and exit code 8
(no traceback); a gateway that comes back within ``GATEWAY_CONNECT_TIMEOUT_S`` is
connected to after retries with back-off.

Each test has a simulator of its own: the faults here (the gateway down, ``/users/@me``
hanging) would reach every other bot of the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.core.client import configure_endpoints
from bot.core.sharding import create_bot
from tests.bot.core.test_lifecycle import finish, run_bot_process
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import data_dir_with_model, settings_from_env
from tests.discord_sim import Application, DiscordSimulator

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def lone() -> AsyncIterator[tuple[DiscordSimulator, Application]]:
    sim = DiscordSimulator()
    await sim.start()
    owner = sim.create_user("owner")
    sim.create_guild("Lone server", owner)
    app = sim.create_application("LoneBot")
    try:
        yield sim, app
    finally:
        await sim.stop()


def errors_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


async def test_a_login_that_never_gets_an_answer_exits_7_with_one_line(
    lone: tuple[DiscordSimulator, Application], tmp_path: Path
):
    sim, app = lone
    sim.hang_next("GET", "/users/@me")
    env = {**sim.bot_env(app), "DATA_DIR": str(tmp_path), "DISCORD_REQUEST_TIMEOUT_S": "1"}
    started = time.monotonic()
    proc = await run_bot_process(env, tmp_path)
    code, output = await finish(proc, timeout_s=60)
    assert code == 8, output
    assert "Traceback" not in output, output
    [error] = errors_of(output)
    assert "Discord did not answer the login (GET /users/@me) within 1 s" in error
    assert sim.api_base in error  # names the DISCORD_API_BASE to check
    assert "logging in to Discord at" in output  # not silence while it waits
    assert time.monotonic() - started < 30
    assert sim.hung == [("GET", "/api/v10/users/@me")]


async def test_a_gateway_that_refuses_the_first_connection_exits_7_after_retries(
    lone: tuple[DiscordSimulator, Application],
    tiny_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    sim, app = lone
    sim.gateway_down = True  # every upgrade answered 503
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "gateway-down")
    env = {
        **sim.bot_env(app),
        "DATA_DIR": str(data_dir),
        "LOCAL_WORKERS": "1",
        "GATEWAY_CONNECT_TIMEOUT_S": "5",  # attempts at 0, 1 and 3 s
        "SYNC_COMMANDS": "false",
    }
    proc = await run_bot_process(env, data_dir)
    code, output = await finish(proc, timeout_s=120)
    assert code == 8, output
    assert "Traceback" not in output and "AttributeError" not in output, output
    [error] = errors_of(output)
    assert "gateway" in error and "refused the connection" in error and "HTTP 503" in error
    assert "DISCORD_GATEWAY_URL" in error
    retries = [line for line in output.splitlines() if "retrying in" in line]
    assert len(retries) == 2 and "retrying in 1 s" in retries[0] and "2 s" in retries[1]
    assert sim.gateway_refusals == len(retries) + 1
    assert "backend stopped" in output  # the start ends as cleanly as a stop


async def test_a_gateway_back_within_the_retries_is_connected_to(
    lone: tuple[DiscordSimulator, Application], tmp_path: Path
):
    sim, app = lone
    sim.gateway_down = True
    settings = settings_from_env(
        {**sim.bot_env(app), "DATA_DIR": str(tmp_path), "SYNC_COMMANDS": "false"}
    )
    configure_endpoints(settings)
    bot = create_bot(settings, backend=ScriptedBackend())
    task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
    try:
        await sim.wait_until(lambda: sim.gateway_refusals >= 2, timeout_s=30)
        assert not task.done(), task
        sim.gateway_down = False
        await sim.wait_connected(app, timeout_s=30, synced=False)
        assert not task.done() and bot.ws is not None
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 30)
    assert task.exception() is None
