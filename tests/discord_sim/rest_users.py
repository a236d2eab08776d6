"""REST routes about users: ``/users/@me`` and ``/users/@me/guilds`` (a bot token, or a
bearer token of the OAuth2 flow with the scope the spec names), and a server's member as
the bot sees it (``GET /guilds/{guild_id}/members/{user_id}``, bot token only).

Every answer here is checked against the spec's response schema; an answer the spec
refuses is recorded in ``sim.response_violations`` (``stop()`` fails on any) and sent as a
500, so neither the test nor the client goes on with it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.discord_sim.auth import bot_app
from tests.discord_sim.model import User, iso_now
from tests.discord_sim.oauth2 import GRANT
from tests.discord_sim.openapi import load_spec
from tests.discord_sim.validation import DiscordError, json_response

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator

GUILDS_PAGE_MAX = 200  # the spec's maximum ``limit`` of /users/@me/guilds


class UserRoutes:
    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self, p: str) -> list[web.RouteDef]:
        return [
            web.get(p + "/users/@me", self.get_me),
            web.get(p + "/users/@me/guilds", self.my_guilds),
            web.get(p + "/guilds/{guild_id}/members/{user_id}", self.guild_member),
        ]

    def caller(self, request: web.Request) -> tuple[User, frozenset[str] | None]:
        """The user a request acts for, and its token's scopes (``None``: a bot token)."""
        grant = request.get(GRANT)
        if grant is not None:
            return grant.user, grant.scopes
        return bot_app(self.sim, request).user, None

    def answer(self, request: web.Request, data: Any) -> web.Response:
        """``data`` as JSON, once the spec's schema for this route's 200 accepts it."""
        api_path = re.sub(r"^/api/v\d+", "", request.path)
        errors = load_spec().response_errors(request.method, api_path, 200, data)
        if errors:
            found = f"{request.method} {request.path} answered against the spec: {errors}"
            self.sim.response_violations.append(found)
            return json_response({"code": 0, "message": found}, status=500)
        return json_response(data)

    async def get_me(self, request: web.Request) -> web.Response:
        user, scopes = self.caller(request)
        return self.answer(request, user.me_payload(email=scopes is not None and "email" in scopes))

    async def my_guilds(self, request: web.Request) -> web.Response:
        """The caller's servers as partial guilds by id, paged by before/after/limit."""
        user, _ = self.caller(request)
        query = request.query
        limit = int(query.get("limit", GUILDS_PAGE_MAX))
        after, before = int(query.get("after", 0)), int(query.get("before", 0))
        guilds = sorted(
            (g for g in self.sim.guilds.values() if user.id in g.members), key=lambda g: g.id
        )
        if after:
            guilds = [g for g in guilds if g.id > after]
        if before:
            guilds = [g for g in guilds if g.id < before][-limit:]
        with_counts = query.get("with_counts", "false").lower() in ("true", "1")
        page = []
        for guild in guilds[:limit]:
            item: dict[str, Any] = {
                "id": str(guild.id),
                "name": guild.name,
                "icon": None,
                "banner": None,
                "owner": guild.owner_id == user.id,
                "permissions": str(guild.base_permissions(user.id)),
                "features": [],
            }
            if with_counts:
                item["approximate_member_count"] = len(guild.members)
                item["approximate_presence_count"] = 0
            page.append(item)
        return self.answer(request, page)

    async def guild_member(self, request: web.Request) -> web.Response:
        app = bot_app(self.sim, request)
        guild = self.sim.guilds.get(_snowflake(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        if app.user.id not in guild.members:
            raise DiscordError(403, 50001, "Missing Access")
        user = self.sim.users.get(_snowflake(request.match_info["user_id"]))
        if user is None or user.id not in guild.members:
            raise DiscordError(404, 10007, "Unknown Member")
        member = {
            "user": user.full_payload(),
            "roles": [str(r) for r in guild.members[user.id]],
            "joined_at": iso_now(),
            "nick": None,
            "avatar": None,
            "banner": None,
            "communication_disabled_until": None,
            "premium_since": None,
            "flags": 0,
            "pending": False,
            "mute": False,
            "deaf": False,
        }
        return self.answer(request, member)


def _snowflake(text: str) -> int:
    return int(text) if text.isdigit() else 0
