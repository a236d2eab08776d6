"""Golem with the local backend as its safety net (``GOLEM_FALLBACK=local``).

``FallbackBackend`` owns two backends: the embedded local one (started first: the bot can
answer as soon as ``start()`` returns) and a Golem one, connected in the background and
reconnected every ``GOLEM_RECONNECT_S`` while it cannot start (yagna down, no payment
account, ...). Each request goes to Golem when a Golem instance is running and the budget
is not spent, else to the local backend; a request already waiting on Golem moves to the
local backend as soon as Golem stops serving (every provider lost, budget spent, every
instance retired by the version handshake), so none is lost. A request Golem refuses
because its queue is full (``BackendBusy``) spills to the local backend too. A request the
local backend answers while Golem is connected but serves nothing tells Golem so
(``note_demand``): scaled to zero (``GOLEM_MIN_INSTANCES=0``), it then starts an instance.
``status()`` is Golem's (instances, costs, scaling), plus which engine answered
the last request and what the local backend is doing.

Training happens on this machine either way, so it is the local backend's; a new default
model is then handed to the running Golem instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from golem_backend.base import (
    Backend,
    BackendBusy,
    BackendStatus,
    BackendTimeout,
    BackendUnavailable,
    ModelRef,
    Outcome,
    ProgressCallback,
    TrainingSet,
    TrainReport,
)
from golem_backend.throughput import Capacity

if TYPE_CHECKING:  # the bot imports this module: yapapi only where Golem is used
    from golem_backend.golem.backend import GolemBackend

logger = logging.getLogger(__name__)

#: How often a request waiting on Golem checks that Golem still serves.
WATCH_INTERVAL_S = 0.2


class FallbackBackend(Backend):
    """See the module docstring. ``golem_factory`` builds a new, not started Golem backend."""

    kind = "golem"

    def __init__(
        self,
        golem_factory: Callable[[], GolemBackend],
        local: Backend,
        *,
        reconnect_s: float,
    ) -> None:
        self._golem_factory = golem_factory
        self._local = local
        self._reconnect_s = reconnect_s
        self._golem: GolemBackend | None = None
        self._connector: asyncio.Task[None] | None = None
        self._golem_error = "Golem is connecting"
        self._answered_by = ""
        self._stopped = False
        self.spilled = 0  # requests Golem's full queue sent to the local backend

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._stopped:
            raise BackendUnavailable("The backend was stopped; create a new backend.")
        if self._connector is not None:
            return
        await self._local.start()
        self._connector = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        """Start Golem; on failure try again every ``reconnect_s`` until it starts."""
        while not self._stopped:
            golem = self._golem_factory()
            try:
                await golem.start()
            except Exception as exc:  # BackendUnavailable says what to fix; anything else too
                reason = exc.message if isinstance(exc, BackendUnavailable) else repr(exc)
                self._golem_error = reason
                logger.warning(
                    "Golem is unavailable (%s); the local backend answers, retrying in %g s",
                    reason,
                    self._reconnect_s,
                    exc_info=not isinstance(exc, BackendUnavailable),
                )
                await golem.stop()
                await asyncio.sleep(self._reconnect_s)
                continue
            self._golem, self._golem_error = golem, ""
            logger.info("Golem connected; it answers once an instance runs")
            return

    async def stop(self) -> None:
        self._stopped = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        golem = self._golem
        results = await asyncio.gather(
            self._local.stop(), *([golem.stop()] if golem else []), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("a backend failed to stop cleanly: %r", result)

    # --- serving ----------------------------------------------------------------------

    def _golem_serving(self) -> GolemBackend | None:
        golem = self._golem
        return golem if golem is not None and golem.serving else None

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        if self._stopped:
            raise BackendUnavailable("The classifier is shutting down.")
        golem = self._golem_serving()
        if golem is not None:
            outcomes = await self._on_golem(golem, images, top_k, model, tenant)
            if outcomes is not None:
                self._answered_by = "golem"
                return outcomes
        elif self._golem is not None:
            self._golem.note_demand()
        outcomes = await self._local.classify(images, top_k, model=model, tenant=tenant)
        self._answered_by = "local"
        return outcomes

    async def _on_golem(
        self,
        golem: GolemBackend,
        images: list[bytes],
        top_k: int,
        model: ModelRef | None,
        tenant: str | None,
    ) -> list[Outcome] | None:
        """Golem's answer, or None when Golem stopped serving before it answered."""
        task = asyncio.create_task(golem.classify(images, top_k, model=model, tenant=tenant))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
                if not task.done() and not golem.serving:
                    logger.info("Golem stopped serving; the local backend takes the request")
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    return None
            return task.result()
        except BackendBusy:
            self.spilled += 1
            return None  # Golem's queue is full: the local backend takes the request
        except (BackendUnavailable, BackendTimeout):
            if golem.serving or self._stopped:
                raise
            return None  # every instance was lost or the budget ran out meanwhile
        finally:
            if not task.done():  # our caller was cancelled
                task.cancel()

    # --- training ---------------------------------------------------------------------

    async def retrain(
        self,
        dataset: Path | None = None,
        progress: ProgressCallback | None = None,
        *,
        training_set: TrainingSet | None = None,
        tenant: str | None = None,
    ) -> TrainReport:
        report = await self._local.retrain(
            dataset, progress, training_set=training_set, tenant=tenant
        )
        golem = self._golem_serving()
        if training_set is None and golem is not None:
            try:
                updated = await golem.adopt_model()
            except BackendUnavailable as exc:
                logger.warning("Golem could not take the new model: %s", exc.message)
            else:
                extra = {**report.extra, "instances_updated": updated}
                report = dataclasses.replace(report, extra=extra)
        return report

    # --- status -----------------------------------------------------------------------

    def capacity(self) -> Capacity:
        """The capacity of the engine that takes new requests now (Golem while it serves,
        else the local backend), with the images in flight at both."""
        local = self._local.capacity()
        golem = self._golem
        if golem is None:
            return local
        remote = golem.capacity()
        serving = remote if golem.serving else local
        return dataclasses.replace(serving, in_flight=local.in_flight + remote.in_flight)

    async def status(self) -> BackendStatus:
        local = await self._local.status()
        golem = self._golem
        if golem is None:
            return dataclasses.replace(
                local,
                kind=self.kind,
                answered_by=self._answered_by,
                detail=(
                    f"Golem: {self._golem_error} (retrying every {self._reconnect_s:g} s); "
                    f"the local backend answers meanwhile. Local: {local.detail}"
                ),
            )
        status = await golem.status()
        engine = "Golem" if golem.serving else "the local backend (no Golem instance runs)"
        spill = (
            f" {self.spilled} request(s) went to the local backend: Golem's queue was full."
            if self.spilled
            else ""
        )
        return dataclasses.replace(
            status,
            ready=status.ready or local.ready,
            queue_depth=status.queue_depth + local.queue_depth,
            requests_served=status.requests_served + local.requests_served,
            errors=status.errors + local.errors,
            answered_by=self._answered_by,
            detail=f"{status.detail}. Answering now: {engine}." + spill,
        )
