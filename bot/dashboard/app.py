"""The dashboard's aiohttp application, served by the bot's own process.

``create_dashboard_app(config, bot)`` builds it on the running bot: its store, backend,
retrainer, door (admission) and features are the ones the commands use, and its request metrics
go to the bot's registry (the bot's ``/metrics``). ``bot.dashboard.serving`` runs it on
``DASHBOARD_HOST:DASHBOARD_PORT``.

Libraries: ``aiohttp`` (server and client), ``jinja2`` through ``aiohttp-jinja2``
(server-rendered templates, autoescaped), ``cryptography`` (Fernet session cookies),
``prometheus-client``. No front-end build step: one stylesheet and two small scripts
(``static/``), each page working without them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.core.errors import Busy, ShuttingDown, UserError
from bot.dashboard import (
    label_views,
    model_views,
    review_views,
    settings_views,
    upload_views,
    views,
)
from bot.dashboard.access import AccessChecker
from bot.dashboard.config import DashboardConfig
from bot.dashboard.discord_api import DiscordApi, DiscordUnavailable, LoginRejected, TokenExpired
from bot.dashboard.metrics import DashboardMetrics
from bot.dashboard.security import csrf_protection, security_headers
from bot.dashboard.sessions import Flash, SessionCookies

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_BODY_BYTES = 1024 * 1024  # forms; the upload reads its own body within its limits
HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("dashboard_http", aiohttp.ClientSession)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER = r"/servers/{guild_id:\d{1,20}}"
LABEL = r"{label:[A-Za-z0-9_ -]{1,40}}"
SHA256 = r"{sha256:[0-9a-f]{64}}"
ITEM = r"{item_id:\d{1,18}}"
MEMBER = r"{member_id:[0-9]{1,20}}"


def create_dashboard_app(config: DashboardConfig, bot: ClassifierBot) -> web.Application:
    """The dashboard of ``bot`` (its store open, its features loaded)."""
    metrics = DashboardMetrics(bot.metrics.registry)
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
    app[views.FLASH] = Flash(cookies)
    app[views.STORE] = bot.store
    app[views.BOT] = bot
    app[views.METRICS] = metrics
    app[model_views.RETRAINS] = model_views.RetrainTasks()
    app.cleanup_ctx.append(_discord_client)
    app.on_cleanup.append(_stop_retrains)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        context_processors=[aiohttp_jinja2.request_processor],
    )
    app.add_routes(
        [
            web.get("/", views.index, name="index"),
            web.get("/login", views.login, name="login"),
            web.get("/callback", views.callback, name="callback"),
            web.post("/logout", views.logout, name="logout"),
            web.get("/servers", views.servers, name="servers"),
            web.get(SERVER, views.server, name="server"),
            web.get(SERVER + "/labels", label_views.labels, name="labels"),
            web.get(SERVER + "/labels/" + LABEL, label_views.label, name="label"),
            web.post(
                SERVER + "/labels/" + LABEL + "/" + SHA256 + "/delete",
                label_views.delete_image,
                name="delete_image",
            ),
            web.get(SERVER + "/images/" + SHA256, label_views.taught_image, name="image"),
            web.get(SERVER + "/upload", upload_views.upload_page, name="upload"),
            web.post(SERVER + "/upload", upload_views.upload, name="upload_post"),
            web.get(SERVER + "/review", review_views.review, name="review"),
            web.get(
                SERVER + "/review/" + ITEM + "/image",
                review_views.review_image,
                name="review_image",
            ),
            web.post(
                SERVER + "/review/" + ITEM + "/{verb:approve|reject|relabel}",
                review_views.decide,
                name="review_decide",
            ),
            web.post(
                SERVER + "/review/member/" + MEMBER + "/reject",
                review_views.reject_member,
                name="review_reject_member",
            ),
            web.get(SERVER + "/models", model_views.models, name="models"),
            web.post(SERVER + "/models/rollback", model_views.rollback, name="rollback"),
            web.post(SERVER + "/retrain", model_views.retrain, name="retrain"),
            web.get(SERVER + "/retrain/status", model_views.retrain_status, name="retrain_status"),
            web.get(SERVER + "/settings", settings_views.settings_page, name="settings"),
            web.post(SERVER + "/settings", settings_views.save_settings, name="settings_post"),
            web.post(SERVER + "/rules", settings_views.add_rule, name="rules_add"),
            web.post(SERVER + "/rules/remove", settings_views.delete_rule, name="rules_remove"),
            web.static("/static", HERE / "static", name="static"),
        ]
    )
    return app


async def _stop_retrains(app: web.Application) -> None:
    await app[model_views.RETRAINS].stop()


async def _discord_client(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client for the app's life, and what is built on it."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "golem-image-classifier-bot dashboard"},
    ) as http:
        app[HTTP] = http
        api = DiscordApi(app[views.CONFIG], http)
        app[views.API] = api
        bot = app[views.BOT]
        app[views.CHECKER] = AccessChecker(
            app[views.CONFIG],
            app[views.STORE],
            api,
            lambda guild_id: bot.get_guild(guild_id) is not None,
        )
        yield


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages a member can act on (as JSON for the scripts, which ask for it); the
    unexpected logged with a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        login = isinstance(exc, views.LoginFailed)
        return _error_page(request, exc.status, exc.text or exc.reason, login=login)
    except TokenExpired as exc:
        response = _error_page(request, 401, exc.message, login=True)
        request.app[views.COOKIES].end(response)
        return response
    except LoginRejected as exc:
        return _error_page(request, 400, exc.message, login=True)
    except (DiscordUnavailable, Busy, ShuttingDown) as exc:
        return _error_page(request, 503, exc.message)
    except UserError as exc:
        return _error_page(request, 400, exc.message)
    except Exception:
        log.exception("dashboard: %s %s failed", request.method, request.path)
        return _error_page(request, 500, "Something went wrong on our side. It has been logged.")


def _error_page(
    request: web.Request, status: int, message: str, *, login: bool = False
) -> web.Response:
    text = message.removeprefix(f"{status}: ").replace("**", "")
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"error": text}, status=status)
    context = {"status": status, "message": text, "login": login or status == 401}
    return views.render(request, "error.html", context, status=status)
