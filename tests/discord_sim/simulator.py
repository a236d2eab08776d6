"""The test-facing simulator: start it, create guilds/channels/users, act as users, await replies.

Every wait is event-driven (an :class:`asyncio.Condition` notified on each state change)
and bounded by a timeout; nothing sleeps and polls.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.discord_sim.acting import UserActions
from tests.discord_sim.faults import FaultInjection
from tests.discord_sim.gateway import SIM_KEY, GatewaySession, gateway_handler
from tests.discord_sim.model import (
    DEFAULT_EVERYONE,
    INTENT_GUILD_MESSAGES,
    Application,
    Attachment,
    Channel,
    Emoji,
    Guild,
    Message,
    Role,
    StoredFile,
    User,
    snowflake,
)
from tests.discord_sim.oauth2 import OAuth2Server
from tests.discord_sim.openapi import SpecViolation
from tests.discord_sim.server import RestApi
from tests.discord_sim.validation import sign_path

CDN_HOST = "localhost"  # resolves to 127.0.0.1; the bot must list it in DISCORD_CDN_HOSTS
OTHER_HOST = "127.0.0.1"  # same server, a host the bot must refuse


@dataclass
class Interaction:
    id: int
    token: str
    app: Application
    guild_id: int | None
    channel_id: int
    user: User
    name: str
    payload: dict[str, Any]
    created: float = field(default_factory=time.monotonic)
    responded_at: float | None = None  # the response accepted (after every check)
    #: the response's request reached the simulator (before its checks: the OpenAPI spec,
    #: the body), i.e. when the bot's reply left the bot
    response_received_at: float | None = None
    response_type: int | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    late: bool = False  # the bot answered after the deadline and got 10062
    component_message: Message | None = None  # the message whose button was pressed
    #: a server that forbids external apps: Discord makes every reply ephemeral
    ephemeral_only: bool = False
    forced_private: int = 0  # replies the bot asked to be public that were made private
    modal: dict[str, Any] | None = None  # the modal the bot answered with (callback 9)
    modal_submitted: bool = False
    choices: list[dict[str, Any]] | None = None  # autocomplete choices (callback 8)

    @property
    def kind(self) -> int:
        """2 command, 3 component, 4 autocomplete, 5 modal submit."""
        return int(self.payload["type"])

    @property
    def messages(self) -> list[Message]:
        """Visible (not deleted) messages of this interaction, original first."""
        msgs = [self.original] if self.original is not None else []
        return [m for m in msgs + self.followups if not m.deleted]

    @property
    def final(self) -> list[Message]:
        return [m for m in self.messages if not m.loading]


class DiscordSimulator(FaultInjection, UserActions):
    def __init__(self, *, response_deadline_s: float = 3.0) -> None:
        self.response_deadline_s = response_deadline_s
        #: interaction tokens (follow-ups, edits) expire this long after the interaction
        self.interaction_token_lifetime_s = 15 * 60.0
        self.port = 0
        self.apps_by_token: dict[str, Application] = {}
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.sessions: list[GatewaySession] = []
        self.closed_sessions: list[GatewaySession] = []
        self.cdn_files: dict[int, StoredFile] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.cdn_requests: list[tuple[str, str]] = []
        #: (channel id, query) of every read of a channel's history by a bot
        self.history_reads: list[tuple[int, dict[str, str]]] = []
        self.cdn_aborted = 0
        self.rejected: list[tuple[str, str, int, dict[str, Any]]] = []
        self.rate_limited: list[tuple[str, str]] = []
        #: requests Discord's OpenAPI spec refuses (answered as Discord would, 404/400)
        self.spec_violations: list[SpecViolation] = []
        #: set by a test that sends bad requests on purpose; otherwise stop() fails on any
        self.expect_spec_violations = False
        #: answers of the simulator that the spec's response schemas refuse (its own bugs;
        #: stop() always fails on any)
        self.response_violations: list[str] = []
        self.oauth2 = OAuth2Server(self)
        self._rate_limits: list[list[Any]] = []
        #: [method, path_contains, times, status, code]: answered with that error instead
        self._failures: list[list[Any]] = []
        #: [method, path_contains, times]: never answered (until the simulator stops)
        self._hangs: list[list[Any]] = []
        self._raw_answers: list[list[Any]] = []  # answer_next: sent instead of handling
        self._manglings: list[list[Any]] = []  # mangle_next: the answer rewritten
        self.hung: list[tuple[str, str]] = []
        self._release_hung = asyncio.Event()
        self.gateway_down = False  # True: new gateway connections are refused (503)
        self.gateway_refusals = 0  # connections refused while the gateway was down
        self.recommended_shards = 1  # what GET /gateway/bot advises
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._changed = asyncio.Condition()
        rest = RestApi(self)
        app = web.Application(middlewares=[rest.middleware], client_max_size=64 * 1024 * 1024)
        app[SIM_KEY] = self
        app.add_routes([web.get("/gateway", gateway_handler), *rest.routes()])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._release_hung.set()
        for s in list(self.sessions):
            await s.close(1001, "simulator stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        if self.response_violations:
            found = "\n  ".join(self.response_violations)
            raise AssertionError(f"the simulator answered against Discord's spec:\n  {found}")
        if not self.expect_spec_violations:
            self.assert_spec_clean()

    def assert_spec_clean(self, since: int = 0) -> None:
        """Fail if the bot made a REST call Discord's OpenAPI spec refuses."""
        found = self.spec_violations[since:]
        if found:
            listed = "\n  ".join(str(v) for v in found)
            raise AssertionError(f"REST calls Discord would refuse:\n  {listed}")

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def bot_env(self, app: Application) -> dict[str, str]:
        """Environment variables pointing a bot at this simulator."""
        return {
            "DISCORD_TOKEN": app.token,
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_CDN_HOSTS": CDN_HOST,
        }

    # --- change notification & waiting ----------------------------------------------------
    def notify(self) -> None:
        cond = self._changed
        if cond is None:
            return

        async def _wake() -> None:
            async with cond:
                cond.notify_all()

        asyncio.get_running_loop().create_task(_wake())

    async def wait_until(self, predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change); return it."""
        assert self._changed is not None
        result: Any = None

        def check() -> bool:
            nonlocal result
            result = predicate()
            return bool(result)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(check), timeout_s)
        return result

    # --- world building ----------------------------------------------------------------
    def create_application(
        self,
        name: str = "Classifier",
        *,
        token: str | None = None,
        message_content_allowed: bool = True,
    ) -> Application:
        token = token or ".".join(secrets.token_urlsafe(n) for n in (18, 6, 27))
        user = self.create_user(name, bot=True)
        app = Application(snowflake(), token, user, message_content_allowed)
        self.apps_by_token[token] = app
        for guild in self.guilds.values():
            guild.members.setdefault(user.id, [])
        return app

    def create_user(self, name: str, *, bot: bool = False) -> User:
        user = User(snowflake(), name, bot)
        self.users[user.id] = user
        return user

    def create_guild(self, name: str, owner: User, *, guild_id: int | None = None) -> Guild:
        gid = guild_id or snowflake()
        guild = Guild(gid, name, owner.id, everyone=Role(gid, "@everyone", DEFAULT_EVERYONE))
        guild.members[owner.id] = []
        for app in self.apps_by_token.values():
            guild.members[app.user.id] = []
        self.guilds[gid] = guild
        return guild

    def create_channel(
        self, guild: Guild, name: str, overwrites: dict[int, tuple[int, int]] | None = None
    ) -> Channel:
        channel = Channel(snowflake(), guild.id, name, dict(overwrites or {}))
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        return channel

    def add_emoji(self, guild: Guild, name: str, *, animated: bool = False) -> Emoji:
        """A custom emoji of ``guild`` (in its GUILD_CREATE from now on)."""
        emoji = Emoji(snowflake(), name, animated)
        guild.emojis[emoji.id] = emoji
        return emoji

    def add_member(self, guild: Guild, user: User, permissions: int = 0) -> None:
        """Make ``user`` a member; ``permissions`` > 0 gives them a role with those bits."""
        roles: list[int] = []
        if permissions:
            role = Role(snowflake(), f"role-{user.name}", permissions)
            guild.roles[role.id] = role
            roles.append(role.id)
        guild.members[user.id] = roles

    def upload(
        self,
        data: bytes,
        filename: str,
        *,
        content_type: str | None = None,
        host: str = CDN_HOST,
        declared_size: int | None = None,
        chunked: bool = False,
        redirect_to_host: str | None = None,
        expires_in_s: float = 3600,
        channel_id: int = 0,
    ) -> Attachment:
        """Store ``data`` on the CDN and return the attachment a user's message would carry.

        ``host`` puts the URL on another host; ``redirect_to_host`` makes the URL a redirect
        (on the CDN host) to the file on that host; ``declared_size`` lies about the size.
        """
        aid = snowflake()
        self.cdn_files[aid] = StoredFile(data, filename, content_type, chunked)
        path = f"/attachments/{channel_id}/{aid}/{filename}"
        url = f"http://{host}:{self.port}{path}?{sign_path(path, int(time.time() + expires_in_s))}&"
        if redirect_to_host is not None:
            target = url.replace(f"//{host}:", f"//{redirect_to_host}:")
            self.redirects[str(aid)] = target
            url = f"http://{CDN_HOST}:{self.port}/redirect/{aid}"
        size = len(data) if declared_size is None else declared_size
        return Attachment(aid, filename, size, url, content_type)

    def store_upload(self, channel_id: int, filename: str, data: bytes) -> Attachment:
        """A file the bot uploaded (served by the CDN too)."""
        att = self.upload(data, filename, channel_id=channel_id)
        att.data = data
        return att

    async def drop_connections(self, app: Application, code: int = 4000) -> None:
        """Close ``app``'s gateway sessions (4000: unknown error, the client reconnects)."""
        for session in [s for s in self.sessions if s.app is app]:
            await session.close(code, "simulated disconnect")

    # --- sessions ----------------------------------------------------------------------
    def session_for(self, app: Application, guild_id: int | None = None) -> GatewaySession | None:
        """The ready session of ``app`` that receives ``guild_id``'s events (its shard)."""
        return next(
            (s for s in self.sessions if s.app is app and s.ready and s.owns(guild_id)), None
        )

    def shard_sessions(self, app: Application) -> list[GatewaySession]:
        """Every ready session of ``app`` (one per shard), by shard id."""
        ready = [s for s in self.sessions if s.app is app and s.ready]
        return sorted(ready, key=lambda s: s.shard_id)

    async def wait_connected(
        self, app: Application, timeout_s: float = 30.0, synced: bool = True
    ) -> GatewaySession:
        """Wait until ``app`` is connected (READY + GUILD_CREATEs sent) and, by default,
        has synced its commands."""
        found = await self.wait_until(
            lambda: (not synced or app.command_syncs > 0) and self.shard_sessions(app), timeout_s
        )
        return found[0]

    # --- acting as a user --------------------------------------------------------------
    async def post_message(
        self,
        channel: Channel,
        author: User,
        content: str = "",
        attachments: Iterable[Attachment] = (),
    ) -> Message:
        msg = Message(
            snowflake(),
            channel.id,
            channel.guild_id,
            author,
            content,
            attachments=list(attachments),
        )
        msg.snapshot()
        await self.publish_message(msg)
        return msg

    async def publish_message(self, msg: Message) -> None:
        """Store and dispatch MESSAGE_CREATE; content/attachments are stripped for sessions
        without the MESSAGE_CONTENT intent (unless the message is the bot's own)."""
        self.messages[msg.id] = msg
        for session in list(self.sessions):
            if not session.ready or session.app is None:
                continue
            if not session.intents & INTENT_GUILD_MESSAGES:
                continue
            if not session.owns(msg.guild_id):  # another shard's server
                continue
            own = msg.author.id == session.app.user.id
            strip = not (session.message_content or own)
            await session.dispatch(
                "MESSAGE_CREATE",
                {
                    **msg.payload(strip_content=strip),
                    "member": {
                        "roles": [],
                        "joined_at": None,
                        "deaf": False,
                        "mute": False,
                        "flags": 0,
                    },
                },
            )
        self.notify()

    def bot_messages(self, channel: Channel | None = None) -> list[Message]:
        bots = {a.user.id for a in self.apps_by_token.values()}
        return [
            m
            for m in self.messages.values()
            if m.author.id in bots
            and not m.deleted
            and (channel is None or m.channel_id == channel.id)
        ]

    async def wait_bot_message(
        self, predicate: Callable[[Message], bool], timeout_s: float = 10.0
    ) -> Message:
        return await self.wait_until(
            lambda: next((m for m in self.bot_messages() if predicate(m)), None), timeout_s
        )

    async def remove_bot(self, app: Application, guild: Guild) -> None:
        """Kick ``app``'s bot from ``guild`` (GUILD_DELETE without "unavailable")."""
        guild.members.pop(app.user.id, None)
        session = self.session_for(app)
        if session is not None:
            await session.dispatch("GUILD_DELETE", {"id": str(guild.id)})
