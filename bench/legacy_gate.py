"""The previous admission, for measuring it in the same run as the door: a fixed number of
requests at once (``MAX_CONCURRENT_REQUESTS``, 16), one server holding at most half of
them, everything past that refused at once ("busy"), a request holding its slot until
its reply was sent. Kept only here, behind the door's interface (``enter``, ``tracked``,
``drain``, ``closing``), so that the bot runs it unchanged: ``bot.admission =
LegacyGate()`` before the bot starts, or ``python -m bench.legacy_gate``, which is
``python -m bot`` with this gate instead of the door."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

from bot.core.admission import Turn
from bot.core.errors import Busy, ShuttingDown, UserError

LIMIT = 16  # MAX_CONCURRENT_REQUESTS's default


class LegacyBusy(Busy):
    """The whole bot's slots are taken (the old message)."""


class LegacyServerBusy(Busy):
    """One server holds its half of the slots (the old message)."""

    def __init__(self) -> None:
        UserError.__init__(
            self,
            "This server is sending me a lot of images at once; the rest of my capacity is "
            "kept for other servers. Please try again in a few seconds.",
        )


REFUSALS = (LegacyBusy().message, LegacyServerBusy().message)


class LegacyGate:
    """``WorkGate`` as it was, with the door's signature."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.tenant_limit = max(1, limit // 2)
        self.closing = False
        self.active = 0
        self.by_tenant: Counter[Hashable] = Counter()
        self.admitted: Counter[str] = Counter()
        self.refused: Counter[tuple[str, str]] = Counter()
        self._tasks: set[asyncio.Task[object]] = set()
        self._cancelled: set[asyncio.Task[object]] = set()

    @asynccontextmanager
    async def enter(
        self,
        *,
        server_id: int | None,
        member_id: int,
        path: str,
        images: int,
        on_queued: Callable[[Turn], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Turn]:
        if self.closing:
            raise ShuttingDown()
        tenant: Hashable = server_id if server_id is not None else ("user", member_id)
        if self.active >= self.limit:
            self.refused[(path, "busy")] += 1
            raise LegacyBusy()
        if self.by_tenant[tenant] >= self.tenant_limit:
            self.refused[(path, "server_busy")] += 1
            raise LegacyServerBusy()
        # The old slot was held until the request's reply had been sent: here until its
        # task ends (done() gives nothing back).
        turn = Turn(server_id, member_id, path, images, 0.0, 0.0, waited_s=0.0, _holding=True)
        self.admitted[path] += 1
        self.active += 1
        self.by_tenant[tenant] += 1
        task = asyncio.current_task()
        assert task is not None
        task.add_done_callback(lambda _: self._release(tenant))
        async with self.tracked():
            yield turn

    def _release(self, tenant: Hashable) -> None:
        self.active -= 1
        self.by_tenant[tenant] -= 1
        if not self.by_tenant[tenant]:
            del self.by_tenant[tenant]

    @asynccontextmanager
    async def tracked(self) -> AsyncIterator[None]:
        if self.closing:
            raise ShuttingDown()
        task = asyncio.current_task()
        assert task is not None
        if task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            yield
        except asyncio.CancelledError:
            if task in self._cancelled:
                self._cancelled.discard(task)
                task.uncancel()
                raise ShuttingDown() from None
            raise

    async def drain(self, grace_s: float) -> None:
        self.closing = True
        pending = self._tasks - {asyncio.current_task()}
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=grace_s)
        for task in pending:
            self._cancelled.add(task)
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)


def main() -> int:
    """``python -m bot`` with the old gate in place of the door."""
    import bot.core.client as client
    from bot.__main__ import main as bot_main

    client.Admission = lambda capacity, max_wait_s: LegacyGate()  # type: ignore[assignment,misc]
    return bot_main([])


if __name__ == "__main__":
    sys.exit(main())
