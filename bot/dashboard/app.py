"""The dashboard's aiohttp application: one factory for both ways of serving it.

- In the bot's process: ``parent.add_subapp("/dashboard/", create_dashboard_app(config,
  bot.store, registry=bot.metrics.registry))`` with ``DASHBOARD_PUBLIC_URL`` ending in
  ``/dashboard``; its metrics then appear on the bot's ``/metrics``.
- In its own process: ``python -m bot.dashboard`` (``bot.dashboard.__main__``), sharing
  the bot's database (PostgreSQL when several processes write to it) and data folder.

Libraries: ``aiohttp`` (server and client), ``jinja2`` through ``aiohttp-jinja2``
(server-rendered templates, autoescaped), ``cryptography`` (Fernet session cookies),
``prometheus-client``. No front-end build step: one stylesheet, no script.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from prometheus_client import CollectorRegistry

from bot.core.errors import UserError
from bot.dashboard import views
from bot.dashboard.access import AccessChecker
from bot.dashboard.config import DashboardConfig
from bot.dashboard.discord_api import DiscordApi, LoginRejected, TokenExpired
from bot.dashboard.metrics import DashboardMetrics
from bot.dashboard.security import csrf_protection, security_headers
from bot.dashboard.sessions import SessionCookies
from bot.db import Store

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_BODY_BYTES = 1024 * 1024  # forms; uploads (next phase) set their own limit per route
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("dashboard_http", aiohttp.ClientSession)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_dashboard_app(
    config: DashboardConfig,
    store: Store,
    *,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The dashboard, ready to run or to mount with ``add_subapp``.

    ``store`` is opened and closed by its owner (the bot, or ``__main__``). ``registry``:
    where the request metrics go (the bot's, or a new one)."""
    metrics = DashboardMetrics(registry)
    cookies = SessionCookies(config)
    app = web.Application(
        middlewares=[
            metrics.middleware,
            security_headers(config),
            error_pages,
            csrf_protection(config, cookies),
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[views.CONFIG] = config
    app[views.COOKIES] = cookies
    app[views.STORE] = store
    app[views.METRICS] = metrics
    app.cleanup_ctx.append(_discord_client)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.add_routes(
        [
            web.get("/", views.index, name="index"),
            web.get("/login", views.login, name="login"),
            web.get("/callback", views.callback, name="callback"),
            web.post("/logout", views.logout, name="logout"),
            web.get("/servers", views.servers, name="servers"),
            web.get(r"/servers/{guild_id:\d{1,20}}", views.server, name="server"),
            web.static("/static", HERE / "static", name="static"),
        ]
    )
    return app


async def _discord_client(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client for the app's life, and what is built on it."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "golem-image-classifier-bot dashboard"},
    ) as http:
        app[HTTP] = http
        api = DiscordApi(app[views.CONFIG], http)
        app[views.API] = api
        app[views.CHECKER] = AccessChecker(app[views.CONFIG], app[views.STORE], api)
        yield


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages a member can act on; the unexpected logged with a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_page(request, exc.status, exc.text or exc.reason)
    except TokenExpired as exc:
        response = _error_page(request, 401, exc.message, login=True)
        request.app[views.COOKIES].end(response)
        return response
    except UserError as exc:
        status = 400 if isinstance(exc, LoginRejected) else 503
        return _error_page(request, status, exc.message, login=status == 400)
    except Exception:
        log.exception("dashboard: %s %s failed", request.method, request.path)
        return _error_page(request, 500, "Something went wrong on our side. It has been logged.")


def _error_page(
    request: web.Request, status: int, message: str, *, login: bool = False
) -> web.Response:
    login = login or status in (400, 401)
    text = message.removeprefix(f"{status}: ")
    context = {"status": status, "message": text, "login": login}
    return views.render(request, "error.html", context, status=status)
