"""Start/stop coordination shared by the backends.

``start()`` does its work in a task that ``stop()`` can cancel: a ``stop()`` during
``start()`` cancels that work, waits until it has ended, then releases everything, and the
interrupted ``start()`` raises :class:`BackendUnavailable`. The release runs once; every
``stop()`` call (and a failed ``start()``) waits until it has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from golem_backend.base import BackendUnavailable

T = TypeVar("T")
Cleanup = Callable[[], Awaitable[None]]


class Lifecycle:
    """``state``: new | starting | ready | stopped."""

    def __init__(self) -> None:
        self.state = "new"
        self._starting: asyncio.Task[Any] | None = None
        self._stopping: asyncio.Task[None] | None = None

    async def start(self, work: Coroutine[Any, Any, T], cleanup: Cleanup, stopped: str) -> T:
        """Run ``work``; on any failure run ``cleanup`` (via :meth:`stop`) and re-raise.

        When :meth:`stop` interrupts ``work``, raises ``BackendUnavailable(stopped)``.
        The caller sets ``state = "ready"`` (without awaiting) once this returns.
        """
        self.state = "starting"
        task = asyncio.create_task(work)
        self._starting = task
        try:
            result = await task
            if self.state == "stopped":  # stop() ran just as the work finished
                raise BackendUnavailable(stopped)
            return result
        except BaseException as exc:
            interrupted = self.state == "stopped"  # stop() was called during the work
            await self.stop(cleanup)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller of start() was cancelled: not ours to translate
            if isinstance(exc, BackendUnavailable) or not interrupted:
                raise
            raise BackendUnavailable(stopped) from exc
        finally:
            self._starting = None

    async def stop(self, cleanup: Cleanup) -> None:
        """Stop once: cancel an unfinished start, then ``cleanup()``; later calls just wait."""
        if self._stopping is None:
            self.state = "stopped"
            self._stopping = asyncio.create_task(self._stop(cleanup))
        await asyncio.shield(self._stopping)

    async def _stop(self, cleanup: Cleanup) -> None:
        starting = self._starting
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        await cleanup()
