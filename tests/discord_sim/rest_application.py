"""REST routes of the bot's own application: what it is, the gateway, its commands."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web

from tests.discord_sim.auth import bot_app
from tests.discord_sim.model import Command, snowflake
from tests.discord_sim.validation import BODY, DiscordError, json_response

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator


class ApplicationRoutes:
    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self, p: str) -> list[web.RouteDef]:
        """``p``: the versioned API prefix (``/api/v{v}``)."""
        return [
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/gateway", self.get_gateway),
            web.get(p + "/gateway/bot", self.get_gateway),
            web.put(p + "/applications/{app_id}/commands", self.put_commands),
            web.put(p + "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands),
            web.get(p + "/applications/{app_id}/commands", self.get_commands),
        ]

    # --- auth & login ------------------------------------------------------------------
    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(bot_app(self.sim, request).payload())

    async def get_gateway(self, request: web.Request) -> web.Response:
        url = f"ws://127.0.0.1:{self.sim.port}/gateway"
        return json_response(
            {
                "url": url,
                "shards": self.sim.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    # --- commands ----------------------------------------------------------------------
    async def put_commands(self, request: web.Request) -> web.Response:
        app = bot_app(self.sim, request)
        if int(request.match_info["app_id"]) != app.id:
            raise DiscordError(403, 50001, "Missing Access")
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        if guild_id is not None and guild_id not in self.sim.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        body, _ = request[BODY]
        table: dict[tuple[str, int], Command] = {}
        for data in body:
            ctype = int(data.get("type", 1))
            name = str(data.get("name", ""))
            pattern = r"^[-_\w]{1,32}$" if ctype == 1 else r"^.{1,32}$"
            if not re.match(pattern, name) or (ctype == 1 and name != name.lower()):
                raise DiscordError(400, 50035, "Invalid Form Body", {"name": "invalid"})
            if ctype == 1 and not 1 <= len(data.get("description", "")) <= 100:
                raise DiscordError(400, 50035, "Invalid Form Body", {"description": "1-100"})
            if data.get("default_member_permissions") is not None:  # a string on the wire
                data["default_member_permissions"] = str(data["default_member_permissions"])
            table[(name, ctype)] = Command(snowflake(), app.id, guild_id, data)
        if guild_id is None:
            app.global_commands = table
        else:
            app.guild_commands[guild_id] = table
        app.command_syncs += 1
        self.sim.notify()
        return json_response([c.payload() for c in table.values()])

    async def get_commands(self, request: web.Request) -> web.Response:
        app = bot_app(self.sim, request)
        return json_response([c.payload() for c in app.global_commands.values()])
