"""A dashboard served by a real aiohttp server, logging in through the Discord simulator's
OAuth2 endpoints, on a real SQLite database.

The world (who sees what):
- "Alpha": alice is an administrator (a role with Administrator); bob, carol members.
- "Bravo": alice owns it.
- "Charlie": bob holds the trainer role; carol is a member without it; alice is not there.
- "Delta": alice is an administrator, but the bot left it (its row is marked left).
- "Echo": alice is an administrator, but the bot has stored nothing there (no row).
- "Foxtrot": the bot is there; alice and bob are not members.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from bot.dashboard import DashboardConfig, create_dashboard_app
from bot.db import Store
from tests.discord_sim import ADMINISTRATOR, DiscordSimulator
from tests.discord_sim.model import Application, Guild, Role, User

SESSION_SECRET = "a-session-secret-for-tests-only-0123456789"


@dataclass
class DashboardWorld:
    sim: DiscordSimulator
    app: Application
    store: Store
    config: DashboardConfig
    dashboard: web.Application
    alice: User
    bob: User
    carol: User
    guilds: dict[str, Guild]
    trainer_role: Role

    @property
    def url(self) -> str:
        return self.config.public_url

    def guild_url(self, name: str) -> str:
        return f"{self.url}/servers/{self.guilds[name].id}"


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(app: web.Application, sock: socket.socket) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def build_world(
    sim: DiscordSimulator,
    store: Store,
    public_url: str,
    *,
    operators: tuple[str, ...] = (),
    registry: CollectorRegistry | None = None,
    **config_kw: object,
) -> DashboardWorld:
    """``operators``: names of the users who are the bot's operators (ADMIN_USER_IDS)."""
    app = sim.create_application("Classifier")
    app.redirect_uris.append(public_url + "/callback")
    alice, bob, carol = (sim.create_user(n) for n in ("alice", "bob", "carol"))
    owner = sim.create_user("someone")
    names = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")
    guilds = {n: sim.create_guild(n, alice if n == "Bravo" else owner) for n in names}
    for name in ("Alpha", "Delta", "Echo"):
        sim.add_member(guilds[name], alice, ADMINISTRATOR)
    for user in (bob, carol):
        sim.add_member(guilds["Alpha"], user)
        sim.add_member(guilds["Charlie"], user)
    trainer = await sim.create_role(guilds["Charlie"], "trainers")
    sim.give_role(guilds["Charlie"], bob, trainer)
    for name in ("Alpha", "Bravo", "Charlie", "Delta", "Foxtrot"):
        await store.guild(guilds[name].id).set_include_default(True)  # the bot stored data
    await store.guild(guilds["Charlie"].id).set_trainer_role(trainer.id)
    await store.guild(guilds["Delta"].id).mark_left()
    config = DashboardConfig(
        public_url=public_url,
        client_id=app.id,
        client_secret=app.client_secret,
        session_secret=SESSION_SECRET,
        bot_token=app.token,
        api_base=sim.api_base,
        operator_ids=frozenset(u.id for u in (alice, bob, carol) if u.name in operators),
        **config_kw,  # type: ignore[arg-type]
    )
    dashboard = create_dashboard_app(config, store, registry=registry)
    return DashboardWorld(sim, app, store, config, dashboard, alice, bob, carol, guilds, trainer)


@asynccontextmanager
async def running_world(
    tmp_path: Path, *, mount_at: str = "", **world_kw: object
) -> AsyncIterator[DashboardWorld]:
    """The world, its dashboard served on a free port (``mount_at``: as a sub-application
    of another aiohttp app, under that path, beside a ``/healthz`` of the parent)."""
    sim = DiscordSimulator()
    await sim.start()
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", tmp_path / "data")
    await store.open()
    sock = free_socket()
    root = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        world = await build_world(sim, store, root + mount_at, access_recheck_s=0.0, **world_kw)
        served = world.dashboard
        if mount_at:
            served = web.Application()
            served.add_routes([web.get("/healthz", _healthz)])
            served.add_subapp(mount_at + "/", world.dashboard)
        async with serve(served, sock):
            yield world
    finally:
        await store.close()
        await sim.stop()


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"alive": True})


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
