"""The bot: owns the backend, the HTTP session for downloads, the state store, the door
(admission) and cooldowns."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.core.admission import Admission
from bot.core.admission_metrics import AdmissionMetrics
from bot.core.command_sync import CommandSync
from bot.core.errors import ClassifierTree
from bot.core.gateway_events import skip_malformed_events
from bot.core.health import HealthServer, ListenerFailed
from bot.core.limits import Cooldowns
from bot.core.metrics import BotMetrics
from bot.core.reaching_discord import login_or_explain, retry_first_connect
from bot.core.request_deadline import bound_http_client, bound_webhook_calls
from bot.core.retraining import Retrainer
from bot.core.settings import Settings
from bot.db import DatabaseError, Store, open_store
from golem_backend import Backend, BackendError

log = logging.getLogger(__name__)

#: The features, loaded by name: each registers its own commands, listeners, dynamic
#: items and background tasks in its ``setup()``; this module imports none of them.
EXTENSIONS = (
    "bot.cogs.classify",
    "bot.cogs.auto_replies",
    "bot.cogs.admin",
    "bot.cogs.data",
    "bot.cogs.teach",
    "bot.cogs.feedback",
    "bot.cogs.labels",
    "bot.cogs.rules",
    "bot.dashboard",  # serves only when DASHBOARD_PUBLIC_URL is set
)


class BackendStartFailed(Exception):
    """The backend could not start; the bot cannot serve."""


class DatabaseStartFailed(BackendStartFailed):
    """The database could not be opened or migrated; the bot cannot serve."""


def configure_endpoints(settings: Settings) -> None:
    """Point discord.py at ``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL``.

    discord.py keeps both as class attributes (REST, interaction callbacks and webhooks
    all use ``Route.BASE``), so they apply to every client in this process.
    """
    discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def make_intents(settings: Settings) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True  # auto-replies in watched channels
    intents.message_content = settings.message_content_intent  # privileged
    return intents


def create_default_backend(settings: Settings) -> Backend:
    from golem_backend import create_backend

    return create_backend(settings)


class ClassifierBot(commands.Bot):
    def __init__(
        self, settings: Settings, backend: Backend | None = None, **client_options: Any
    ) -> None:
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=make_intents(settings),
            tree_cls=ClassifierTree,
            help_command=None,
            max_messages=None,
            allowed_mentions=discord.AllowedMentions.none(),
            **client_options,
        )
        self.settings = settings
        self.backend = backend if backend is not None else create_default_backend(settings)
        self._store: Store | None = None
        self.retrainer = Retrainer(settings, self.backend)
        self.cooldowns = Cooldowns(settings.cooldown_uses, settings.cooldown_window_s)
        #: the one door of every path that classifies (bot.core.classifying.admitted)
        self.admission = Admission(self.backend.capacity, settings.max_queue_wait_s)
        self.started_at = time.monotonic()
        self._http_session: aiohttp.ClientSession | None = None
        self._closing = False
        self.extension_failures: dict[str, str] = {}
        self.metrics = BotMetrics()
        self.metrics.instrument_backend(self.backend)
        self.admission_metrics = AdmissionMetrics(self.metrics.registry, self.admission)
        bound_http_client(self.http, settings.discord_request_timeout_s, self._request_timed_out)
        retry_first_connect(self.http, settings.gateway_connect_timeout_s)
        skip_malformed_events(
            self._connection, lambda event: self.metrics.gateway_events_skipped.labels(event).inc()
        )
        self.command_sync = CommandSync(
            self.sync_commands,
            initial_s=settings.command_sync_retry_s,
            max_s=settings.command_sync_retry_max_s,
        )
        self.command_sync.on_attempt = lambda ok: self.metrics.command_syncs.labels(
            "ok" if ok else "failed"
        ).inc()
        self.health: HealthServer | None = None
        if settings.http_port is not None:
            self.health = HealthServer(self, settings.http_host, settings.http_port)

    @property
    def is_closing(self) -> bool:
        return self._closing

    def _request_timed_out(self, error: Exception) -> None:
        self.metrics.discord_request_timeouts.inc()
        log.warning("%s", error)

    @property
    def http_session(self) -> aiohttp.ClientSession:
        """The one session used for attachment downloads (created in ``setup_hook``)."""
        assert self._http_session is not None, "setup_hook has not run"
        return self._http_session

    @property
    def store(self) -> Store:
        """The database (opened in ``setup_hook``); ``store.guild(id)`` scopes it."""
        assert self._store is not None, "setup_hook has not run"
        return self._store

    async def login(self, token: str) -> None:
        """discord.py's login; Discord not answering it -> ``DiscordUnreachable`` (exit 7)."""
        base = discord.http.Route.BASE
        log.info(
            "logging in to Discord at %s (waiting up to %g s for each answer)",
            base,
            self.settings.discord_request_timeout_s,
        )
        await login_or_explain(super().login(token), base, lambda: self._application is None)

    async def setup_hook(self) -> None:
        bound_webhook_calls(self.settings.discord_request_timeout_s, self._request_timed_out)
        if self.health is not None:
            await self.health.start()  # /healthz answers while the backend starts
        self._http_session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "golem-image-classifier-bot"},
        )
        try:
            self._store = await open_store(self.settings)
        except DatabaseError as exc:
            raise DatabaseStartFailed(str(exc)) from exc
        try:
            await self.backend.start()
        except BackendError as exc:
            raise BackendStartFailed(str(exc)) from exc
        for name in EXTENSIONS:
            try:
                await self.load_extension(name)
            except commands.ExtensionFailed as exc:
                if isinstance(exc.original, ListenerFailed):  # the dashboard's port
                    raise exc.original from None
                self.extension_failures[name] = repr(exc)
                log.exception("failed to load extension %s", name)
            except Exception as exc:
                self.extension_failures[name] = repr(exc)
                log.exception("failed to load extension %s", name)
        if self.settings.sync_commands:
            await self.command_sync.start()  # a failure is retried in the background
        if self.settings.autoclassify_channel_ids and not self.settings.message_content_intent:
            log.warning(
                "AUTOCLASSIFY_CHANNEL_IDS is set but MESSAGE_CONTENT_INTENT is off: "
                "auto-replies need the message content intent"
            )

    async def sync_commands(self) -> None:
        if self.settings.dev_guild_id is not None:
            guild = discord.Object(self.settings.dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild.id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take up to an hour to appear)", len(synced))

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        """Events reach the handlers until the client has closed. After that discord.py
        may still fire one of its own late tasks (the "ready" that waits for the servers'
        GUILD_CREATEs, when Python 3.11's ``wait_for`` loses the cancellation ``close``
        sent it): its loop is gone, so it is dropped instead of raising in a task nobody
        awaits."""
        if self.loop is discord.utils.MISSING:
            log.debug("event %s after the client closed: dropped", event_name)
            return
        super().dispatch(event_name, *args, **kwargs)

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info(
            "connected as %s (id %s) in %d guild(s)", self.user, self.user.id, len(self.guilds)
        )

    async def _finish_event_handlers(self, timeout_s: float) -> None:
        """Let the event handlers discord.py started (its tasks named ``discord.py:
        <event>``) finish before the backend and the database close; past ``timeout_s``
        they are cancelled and awaited. A handler cut off later, when the process exits,
        would be cancelled in the middle of a database write, and SQLAlchemy logs the
        rollback it then attempts as an error."""
        current = asyncio.current_task()
        running = [
            task
            for task in asyncio.all_tasks()
            if task is not current and not task.done() and task.get_name().startswith("discord.py:")
        ]
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d event handler(s) still running at shutdown: cancelled", len(late))
            await asyncio.wait(late, timeout=1.0)

    @property
    def gateway_connected(self) -> bool:
        """Every gateway connection of this process is open (read, not tracked through
        events: a ``disconnect`` handler would be scheduled on a closed loop when the bot
        stops while discord.py is reconnecting)."""
        if self.is_closed() or not self.is_ready():
            return False
        shards = getattr(self, "shards", None)  # AutoShardedBot
        if isinstance(shards, dict):
            return bool(shards) and not any(info.is_closed() for info in shards.values())
        ws = self.ws
        return ws is not None and not ws.socket.closed

    @property
    def was_connected(self) -> bool:
        return self.is_ready()

    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: object
    ) -> None:
        name = getattr(command, "qualified_name", None)
        self.metrics.interaction(name, "ok")

    async def on_message(self, message: discord.Message, /) -> None:
        """The bot has no prefix commands: unlike ``commands.Bot``, do not look for one
        (a mention such as "@Bot what is this?" would log CommandNotFound as an error).
        The cogs' ``on_message`` listeners still receive every message."""

    async def close(self) -> None:
        """Graceful stop: refuse new work, tell every request waiting at the door, let
        the admitted ones finish (or fail them with a message), then stop the backend and
        close the sessions. Safe to call twice."""
        if self._closing:
            await super().close()
            return
        self._closing = True
        log.info("shutting down")
        try:
            await self.command_sync.stop()  # never raises: whatever a sync did, we drain
            await self.admission.drain(self.settings.shutdown_grace_s)
        finally:
            # discord.py dispatches "ready" from a task that fails if the client closed
            # before it fired (within guild_ready_timeout of connecting): cancel it.
            ready_task = getattr(self._connection, "_ready_task", None)
            if ready_task is not None:
                ready_task.cancel()
            await super().close()
            await self._finish_event_handlers(min(self.settings.shutdown_grace_s, 5.0))
            try:
                await self.backend.stop()
            except Exception:
                log.exception("stopping the backend failed")
            else:
                log.info("backend stopped")
            if self._http_session is not None:
                await self._http_session.close()
            if self._store is not None:
                await self._store.close()
            if self.health is not None:
                await self.health.stop()
