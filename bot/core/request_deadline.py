"""A deadline on every call the bot makes to Discord's REST API.

A server that never answers (Spacebar leaves the callback of an unknown interaction
hanging) would hold the caller, and the concurrency slot it holds, until aiohttp's own
5-minute timeout, and delay shutdown. discord.py sends bot calls through
``HTTPClient.request`` and interaction callbacks, follow-ups and webhook edits through
``AsyncWebhookAdapter.request``; both are bounded here (rate-limit waits included).
Expiry raises :class:`DiscordRequestTimeout`, an ``HTTPException``, so every handler that
copes with a refused call copes with a silent one too. An answer that cannot be read (a
body that claims to be JSON and is not, e.g. a proxy's HTML error page) or a connection
lost mid-answer raises :class:`DiscordAnswerUnreadable`, an ``HTTPException`` too.

Neither has an HTTP status (``status`` is 0): :func:`discord_said` words any refusal for a
message, never as "Discord said: 0".
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import discord
from discord.webhook.async_ import AsyncWebhookAdapter, async_context

T = TypeVar("T")


class DiscordRequestFailed(discord.HTTPException):
    """A REST call that got no usable answer from Discord: no HTTP status (0)."""

    def __init__(self, method: str, path: str, text: str) -> None:
        # HTTPException.__init__ reads a response; there is none to read.
        self.response = None  # type: ignore[assignment]
        self.status = 0
        self.code = 0
        self.text = text
        Exception.__init__(self, text)
        self.method, self.path = method, path


class DiscordRequestTimeout(DiscordRequestFailed):
    """Discord did not answer a REST call within ``DISCORD_REQUEST_TIMEOUT_S``."""

    def __init__(self, method: str, path: str, timeout_s: float) -> None:
        super().__init__(
            method, path, f"Discord did not answer {method} {path} within {timeout_s:g} s"
        )
        self.timeout_s = timeout_s


class DiscordAnswerUnreadable(DiscordRequestFailed):
    """Discord's answer could not be read: not the JSON it claimed to be, or the connection
    was lost while it came."""

    def __init__(self, method: str, path: str, cause: BaseException) -> None:
        reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        super().__init__(
            method, path, f"Discord's answer to {method} {path} could not be read ({reason})"
        )


#: what the HTTP layer raises for an answer it cannot read: a body that is not the JSON its
#: Content-Type claims, a connection lost or a payload cut short (aiohttp's own errors)
UNREADABLE = (json.JSONDecodeError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)


def discord_said(error: discord.HTTPException) -> str:
    """Discord's refusal in a few words for a message: "Discord said: 403", or, without a
    status, what happened instead."""
    if isinstance(error, DiscordRequestTimeout):
        return "Discord did not answer in time"
    if isinstance(error, DiscordAnswerUnreadable) or not error.status:
        return "Discord's answer could not be read"
    return f"Discord said: {error.status}"


OnTimeout = Callable[[DiscordRequestTimeout], None]


async def bounded(
    call: Callable[[], Awaitable[T]],
    method: str,
    path: str,
    timeout_s: float,
    on_timeout: OnTimeout | None = None,
) -> T:
    """``await call()`` within ``timeout_s``, else :class:`DiscordRequestTimeout`; an answer
    that cannot be read raises :class:`DiscordAnswerUnreadable`."""
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            return await call()
    except TimeoutError:
        if not deadline.expired():
            raise  # a timeout of aiohttp's own
    except UNREADABLE as exc:
        raise DiscordAnswerUnreadable(method, path, exc) from exc
    error = DiscordRequestTimeout(method, path, timeout_s)
    if on_timeout is not None:
        on_timeout(error)
    raise error


def bound_http_client(
    http: discord.http.HTTPClient, timeout_s: float, on_timeout: OnTimeout | None = None
) -> None:
    """Bound the bot's own REST calls (messages, command sync, login...)."""
    original = http.request

    @functools.wraps(original)
    async def request(route: discord.http.Route, **kwargs: Any) -> Any:
        return await bounded(
            lambda: original(route, **kwargs), route.method, route.path, timeout_s, on_timeout
        )

    http.request = request  # type: ignore[method-assign]


class BoundedWebhookAdapter(AsyncWebhookAdapter):
    """Interaction responses, follow-ups and webhook message edits, bounded."""

    def __init__(self, timeout_s: float, on_timeout: OnTimeout | None = None) -> None:
        super().__init__()
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout

    async def request(self, route: Any, *args: Any, **kwargs: Any) -> Any:
        parent = super().request
        return await bounded(
            lambda: parent(route, *args, **kwargs),
            route.method,
            route.path,
            self.timeout_s,
            self.on_timeout,
        )


def bound_webhook_calls(timeout_s: float, on_timeout: OnTimeout | None = None) -> None:
    """Bound interaction and webhook calls made from this task and the tasks it starts
    (discord.py reads the adapter from a context variable at each call)."""
    async_context.set(BoundedWebhookAdapter(timeout_s, on_timeout))
