"""Fair queue for retrains, shared by both backends.

* at most one retrain per tenant (server) at a time: a second one is refused at once with
  :class:`BackendBusy`, so one server cannot queue up work in front of the others;
* at most ``concurrency`` retrains run at once over all tenants; the others wait in
  arrival order (``asyncio.Semaphore`` wakes waiters first come, first served), which with
  one slot per tenant is a round robin over the tenants waiting;
* every retrain has a deadline, its wait included: past it the retrain is cancelled (the
  training process is stopped by its own clean-up) and :class:`BackendTimeout` raised.

Retrains run in their own child processes, so none of this blocks classification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from golem_backend.base import BackendBusy, BackendTimeout

T = TypeVar("T")

#: The tenant of retrains that name none: the default model (operators only).
DEFAULT_TENANT = "default"


class RetrainQueue:
    """Runs retrain coroutines fairly; see the module docstring."""

    def __init__(self, concurrency: int, timeout_s: float) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout_s = timeout_s
        self._tenants: set[str] = set()  # tenants with a retrain waiting or running
        self._running = 0

    @property
    def running(self) -> int:
        """Retrains running now (holding a slot)."""
        return self._running

    @property
    def waiting(self) -> int:
        """Retrains accepted but waiting for a slot."""
        return len(self._tenants) - self._running

    def busy(self, tenant: str | None) -> bool:
        return (tenant or DEFAULT_TENANT) in self._tenants

    async def run(self, tenant: str | None, retrain: Callable[[], Awaitable[T]]) -> T:
        """Wait for a slot, run ``retrain()``, all within the deadline.

        Raises :class:`BackendBusy` when ``tenant`` already has a retrain waiting or running,
        :class:`BackendTimeout` past the deadline; otherwise what ``retrain()`` raises.
        """
        key = tenant or DEFAULT_TENANT
        if key in self._tenants:
            what = "the default model" if key == DEFAULT_TENANT else "this server"
            raise BackendBusy(f"A retrain for {what} is already running; wait for it to finish.")
        self._tenants.add(key)
        deadline = asyncio.timeout(self._timeout_s)
        try:
            async with deadline, self._slots:
                self._running += 1
                try:
                    return await retrain()
                finally:
                    self._running -= 1
        except TimeoutError:
            if not deadline.expired():
                raise
            raise BackendTimeout(
                f"The retrain did not finish within {self._timeout_s:g} s "
                "(RETRAIN_TIMEOUT_S); the current model is still in use."
            ) from None
        finally:
            self._tenants.discard(key)
