"""Reaching Discord at start: a login that gets no answer, and a gateway that refuses the
first connection, each end the start with one clear line (exit code 8), not a traceback.

- Login (``GET /users/@me``, then ``GET /oauth2/applications/@me``): every REST call is
  bounded by ``DISCORD_REQUEST_TIMEOUT_S`` (``request_deadline``); a login that times
  out, cannot be read, is refused with a 5xx or cannot connect becomes
  :class:`DiscordUnreachable` naming the call and ``DISCORD_API_BASE``.
- The gateway: discord.py retries a connection that fails once the bot has been connected,
  but a failure of the very first one (the gateway answering 503, a connection refused, no
  answer) breaks its reconnect loop (``AttributeError: 'NoneType' object has no attribute
  'sequence'``: there is no session yet to resume). Every gateway websocket is opened by
  ``HTTPClient.ws_connect``; :func:`retry_first_connect` wraps it: until one connection has
  opened, a failure is logged on one line and retried after 1 s, 2 s, 4 s... (at most
  30 s apart) while ``GATEWAY_CONNECT_TIMEOUT_S`` lasts, then :class:`GatewayUnreachable`
  ends the start. Later connections are discord.py's own business (it resumes, with its
  own back-off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import discord
import yarl

from bot.core.request_deadline import DiscordRequestFailed, DiscordRequestTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0


class DiscordUnreachable(Exception):
    """Discord could not be reached or did not answer at start; the message says which
    call and which setting to check."""


class GatewayUnreachable(DiscordUnreachable):
    """The gateway refused every first connection for ``GATEWAY_CONNECT_TIMEOUT_S``."""


async def login_or_explain(login: Awaitable[T], api_base: str, logging_in: Callable[[], bool]) -> T:
    """``await login``; a Discord that does not answer it usefully -> :class:`DiscordUnreachable`.

    ``logging_in()`` tells whether the failure came from the login's own calls (discord.py's
    ``login`` then runs ``setup_hook``, whose errors keep their own meaning)."""
    try:
        return await login
    except (DiscordRequestFailed, discord.DiscordServerError, aiohttp.ClientConnectionError) as exc:
        if not logging_in():
            raise
        raise DiscordUnreachable(login_failure(exc, api_base)) from None


def login_failure(exc: BaseException, api_base: str) -> str:
    if isinstance(exc, DiscordRequestTimeout):
        return (
            f"Discord did not answer the login ({exc.method} {exc.path}) within "
            f"{exc.timeout_s:g} s. Check the network and DISCORD_API_BASE ({api_base})."
        )
    if isinstance(exc, DiscordRequestFailed):
        return f"{exc.text} at login. Check DISCORD_API_BASE ({api_base})."
    if isinstance(exc, discord.DiscordServerError):
        return (
            f"Discord answered the login with HTTP {exc.status} (a server error, retried "
            f"5 times). Try again later, or check DISCORD_API_BASE ({api_base})."
        )
    return (
        f"Could not reach Discord at {api_base} ({type(exc).__name__}: {exc}). Check the "
        "network and DISCORD_API_BASE."
    )


def refusal(exc: BaseException, timeout_s: float) -> str:
    """Why a gateway connection failed, in a few words."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:.0f} s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def retry_first_connect(http: discord.http.HTTPClient, budget_s: float) -> None:
    """Retry the gateway's first connection with back-off for ``budget_s`` seconds, then
    raise :class:`GatewayUnreachable` (which discord.py's connect loop does not catch)."""
    original: Callable[..., Awaitable[aiohttp.ClientWebSocketResponse]] = http.ws_connect
    opened = False

    async def ws_connect(url: str, **kwargs: Any) -> aiohttp.ClientWebSocketResponse:
        nonlocal opened
        if opened:
            return await original(url, **kwargs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        delay = FIRST_RETRY_S
        shown = str(yarl.URL(url).with_query(None))
        attempt = 0
        while True:
            attempt += 1
            attempt_s = max(deadline - loop.time(), FIRST_RETRY_S)
            try:
                async with asyncio.timeout(attempt_s):
                    socket = await original(url, **kwargs)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = refusal(exc, attempt_s)
                if deadline - loop.time() < delay:
                    raise GatewayUnreachable(
                        f"Discord's gateway at {shown} refused the connection {attempt} "
                        f"time(s) in {budget_s:g} s (last: {why}). Check the network and "
                        "DISCORD_GATEWAY_URL, or try again later."
                    ) from None
                log.warning(
                    "the gateway refused the first connection (%s); retrying in %.0f s",
                    why,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
            else:
                opened = True
                if attempt > 1:
                    log.info("connected to the gateway at attempt %d", attempt)
                return socket

    http.ws_connect = ws_connect  # type: ignore[method-assign]
