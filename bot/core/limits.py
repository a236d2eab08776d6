"""Per-user cooldown, the global concurrency limit, and in-flight tracking for shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from discord import app_commands

from bot.core.errors import Busy, OnCooldown, ServerBusy, ShuttingDown

log = logging.getLogger(__name__)


class Cooldowns:
    """At most ``uses`` classifications per user per ``window_s`` seconds."""

    def __init__(self, uses: int, window_s: float) -> None:
        self.uses, self.window_s = uses, window_s
        self._buckets: dict[int, app_commands.Cooldown] = {}
        self._last_prune = time.monotonic()

    def hit(self, user_id: int) -> None:
        """Count one use by ``user_id``; raise :class:`OnCooldown` when over the limit."""
        self._prune()
        bucket = self._buckets.setdefault(user_id, app_commands.Cooldown(self.uses, self.window_s))
        retry_after = bucket.update_rate_limit()
        if retry_after:
            raise OnCooldown(max(retry_after, 1.0))

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.window_s:
            return
        self._last_prune = now
        for user_id, bucket in list(self._buckets.items()):
            if bucket.get_tokens() >= bucket.rate:
                del self._buckets[user_id]


class WorkGate:
    """Admits at most ``limit`` classifications at once and drains them on shutdown.

    ``slot()`` refuses immediately (``Busy``) instead of queueing, so nobody waits silently.
    One tenant (a server) holds at most half of the slots (``ServerBusy`` beyond), so the
    rest stays available to the others.
    A task that took a slot is tracked until it finishes (error reply included), so that
    shutdown never closes the HTTP session under a reply being sent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing = False
        self.active = 0
        self.tenant_limit = max(1, limit // 2)
        self.by_tenant: dict[str, int] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()
        self.on_refused: Callable[[], None] | None = None  # metrics hook

    def check_open(self) -> None:
        if self.closing:
            raise ShuttingDown()

    @asynccontextmanager
    async def slot(
        self, tenant: str | None = None, *, exclusive_ok: bool = False
    ) -> AsyncIterator[None]:
        """Hold one unit of work for ``tenant``. ``exclusive_ok`` skips the limits (admin
        jobs)."""
        self.check_open()
        if not exclusive_ok and self.active >= self.limit:
            if self.on_refused is not None:
                self.on_refused()
            raise Busy()
        held = self.by_tenant.get(tenant, 0) if tenant is not None else 0
        if not exclusive_ok and tenant is not None and held >= self.tenant_limit:
            raise ServerBusy()
        task = asyncio.current_task()
        assert task is not None
        if task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._forget)
        self.active += 1
        if tenant is not None:
            self.by_tenant[tenant] = held + 1
        try:
            yield
        except asyncio.CancelledError:
            if task in self._cancelled:
                task.uncancel()
                raise ShuttingDown() from None
            raise
        finally:
            self.active -= 1
            if tenant is not None:
                left = self.by_tenant[tenant] - 1
                if left:
                    self.by_tenant[tenant] = left
                else:
                    del self.by_tenant[tenant]

    def _forget(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        self._cancelled.discard(task)

    async def drain(self, grace_s: float) -> None:
        """Stop admitting work, give in-flight work ``grace_s`` to finish, then cancel it
        (each cancelled request answers its user with :class:`ShuttingDown`)."""
        self.closing = True
        pending = self._tasks - {asyncio.current_task()}
        if not pending:
            return
        log.info("waiting up to %.0f s for %d request(s) in flight", grace_s, len(pending))
        _, pending = await asyncio.wait(pending, timeout=grace_s)
        if not pending:
            return
        log.warning("cancelling %d request(s) still in flight", len(pending))
        for task in pending:
            self._cancelled.add(task)
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=5.0)
        if pending:
            log.warning("%d request(s) did not stop in time", len(pending))
