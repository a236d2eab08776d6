"""The dashboard's pages: login with Discord, logout, the member's servers, a server's
overview; and what every page shares (:func:`render`, :func:`open_server`, :func:`done`).

Every page that shows a member's data starts with :func:`current_session` (or gets the
session from the CSRF middleware on a POST); every per-server page and action with
:func:`open_server`, which calls ``checker.require(session, guild_id)`` (404 for any
server the member may not open, 403 for a trainer on an administrator's page) with the
server id from the URL only. Data then comes only from ``bot.store.guild(access.guild_id)``
and through the features' functions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from bot.core.channel_access import ChannelViewer
from bot.dashboard.access import AccessChecker, ServerAccess
from bot.dashboard.config import SCOPES, DashboardConfig
from bot.dashboard.discord_api import DiscordApi, DiscordUnavailable, LoginRejected
from bot.dashboard.metrics import DashboardMetrics
from bot.dashboard.security import CSRF_FIELD, SESSION
from bot.dashboard.sessions import Flash, Session, SessionCookies, same_secret
from bot.db import ScopedData, Store

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

CONFIG: web.AppKey[DashboardConfig] = web.AppKey("dashboard_config", DashboardConfig)
COOKIES: web.AppKey[SessionCookies] = web.AppKey("dashboard_cookies", SessionCookies)
CHECKER: web.AppKey[AccessChecker] = web.AppKey("dashboard_access", AccessChecker)
API: web.AppKey[DiscordApi] = web.AppKey("dashboard_discord_api", DiscordApi)
STORE: web.AppKey[Store] = web.AppKey("dashboard_store", Store)
METRICS: web.AppKey[DashboardMetrics] = web.AppKey("dashboard_metrics", DashboardMetrics)
BOT: web.AppKey[ClassifierBot] = web.AppKey("dashboard_bot")
FLASH: web.AppKey[Flash] = web.AppKey("dashboard_flash", Flash)


class LoginFailed(web.HTTPBadRequest):
    """The login did not complete; the text says why and the page offers to start again."""


def url(request: web.Request, name: str, **parts: str) -> str:
    return str(request.app.router[name].url_for(**parts))


def current_session(request: web.Request) -> Session | None:
    session = request.get(SESSION)
    if session is None:
        session = request.app[COOKIES].read(request)
        if session is not None:
            request[SESSION] = session
    return session


def require_session(request: web.Request) -> Session:
    """The logged-in member, or a redirect to the login page."""
    session = current_session(request)
    if session is None:
        raise web.HTTPFound(url(request, "index"))
    return session


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A page; every page also gets ``user`` (the session or ``None``), the CSRF field and
    the message of the action that led here (``flash``: text, ok), shown once."""
    session = current_session(request)
    flash = request.app[FLASH]
    flashed = flash.read(request)
    page = {
        "user": session,
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.csrf_token if session is not None else "",
        "flash": flashed,
        **context,
    }
    response = aiohttp_jinja2.render_template(template, request, page, status=status)
    if flashed is not None:
        flash.clear(response)
    return response


def bot_of(request: web.Request) -> ClassifierBot:
    return request.app[BOT]


async def channel_viewer(request: web.Request, access: ServerAccess) -> ChannelViewer:
    """Which of the server's channels the logged-in member can view, decided as for a
    command (``bot.core.channel_access``): administrators and the bot's operators see all;
    a trainer's permissions in each channel are computed from the server as this process's
    gateway connection holds it (its roles, channels and overwrites, kept current by
    Discord's events) and the member's roles as the bot read them for the access check
    (``GET /guilds/{id}/members/{user}``, reused for ``DASHBOARD_ACCESS_RECHECK_S``)."""
    guild = bot_of(request).get_guild(access.guild_id)
    if access.admin:
        return ChannelViewer(guild, None, sees_all=True)
    user_id = require_session(request).user_id
    role_ids = await request.app[CHECKER].role_ids(access.guild_id, user_id)
    return ChannelViewer.of_member_roles(guild, user_id, role_ids, sees_all=False)


async def open_server(
    request: web.Request, *, admin: bool = False
) -> tuple[ServerAccess, ScopedData]:
    """The check every per-server page and action starts with: the logged-in member may
    open the server named by the URL (``admin``: as an administrator), and its scope."""
    session = require_session(request)
    guild_id = int(request.match_info["guild_id"])
    access = await request.app[CHECKER].require(session, guild_id, admin=admin)
    return access, bot_of(request).store.guild(access.guild_id)


def done(request: web.Request, location: str, text: str, *, ok: bool = True) -> web.HTTPFound:
    """The answer to an action: back to ``location``, which shows ``text`` once."""
    response = web.HTTPFound(location)
    request.app[FLASH].put(response, text, ok=ok)
    return response


def server_url(request: web.Request, name: str, access: ServerAccess, **parts: str) -> str:
    return url(request, name, guild_id=str(access.guild_id), **parts)


# --- pages ----------------------------------------------------------------------------------
async def index(request: web.Request) -> web.StreamResponse:
    if current_session(request) is not None:
        raise web.HTTPFound(url(request, "servers"))
    return render(request, "index.html", {})


async def login(request: web.Request) -> web.StreamResponse:
    """Send the member to Discord's consent page with a fresh ``state``."""
    config = request.app[CONFIG]
    response = web.HTTPFound("/")  # its Location is set below, once the state exists
    state = request.app[COOKIES].begin_login(response)
    query = urlencode(
        {
            "client_id": str(config.client_id),
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "redirect_uri": config.redirect_uri,
            "state": state,
        }
    )
    response.headers["Location"] = f"{config.authorize_url}?{query}"
    raise response


async def callback(request: web.Request) -> web.StreamResponse:
    """Discord sends the member back here with ``code`` and ``state`` (or ``error``)."""
    app = request.app
    metrics, cookies = app[METRICS], app[COOKIES]
    expected = cookies.login_state(request)
    if "error" in request.query:
        metrics.logins.labels("denied").inc()
        raise LoginFailed(text="The login was cancelled on Discord.")
    if expected is None or not same_secret(request.query.get("state"), expected):
        metrics.logins.labels("state_mismatch").inc()
        raise LoginFailed(
            text="This login could not be verified (it did not start here, or it took too "
            "long). Please log in again."
        )
    code = request.query.get("code")
    if not code:
        metrics.logins.labels("refused").inc()
        raise LoginFailed(text="Discord sent no authorization code. Please log in again.")
    api = app[API]
    try:
        grant = await api.exchange_code(code)
        user = await api.me(grant.access_token)
    except LoginRejected:
        metrics.logins.labels("refused").inc()
        raise
    except DiscordUnavailable:
        metrics.logins.labels("discord_unavailable").inc()
        raise
    response = web.HTTPFound(url(request, "servers"))
    cookies.end_login(response)
    cookies.start(
        response,
        user_id=user.id,
        name=user.name,
        access_token=grant.access_token,
        token_expires_in=grant.expires_in,
    )
    metrics.logins.labels("ok").inc()
    log.info("dashboard login: user %s", user.id)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST only, with the CSRF token (checked by the middleware)."""
    response = web.HTTPFound(url(request, "index"))
    request.app[COOKIES].end(response)
    raise response


async def servers(request: web.Request) -> web.StreamResponse:
    session = require_session(request)
    found = await request.app[CHECKER].servers(session)
    return render(request, "servers.html", {"servers": found})


async def server(request: web.Request) -> web.StreamResponse:
    """One server's overview: its labels and model at a glance, and the way to its pages."""
    access, scope = await open_server(request)
    labels = sorted((await scope.label_counts()).items())
    model = await scope.current_model()
    visible = (await channel_viewer(request, access)).visible_channel_ids()
    waiting = (await scope.review_queue(channels=visible))[1]
    return render(
        request,
        "server.html",
        {
            "server": access,
            "labels": labels,
            "taught": sum(n for _, n in labels),
            "model": model,
            "waiting": waiting,
        },
    )
