"""Which servers a logged-in member may manage, and the check every per-server page calls.

A server is listed when all three hold:
- Discord lists it among the member's servers (``/users/@me/guilds``, their token);
- the bot is there: this process's gateway connection has the server (the dashboard runs
  in the bot's process; a server of another process's shards is not listed);
- the member is an administrator (owner, the Administrator permission, or one of the
  bot's operators) or holds the server's trainer role, read from the bot's own view of
  the member (``GET /guilds/{id}/members/{user}`` with the bot's token), decided by
  :func:`bot.core.member_access.server_role`, the rule the commands use.

Discord's answers are reused for ``DASHBOARD_ACCESS_RECHECK_S`` seconds per member (and
per server for roles); the bot's presence and the trainer role (the database) are read on
every check.

The same roles decide which of the server's channels a trainer can view (what review items
they see and decide, ``bot.core.channel_access``): ``views.channel_viewer``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aiohttp import web

from bot.core.member_access import ServerRole, server_role
from bot.dashboard.config import DashboardConfig
from bot.dashboard.discord_api import DiscordApi, PartialGuild
from bot.dashboard.sessions import Session
from bot.db import Store

K = TypeVar("K")
V = TypeVar("V")
CACHE_ENTRIES = 10_000


class ServerNotFound(web.HTTPNotFound):
    """Not a server this member may open (one answer for every reason: no existence leaks)."""

    def __init__(self) -> None:
        super().__init__(text="No such server for you.")


class NotAllowed(web.HTTPForbidden):
    """A member of the server without the role the page needs."""


@dataclass(frozen=True)
class ServerAccess:
    """A server the member may open, and what they may do there."""

    guild_id: int
    name: str
    role: ServerRole

    @property
    def admin(self) -> bool:
        return self.role is ServerRole.ADMIN


class TimedCache(Generic[K, V]):
    """At most ``CACHE_ENTRIES`` answers, each good for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None or time.monotonic() - found[0] >= self.ttl_s:
            return None
        return found[1]

    def put(self, key: K, value: V) -> V:
        self._items[key] = (time.monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > CACHE_ENTRIES:
            self._items.popitem(last=False)
        return value


class AccessChecker:
    def __init__(
        self,
        config: DashboardConfig,
        store: Store,
        api: DiscordApi,
        bot_present: Callable[[int], bool],
    ) -> None:
        self.config = config
        self.store = store
        self.api = api
        self.bot_present = bot_present  # the bot is in this server (this process's shards)
        self._guilds: TimedCache[str, list[PartialGuild]] = TimedCache(config.access_recheck_s)
        self._roles: TimedCache[tuple[int, int], frozenset[int]] = TimedCache(
            config.access_recheck_s
        )

    async def member_guilds(self, session: Session) -> list[PartialGuild]:
        key = hashlib.sha256(session.access_token.encode()).hexdigest()
        cached = self._guilds.get(key)
        if cached is not None:
            return cached
        return self._guilds.put(key, await self.api.my_guilds(session.access_token))

    async def role_ids(self, guild_id: int, user_id: int) -> frozenset[int]:
        """The member's roles as the bot reads them (none when they left or the bot is
        gone); reused for ``DASHBOARD_ACCESS_RECHECK_S``."""
        key = (guild_id, user_id)
        cached = self._roles.get(key)
        if cached is not None:
            return cached
        found = await self.api.member_role_ids(guild_id, user_id)
        return self._roles.put(key, found if found is not None else frozenset())

    async def role_in(self, session: Session, guild: PartialGuild) -> ServerRole | None:
        operator = session.user_id in self.config.operator_ids
        role = server_role(
            owner=guild.owner,
            permissions=guild.permissions,
            operator=operator,
            role_ids=(),
            trainer_role_id=None,
        )
        if role is not None:
            return role
        trainer_role_id = (await self.store.guild(guild.id).settings()).trainer_role_id
        if trainer_role_id is None:
            return None
        role_ids = await self.role_ids(guild.id, session.user_id)
        return server_role(
            owner=guild.owner,
            permissions=guild.permissions,
            operator=operator,
            role_ids=role_ids,
            trainer_role_id=trainer_role_id,
        )

    async def servers(self, session: Session) -> list[ServerAccess]:
        """Every server the member may manage, by name."""
        found = []
        for guild in await self.member_guilds(session):
            if not self.bot_present(guild.id):
                continue
            role = await self.role_in(session, guild)
            if role is not None:
                found.append(ServerAccess(guild.id, guild.name, role))
        return sorted(found, key=lambda s: (s.name.lower(), s.guild_id))

    async def require(
        self, session: Session, guild_id: int, *, admin: bool = False
    ) -> ServerAccess:
        """The check every per-server page and action calls first.

        :class:`ServerNotFound` (404) when the member may not open this server at all (not
        theirs, the bot is not there, neither admin nor trainer), :class:`NotAllowed`
        (403) when ``admin`` is asked and they are only a trainer."""
        guild = next((g for g in await self.member_guilds(session) if g.id == guild_id), None)
        if guild is None or not self.bot_present(guild_id):
            raise ServerNotFound()
        role = await self.role_in(session, guild)
        if role is None:
            raise ServerNotFound()
        if admin and role is not ServerRole.ADMIN:
            raise NotAllowed(text="This page is for the server's administrators.")
        return ServerAccess(guild.id, guild.name, role)
