"""The calls the dashboard makes to Discord: the OAuth2 code exchange, the member's own
identity and servers (their bearer token), and a member's roles (the bot's token).

Errors are typed and carry the message the member sees. Nothing here logs a token, a code
or the client secret.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from bot.core.errors import UserError
from bot.dashboard.config import SCOPES, DashboardConfig

log = logging.getLogger(__name__)

TIMEOUT_S = 15.0
GUILDS_PAGE = 200  # Discord's largest page of /users/@me/guilds


class DiscordUnavailable(UserError):
    """Discord did not answer usefully (network, 5xx, rate limit); try again later."""


class LoginRejected(UserError):
    """Discord refused the code exchange, or granted less than the dashboard needs."""


class TokenExpired(UserError):
    """The member's Discord token no longer works: they must log in again."""

    def __init__(self) -> None:
        super().__init__("Your Discord login has expired. Please log in again.")


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: float
    scopes: frozenset[str]


@dataclass(frozen=True)
class DiscordUser:
    id: int
    name: str  # the display name, else the username


@dataclass(frozen=True)
class PartialGuild:
    """A server as ``/users/@me/guilds`` lists it for the member."""

    id: int
    name: str
    owner: bool
    permissions: int


def client_basic_auth(config: DashboardConfig) -> str:
    """RFC 6749 2.3.1: id and secret form-encoded, then HTTP Basic."""
    pair = f"{quote_plus(str(config.client_id))}:{quote_plus(config.client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


class DiscordApi:
    def __init__(self, config: DashboardConfig, http: aiohttp.ClientSession) -> None:
        self.config = config
        self.http = http

    async def _call(
        self, method: str, url: str, *, headers: dict[str, str], **kw: Any
    ) -> tuple[int, Any]:
        try:
            async with asyncio.timeout(TIMEOUT_S):
                async with self.http.request(method, url, headers=headers, **kw) as resp:
                    if resp.status == 429:
                        retry = resp.headers.get("Retry-After", "a few")
                        raise DiscordUnavailable(
                            f"Discord asks us to slow down. Please try again in {retry} seconds."
                        )
                    if resp.status >= 500:
                        raise DiscordUnavailable(
                            f"Discord is having trouble (HTTP {resp.status}). Please try again."
                        )
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = None
                    return resp.status, body
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("Discord did not answer %s %s: %s", method, url, type(exc).__name__)
            raise DiscordUnavailable("Discord did not answer. Please try again.") from None

    # --- OAuth2 -----------------------------------------------------------------------------
    async def exchange_code(self, code: str) -> TokenGrant:
        """The authorization code for the member's token (client secret by HTTP Basic)."""
        config = self.config
        status, body = await self._call(
            "POST",
            config.token_url,
            headers={"Accept": "application/json", "Authorization": client_basic_auth(config)},
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": config.redirect_uri,
            },
        )
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            log.warning("the OAuth2 code exchange was refused: HTTP %s %s", status, error)
            raise LoginRejected("Discord refused this login. Please log in again.")
        scopes = frozenset(str(body.get("scope", "")).split())
        if not set(SCOPES) <= scopes or str(body.get("token_type", "")).lower() != "bearer":
            raise LoginRejected(
                "Discord did not grant what the dashboard needs (your identity and your "
                "servers). Please log in again and allow both."
            )
        return TokenGrant(str(body["access_token"]), float(body.get("expires_in", 0)), scopes)

    # --- the member, with their token -----------------------------------------------------------
    async def _as_member(self, token: str, path: str, **params: str) -> Any:
        status, body = await self._call(
            "GET",
            self.config.api_base + path,
            headers={"Authorization": f"Bearer {token}"},
            params=params or None,
        )
        if status == 401:
            raise TokenExpired()
        if status != 200:
            raise DiscordUnavailable(f"Discord answered HTTP {status}. Please try again.")
        return body

    async def me(self, token: str) -> DiscordUser:
        body = await self._as_member(token, "/users/@me")
        return DiscordUser(int(body["id"]), str(body.get("global_name") or body["username"]))

    async def my_guilds(self, token: str) -> list[PartialGuild]:
        """Every server of the member (all pages)."""
        guilds: list[PartialGuild] = []
        after = "0"
        while True:
            page = await self._as_member(
                token, "/users/@me/guilds", limit=str(GUILDS_PAGE), after=after
            )
            guilds += [
                PartialGuild(int(g["id"]), str(g["name"]), bool(g["owner"]), int(g["permissions"]))
                for g in page
            ]
            if len(page) < GUILDS_PAGE:
                return guilds
            after = str(page[-1]["id"])

    # --- the bot's view ----------------------------------------------------------------------
    async def member_role_ids(self, guild_id: int, user_id: int) -> frozenset[int] | None:
        """The member's roles in the server, as the bot sees them; ``None`` when they are
        not a member or the bot is not in the server."""
        status, body = await self._call(
            "GET",
            f"{self.config.api_base}/guilds/{guild_id}/members/{user_id}",
            headers={"Authorization": f"Bot {self.config.bot_token}"},
        )
        if status in (403, 404):
            return None
        if status != 200:
            raise DiscordUnavailable(f"Discord answered HTTP {status}. Please try again.")
        return frozenset(int(r) for r in body.get("roles", ()))
