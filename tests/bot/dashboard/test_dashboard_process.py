"""``python -m bot.dashboard``: the dashboard in its own process, on the bot's database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from bot.db import Store
from tests.bot.dashboard_world import SESSION_SECRET, build_world, free_socket, http_client, log_in
from tests.discord_sim import DiscordSimulator

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    return port


async def start(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start the process; return once it says where it serves (or it exits)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.dashboard",
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            lines.append(line)
            if "dashboard on http://" in line:
                break
    return proc, lines


async def test_the_dashboard_runs_in_its_own_process(tmp_path: Path):
    sim = DiscordSimulator()
    await sim.start()
    db = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    store = Store(db, tmp_path / "data")
    await store.open()
    port, metrics_port = free_port(), free_port()
    try:
        world = await build_world(sim, store, f"http://127.0.0.1:{port}")
        await store.close()
        env = {
            "DISCORD_TOKEN": world.app.token,
            "DISCORD_API_BASE": sim.api_base,
            "DATABASE_URL": db,
            "DATA_DIR": str(tmp_path / "data"),
            "DASHBOARD_PUBLIC_URL": world.url,
            "DASHBOARD_PORT": str(port),
            "DISCORD_CLIENT_ID": str(world.app.id),
            "DISCORD_CLIENT_SECRET": world.app.client_secret,
            "DASHBOARD_SESSION_SECRET": SESSION_SECRET,
            "HTTP_PORT": str(metrics_port),
        }
        proc, lines = await start(env)
        try:
            async with http_client() as http:
                await log_in(world, http, world.alice)
                async with http.get(world.url + "/servers") as resp:
                    page = await resp.text()
                assert resp.status == 200 and "Alpha" in page and "Bravo" in page
                assert "Charlie" not in page
                async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                    metrics = await resp.text()
                assert 'classifier_bot_dashboard_logins_total{outcome="ok"} 1.0' in metrics
        finally:
            proc.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        output = "".join(lines) + rest.decode()
        for secret in (world.app.client_secret, SESSION_SECRET, world.app.token):
            assert secret not in output
    finally:
        await sim.stop()


async def test_without_the_oauth2_settings_it_exits_2_with_the_names(tmp_path: Path):
    env = {"DISCORD_TOKEN": "x.y.z", "DATA_DIR": str(tmp_path)}
    proc, lines = await start(env)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    output = "".join(lines) + rest.decode()
    assert "DASHBOARD_PUBLIC_URL" in output and "Traceback" not in output
    env["DASHBOARD_PUBLIC_URL"] = "https://dash.example"
    proc, lines = await start(env)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    output = "".join(lines) + rest.decode()
    assert "DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET, DASHBOARD_SESSION_SECRET" in output


async def test_a_port_in_use_exits_2(tmp_path: Path):
    taken = free_socket()
    taken.listen()
    env = {
        "DISCORD_TOKEN": "x.y.z",
        "DATA_DIR": str(tmp_path),
        "DASHBOARD_PUBLIC_URL": "https://dash.example",
        "DASHBOARD_PORT": str(taken.getsockname()[1]),
        "DISCORD_CLIENT_ID": "1",
        "DISCORD_CLIENT_SECRET": "a-client-secret-of-some-length",
        "DASHBOARD_SESSION_SECRET": SESSION_SECRET,
    }
    proc, lines = await start(env)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    taken.close()
    assert proc.returncode == 2
    assert "cannot be bound" in "".join(lines) + rest.decode()
