"""Start-up, exit codes, logging hygiene and graceful shutdown of ``python -m bot``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import discord
import pytest

from bot.__main__ import exit_code_for
from bot.core.client import BackendStartFailed
from golem_backend import BackendUnavailable
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import (
    ROOT,
    World,
    data_dir_with_model,
    flower_bytes,
    launch,
    launch_scripted,
    stored_taught,
)
from tests.discord_sim import Application

pytestmark = pytest.mark.asyncio(loop_scope="session")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    from bot.core.settings import Settings

    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(extra)
    return env


#: each bot process's output file, by pid
_outputs: dict[int, Path] = {}


async def run_bot_process(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """``python -m bot`` with its output going to a file: a pipe nobody reads while the
    test waits would fill up (64 KB) and block the bot's logging, and so the bot."""
    with tempfile.NamedTemporaryFile("wb", dir=cwd, prefix="bot-output-", delete=False) as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=cwd,
            env=clean_env({**env, "PYTHONPATH": str(ROOT)}),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    _outputs[proc.pid] = Path(out.name)
    return proc


async def finish(proc: asyncio.subprocess.Process, timeout_s: float = 60) -> tuple[int, str]:
    """Wait for the process to exit: its exit code and everything it printed."""
    await asyncio.wait_for(proc.wait(), timeout_s)
    output = _outputs.pop(proc.pid).read_bytes().decode("utf-8", "replace")
    return proc.returncode or 0, output


def descendants(pid: int) -> set[int]:
    """Every live process whose ancestry includes ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


async def wait_exited(pids: set[int], timeout_s: float) -> set[int]:
    """Wait (via pidfd: an event, not a poll) until these processes exit; the survivors."""
    loop = asyncio.get_running_loop()
    waiters = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            continue
        done = loop.create_future()
        loop.add_reader(fd, lambda f=done: f.done() or f.set_result(None))
        waiters.append((pid, fd, done))
    if waiters:
        await asyncio.wait([w[2] for w in waiters], timeout=timeout_s)
    for _, fd, _ in waiters:
        loop.remove_reader(fd)
        os.close(fd)
    return {pid for pid, _, done in waiters if not done.done() and alive(pid)}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_sigterm_stops_cleanly_and_the_token_never_reaches_the_logs(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
):
    sim = world.sim
    app = sim.create_application("ProcessBot")
    sim.guilds[world.guild.id].members.setdefault(app.user.id, [])
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "proc-data")
    env = {
        **sim.bot_env(app),
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(tiny_dataset),
        "LOCAL_WORKERS": "1",
        "DEV_GUILD_ID": str(world.guild.id),
        "LOG_LEVEL": "DEBUG",
    }
    proc = await run_bot_process(env, data_dir)
    connected = asyncio.create_task(sim.wait_connected(app, timeout_s=120))
    exited = asyncio.create_task(proc.wait())
    await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
    if exited.done():
        connected.cancel()
        pytest.fail(f"the bot exited early: {await finish(proc)}")
    att = sim.upload(flower_bytes("daisy", 3), "d.jpg")
    ix = await sim.slash(app, world.general, world.alice, "classify", {"image": att})
    reply = await sim.wait_response(ix, timeout_s=30)
    assert "%" in reply.embeds[0]["title"]
    children = descendants(proc.pid)
    assert children, "the local backend runs worker processes"

    proc.send_signal(signal.SIGTERM)
    code, output = await finish(proc)
    assert code == 0, output
    assert "backend stopped" in output
    assert "Traceback" not in output
    assert app.token not in output
    assert await wait_exited(children, timeout_s=10) == set(), "worker processes left behind"
    await sim.wait_until(lambda: not sim.session_for(app))


async def test_missing_token_exits_3(tmp_path: Path):
    proc = await run_bot_process({"DATA_DIR": str(tmp_path)}, tmp_path)
    code, output = await finish(proc)
    assert code == 3, output
    assert "DISCORD_TOKEN" in output and "Traceback" not in output


async def test_rejected_token_exits_3(world: World, tmp_path: Path):
    env = {**world.sim.bot_env(world.apps["main"]), "DATA_DIR": str(tmp_path)}
    env["DISCORD_TOKEN"] = "MTIz.not-a.valid-token"
    proc = await run_bot_process(env, tmp_path)
    code, output = await finish(proc)
    assert code == 3, output
    assert "Discord rejected DISCORD_TOKEN" in output
    assert "Traceback" not in output and "MTIz.not-a.valid-token" not in output


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("COOLDOWN_USES", "0"),
        ("DISCORD_CDN_HOSTS", "https://cdn.example/x"),
        ("BACKEND", "cloud"),
        ("ADMIN_USER_IDS", "me"),
    ],
)
async def test_invalid_setting_exits_2(tmp_path: Path, var: str, value: str):
    proc = await run_bot_process({"DISCORD_TOKEN": "x.y.z", var: value}, tmp_path)
    code, output = await finish(proc)
    assert code == 2, output
    assert var in output and "Traceback" not in output


async def test_message_content_intent_not_enabled_exits_4(world: World, tmp_path: Path):
    app = world.sim.create_application("NoIntent", message_content_allowed=False)
    backend = ScriptedBackend()  # the gateway refuses before any classification happens
    with pytest.raises(discord.PrivilegedIntentsRequired) as info:
        running = await launch(
            world,
            app,
            {"DATA_DIR": str(tmp_path), "MESSAGE_CONTENT_INTENT": "true"},
            backend=backend,
        )
        await running.stop()
    assert exit_code_for(info.value) == 4
    assert backend.stopped


async def test_backend_that_cannot_start_exits_5(world: World, tmp_path: Path):
    """E.g. Golem unreachable: the bot logs in, the backend fails, nothing is served."""
    backend = ScriptedBackend()
    backend.fail_start = BackendUnavailable("yagna is not running at http://127.0.0.1:7465")
    app = new_app(world, "NoBackend")
    with pytest.raises(BackendStartFailed) as info:
        await launch(world, app, {"DATA_DIR": str(tmp_path)}, backend=backend)
    assert exit_code_for(info.value) == 5
    assert "yagna is not running" in str(info.value)
    assert world.sim.session_for(app) is None and app.command_syncs == 0


def new_app(world: World, name: str) -> Application:
    app = world.sim.create_application(name)
    world.guild.members.setdefault(app.user.id, [])
    return app


async def test_shutdown_fails_in_flight_requests_with_a_message(world: World, tmp_path: Path):
    """A request still running when the grace period ends is told the bot is restarting;
    requests arriving during shutdown are refused; then the backend is stopped."""
    backend = ScriptedBackend()
    backend.gate = asyncio.Event()  # holds classification in flight (never released)
    app = new_app(world, "ShutdownBot")
    running = await launch(
        world,
        app,
        {"DATA_DIR": str(tmp_path), "SHUTDOWN_GRACE_S": "1", "DEV_GUILD_ID": str(world.guild.id)},
        backend=backend,
    )
    sim = world.sim
    first = await sim.slash(
        app,
        world.general,
        world.alice,
        "classify",
        {"image": sim.upload(flower_bytes("daisy"), "a.jpg")},
    )
    await asyncio.wait_for(backend.entered.wait(), 10)
    closing = asyncio.create_task(running.bot.close())
    await asyncio.sleep(0)  # close() runs up to its first await: it stops admitting work
    assert running.bot.admission.closing
    second = await sim.slash(
        app,
        world.general,
        world.carol,
        "classify",
        {"image": sim.upload(flower_bytes("daisy"), "b.jpg")},
    )
    refused = await sim.wait_response(second)
    assert refused.ephemeral and refused.content.startswith("I'm restarting")
    failed = await sim.wait_response(first)
    assert failed.ephemeral and failed.content.startswith("I'm restarting")
    assert all(m.ephemeral for m in first.messages)
    await asyncio.wait_for(closing, 15)
    await asyncio.wait_for(running.task, 15)
    assert backend.cancelled == 1 and backend.stopped


async def test_shutdown_lets_in_flight_requests_finish(world: World, tmp_path: Path):
    backend = ScriptedBackend()
    backend.gate = asyncio.Event()
    app = new_app(world, "PatientBot")
    running = await launch(
        world,
        app,
        {"DATA_DIR": str(tmp_path), "SHUTDOWN_GRACE_S": "20", "DEV_GUILD_ID": str(world.guild.id)},
        backend=backend,
    )
    sim = world.sim
    ix = await sim.slash(
        app,
        world.general,
        world.alice,
        "classify",
        {"image": sim.upload(flower_bytes("daisy"), "a.jpg")},
    )
    await asyncio.wait_for(backend.entered.wait(), 10)
    closing = asyncio.create_task(running.bot.close())
    await asyncio.sleep(0)  # close() runs up to its first await: it stops admitting work
    assert running.bot.admission.closing
    assert not backend.stopped
    backend.gate.set()
    msg = await sim.wait_response(ix)
    assert not msg.ephemeral and msg.embeds[0]["title"].startswith("daisy")
    await asyncio.wait_for(closing, 15)
    assert backend.stopped and backend.cancelled == 0
    # discord.py's late "ready" task, when the cancellation close() sent it was lost (as in
    # Python 3.11's wait_for), dispatches on a closed client: dropped, not an AttributeError
    # in a task nobody awaits
    running.bot.dispatch("ready")


async def test_watched_channels_survive_a_restart_and_extension_failures_are_logged(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    env = {
        "DATA_DIR": str(tmp_path),
        "MESSAGE_CONTENT_INTENT": "true",
        "DEV_GUILD_ID": str(world.guild.id),
    }
    sim = world.sim
    channel = sim.create_channel(world.guild, "restart-test")
    app = new_app(world, "RestartBot")
    first = await launch(world, app, env, backend=ScriptedBackend())
    ix = await sim.slash(app, channel, world.admin, "autoclassify", {"mode": "on"})
    assert "I'll reply" in (await sim.wait_response(ix)).content
    await first.stop()

    import bot.core.client as client

    monkeypatch.setattr(client, "EXTENSIONS", (*client.EXTENSIONS, "bot.cogs.missing"))
    caplog.set_level(logging.ERROR, logger="bot.core.client")
    second = await launch(world, app, env, backend=ScriptedBackend())
    try:
        assert "failed to load extension bot.cogs.missing" in caplog.text
        assert set(second.bot.extension_failures) == {"bot.cogs.missing"}
        posted = await sim.post_message(
            channel, world.alice, "", [sim.upload(flower_bytes("daisy", 5), "p.jpg")]
        )
        reply = await sim.wait_bot_message(
            lambda m: m.reference_id == posted.id and m.author.id == app.user.id
        )
        assert reply.embeds[0]["title"].startswith("daisy")
    finally:
        await second.stop()


async def test_shutdown_refuses_new_teach_and_waits_for_one_in_flight(world: World, tmp_path: Path):
    """/teach takes a slot like classification: refused once shutdown began, and the
    one in flight completes (file and record) before the sessions close."""
    running, backend = await launch_scripted(
        world, "TeachShutdownBot", tmp_path, {"SHUTDOWN_GRACE_S": "20"}
    )
    backend.gate = asyncio.Event()  # holds the verification classification
    sim, app = world.sim, running.app
    first = await sim.slash(
        app,
        world.general,
        world.admin,
        "teach images",
        {"label": "daisy", "image": sim.upload(flower_bytes("daisy", 7), "a.jpg")},
    )
    await asyncio.wait_for(backend.entered.wait(), 10)
    closing = asyncio.create_task(running.bot.close())
    await asyncio.sleep(0)  # close() runs up to its first await: it stops admitting work
    second = await sim.slash(
        app,
        world.general,
        world.admin,
        "teach images",
        {"label": "daisy", "image": sim.upload(flower_bytes("daisy", 8), "b.jpg")},
    )
    refused = await sim.wait_response(second)
    assert refused.ephemeral and refused.content.startswith("I'm restarting")
    assert not closing.done() and not backend.stopped, "shutdown waits for the /teach"
    backend.gate.set()
    learned = await sim.wait_response(first)
    assert learned.ephemeral and learned.content.startswith("Learned **daisy**"), learned.text
    await asyncio.wait_for(closing, 15)
    await asyncio.wait_for(running.task, 15)
    records = await stored_taught(running.settings, world.guild.id)
    assert [r.label for r in records] == ["daisy"]
    images = tmp_path / "guilds" / str(world.guild.id) / "images"
    assert [p.name for p in images.iterdir()] == [records[0].path.name]


async def test_shutdown_lets_event_handlers_finish_their_writes(world: World, tmp_path: Path):
    """An event handler still writing to the database when the bot closes finishes
    before the database closes (cut off at exit, its rollback under cancellation was
    logged as an error by SQLAlchemy)."""
    app = new_app(world, "HandlerBot")
    running = await launch(
        world,
        app,
        {"DATA_DIR": str(tmp_path), "DEV_GUILD_ID": str(world.guild.id)},
        backend=ScriptedBackend(),
    )
    bot = running.bot
    finished: list[bool] = []

    async def on_slow_write() -> None:
        await asyncio.sleep(0.3)
        await bot.store.guild(world.guild.id).mark_present()
        finished.append(True)

    bot.add_listener(on_slow_write, "on_slow_write")
    bot.dispatch("slow_write")
    await asyncio.sleep(0)  # the handler's task has started
    await asyncio.wait_for(bot.close(), 15)
    assert finished == [True]
    await asyncio.wait_for(running.task, 15)
