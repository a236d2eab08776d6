"""Command sync at start that never stops the bot: a failure is logged and retried.

Discord answers a sync with 429 once the daily command-create limit is spent, a
Discord-compatible server may answer 400, or accept the commands and answer in a shape
discord.py cannot read (Spacebar answered without ids: ``KeyError``); either way the
commands registered before still work, and so do auto-replies. So the first attempt runs at
start, and after any failure the sync is retried in the background with exponential
back-off while the bot keeps serving. Every failure is logged on one line (an unexpected
one's traceback at DEBUG); the retry ends only when a sync succeeds or the bot stops, and
stopping it never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.core.request_deadline import DiscordRequestFailed

log = logging.getLogger(__name__)

#: what a sync is expected to raise: Discord's refusal, a network error, or no answer in time
#: (anything else is retried all the same, its traceback logged at DEBUG)
SYNC_ERRORS = (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError)


class CommandSync:
    """Runs ``sync`` until it succeeds: once now, then after ``initial_s``, doubling up to
    ``max_s`` between attempts."""

    def __init__(
        self, sync: Callable[[], Awaitable[None]], *, initial_s: float, max_s: float
    ) -> None:
        self._sync = sync
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.synced = False
        self.failures = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_attempt: Callable[[bool], None] | None = None  # metrics hook: ok?

    @property
    def retrying(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Try once; on failure, log it and keep retrying in the background."""
        if await self._attempt():
            return
        self._task = asyncio.create_task(self._retry_loop(), name="command-sync-retry")

    async def _attempt(self) -> bool:
        try:
            await self._sync()
        except Exception as exc:
            self.failures += 1
            self.last_error = describe(exc)
            if not isinstance(exc, SYNC_ERRORS):
                log.debug("command sync failed unexpectedly", exc_info=exc)
            self._count(ok=False)
            return False
        self.synced = True
        self.last_error = None
        self._count(ok=True)
        return True

    def _count(self, *, ok: bool) -> None:
        if self.on_attempt is None:
            return
        try:
            self.on_attempt(ok)
        except Exception:  # a metrics hook never stops the sync
            log.exception("command sync: the attempt hook failed")

    async def _retry_loop(self) -> None:
        delay = self.initial_s
        while True:
            log.warning(
                "command sync failed (%s); the bot keeps serving the commands registered "
                "before; retrying in %.1f s",
                self.last_error,
                delay,
            )
            await asyncio.sleep(delay)
            if await self._attempt():
                log.info("command sync succeeded after %d failed attempt(s)", self.failures)
                return
            delay = min(delay * 2, self.max_s)

    async def stop(self) -> None:
        """Stop retrying; never raises (shutdown goes on whatever a sync did)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await task
            except Exception:
                log.exception("the command sync retry had failed")


def describe(exc: BaseException) -> str:
    """A short reason for the log: Discord's status and code, or the error's type."""
    if isinstance(exc, DiscordRequestFailed):  # no status: it says what happened
        return exc.text
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status}, code {exc.code}: {exc.text or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
