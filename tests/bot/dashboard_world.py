"""The dashboard as it runs: the real bot (``ClassifierBot`` with its real settings, store,
features and door) connected to the Discord simulator, its dashboard served by the
bot's own process on ``DASHBOARD_PORT``, logging in through the simulator's OAuth2
endpoints, on a real SQLite database. The backend is the feedback tests' checking backend:
the real image decoder, scripted answers and retrains.

The world (who sees what):
- "Alpha": alice is an administrator (a role with Administrator); bob, carol members.
- "Bravo": alice owns it.
- "Charlie": bob holds the trainer role; carol is a member without it; alice is not there.
- "Delta": alice is an administrator, but the bot is not there (it left).
- "Echo": alice is an administrator; the bot is there but has stored nothing yet.
- "Foxtrot": the bot is there; alice and bob are not members.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.core.client import ClassifierBot, configure_endpoints
from bot.core.settings import Settings
from bot.core.sharding import create_bot
from bot.dashboard import DashboardCog, DashboardConfig
from bot.db import Store
from tests.bot.feedback_world import MAX_IMAGE_BYTES, CheckingBackend
from tests.bot.harness import settings_from_env
from tests.discord_sim import ADMINISTRATOR, DiscordSimulator
from tests.discord_sim.model import Application, Channel, Guild, Role, User

SESSION_SECRET = "a-session-secret-for-tests-only-0123456789"


@dataclass
class DashboardWorld:
    sim: DiscordSimulator
    app: Application
    bot: ClassifierBot
    task: asyncio.Task[None]
    settings: Settings
    backend: CheckingBackend
    alice: User
    bob: User
    carol: User
    guilds: dict[str, Guild]
    trainer_role: Role
    channels: dict[str, Channel]

    @property
    def config(self) -> DashboardConfig:
        return self.cog.config

    @property
    def cog(self) -> DashboardCog:
        cog = self.bot.get_cog("DashboardCog")
        assert cog is not None, f"no dashboard: {self.bot.extension_failures}"
        return cog  # type: ignore[return-value]

    def key(self, name: str) -> Any:
        """The dashboard's ``bot.dashboard.views`` app key ``name``, as the running bot
        loaded it (discord.py drops an extension's modules from ``sys.modules`` when a bot
        closes, so a later bot imports them afresh: compare with the live ones)."""
        return getattr(sys.modules["bot.dashboard.views"], name)

    @property
    def dashboard(self) -> web.Application:
        assert self.cog.app is not None
        return self.cog.app

    @property
    def store(self) -> Store:
        return self.bot.store

    @property
    def url(self) -> str:
        return self.config.public_url

    def guild_url(self, name: str, page: str = "") -> str:
        return f"{self.url}/servers/{self.guilds[name].id}{page}"

    async def stop(self) -> None:
        await self.bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30)


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        return sock.getsockname()[1]


@asynccontextmanager
async def serve(app: web.Application, sock: socket.socket) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield
    finally:
        await runner.cleanup()


def build_guilds(
    sim: DiscordSimulator, app: Application
) -> tuple[dict[str, Guild], User, User, User]:
    alice, bob, carol = (sim.create_user(n) for n in ("alice", "bob", "carol"))
    owner = sim.create_user("someone")
    names = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")
    guilds = {n: sim.create_guild(n, alice if n == "Bravo" else owner) for n in names}
    for name in ("Alpha", "Delta", "Echo"):
        sim.add_member(guilds[name], alice, ADMINISTRATOR)
    for user in (bob, carol):
        sim.add_member(guilds["Alpha"], user)
        sim.add_member(guilds["Charlie"], user)
    guilds["Delta"].members.pop(app.user.id)  # the bot left Delta
    return guilds, alice, bob, carol


async def start_world(
    tmp_path: Path,
    *,
    operators: tuple[str, ...] = (),
    path: str = "",
    env: dict[str, str] | None = None,
    sim: DiscordSimulator | None = None,
) -> DashboardWorld:
    """A new simulator (unless given) and world, and the bot serving its dashboard at
    ``http://127.0.0.1:<port><path>``. ``operators``: names of users in ADMIN_USER_IDS."""
    if sim is None:
        sim = DiscordSimulator()
        await sim.start()
    app = sim.create_application("Classifier")
    guilds, alice, bob, carol = build_guilds(sim, app)
    trainer = await sim.create_role(guilds["Charlie"], "trainers")
    sim.give_role(guilds["Charlie"], bob, trainer)
    channels = {
        "alpha": sim.create_channel(guilds["Alpha"], "pics"),
        "alpha-log": sim.create_channel(guilds["Alpha"], "log"),
        "charlie": sim.create_channel(guilds["Charlie"], "pics"),
    }
    port = free_port()
    public_url = f"http://127.0.0.1:{port}{path}"
    app.redirect_uris.append(public_url + "/callback")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    operator_ids = ",".join(str(u.id) for u in (alice, bob, carol) if u.name in operators)
    settings = settings_from_env(
        {
            **sim.bot_env(app),
            "DATA_DIR": str(data),
            "DATASET_DIR": str(data),
            "MESSAGE_CONTENT_INTENT": "true",
            "COOLDOWN_USES": "1000",
            "MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
            "ADMIN_USER_IDS": operator_ids,
            "DASHBOARD_PUBLIC_URL": public_url,
            "DASHBOARD_HOST": "127.0.0.1",
            "DASHBOARD_PORT": str(port),
            "DISCORD_CLIENT_ID": str(app.id),
            "DISCORD_CLIENT_SECRET": app.client_secret,
            "DASHBOARD_SESSION_SECRET": SESSION_SECRET,
            "DASHBOARD_ACCESS_RECHECK_S": "0",
            **(env or {}),
        }
    )
    configure_endpoints(settings)
    backend = CheckingBackend()
    bot = create_bot(settings, backend=backend)
    task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
    connected = asyncio.create_task(sim.wait_connected(app, timeout_s=120, synced=False))
    finished, _ = await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
    if connected not in finished:
        connected.cancel()
        await bot.close()
        task.result()
        raise RuntimeError("the bot stopped before connecting")
    present = [g for name, g in guilds.items() if name != "Delta"]
    async with asyncio.timeout(30):
        while not all(bot.get_guild(g.id) for g in present):  # noqa: ASYNC110 (the bot's cache)
            await asyncio.sleep(0.02)
    await bot.store.guild(guilds["Charlie"].id).set_trainer_role(trainer.id)
    return DashboardWorld(
        sim, app, bot, task, settings, backend, alice, bob, carol, guilds, trainer, channels
    )


@asynccontextmanager
async def running_world(tmp_path: Path, **kw: object) -> AsyncIterator[DashboardWorld]:
    world = await start_world(tmp_path, **kw)  # type: ignore[arg-type]
    try:
        yield world
    finally:
        await world.stop()
        await world.sim.stop()


def http_client() -> aiohttp.ClientSession:
    """A client that keeps cookies of IP-address hosts, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def log_in(world: DashboardWorld, http: aiohttp.ClientSession, user: User) -> None:
    """The whole login over HTTP: /login -> Discord's consent (automatic) -> /callback."""
    world.sim.oauth2.consenting_user = user
    async with http.get(world.url + "/login", allow_redirects=False) as resp:
        assert resp.status == 302
        authorize = resp.headers["Location"]
    async with http.get(authorize, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        back = resp.headers["Location"]
    assert back.startswith(world.config.redirect_uri)
    async with http.get(back, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        assert urlsplit(resp.headers["Location"]).path.endswith("/servers")


def csrf_token_of(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]
