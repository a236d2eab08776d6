"""Runs ClassifierService instances through yapapi's own ServiceRunner, without a network.

What is real: :class:`yapapi.services.Cluster` (``spawn_instances``, ``stop_instance``,
``terminate``), :class:`yapapi.services.ServiceRunner` (the state machine pending ->
starting -> running -> stopping -> terminated, handler dispatch, error handling, health
checks), ``_Engine.process_batches`` (sending scripts, ``before``/``after`` hooks,
throwing ``BatchError`` into handlers), :class:`yapapi.WorkContext` and
:class:`yapapi.script.Script`.

What is replaced: the market and payments (``LocalJob``, ``LocalEngine.start_worker``:
without a :class:`~.market.HarnessMarket` every instance gets an agreement with a made-up
provider at once; with one, yapapi's strategy code picks the offer, an instance waits while
no offer is acceptable, and each agreement accrues its offer's prices on ``clock`` into the
runtime's :class:`~golem_backend.golem.costs.CostLedger`, as accepted debit notes would),
gftp (``LocalStorageProvider``) and the provider's exe-unit (``LocalActivity``).

Private yapapi 0.13.1 surface used here (pinned, hence ``yapapi==0.13.1``):
``Cluster`` attributes ``service_runner``, ``_service_class``, ``_network``, ``_task_ids``,
``_stack`` (set instead of calling ``Cluster.__init__``, which posts a market demand); the
``Job`` protocol ``ServiceRunner`` calls (``id``, ``engine``, ``payload``, ``emit``,
``find_offers``, ``agreements_pool.release_agreement/terminate_all``, ``set_exc_info``,
``expiration_time``); the engine methods it calls (``add_job``, ``finalize_job``,
``start_worker``, ``process_batches``, ``accept_payments_for_agreement``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from yapapi import WorkContext
from yapapi.engine import _Engine
from yapapi.services import Cluster, ServiceRunner
from yapapi.strategy import BaseMarketStrategy

from golem_backend.golem.costs import CostLedger
from golem_backend.golem.service import ClassifierService

from .exeunit import FaultPlan, LocalActivity
from .market import HarnessMarket, Offer
from .storage import LocalStorageProvider

Clock = Callable[[], float]


class _AgreementsPool:
    async def release_agreement(self, agreement_id: str, allow_reuse: bool = True) -> None:
        pass

    async def terminate_all(self, reason: dict[str, Any]) -> None:
        pass


class LocalJob:
    """What ServiceRunner needs of ``yapapi.engine.Job``; the market is not simulated."""

    _ids = itertools.count(1)

    def __init__(self, engine: LocalEngine, expiration: datetime) -> None:
        self.id = f"local-job-{next(self._ids)}"
        self.engine = engine
        self.expiration_time = expiration
        self.payload = None
        self.agreements_pool = _AgreementsPool()
        self.finished = asyncio.Event()
        self._exc_info: Any = None

    def emit(self, event_class: type, **kwargs: Any) -> Any:
        event = event_class(job=self, **kwargs)
        self.engine.events.append(event)
        return event

    async def find_offers(self) -> None:
        await asyncio.Event().wait()

    def set_exc_info(self, exc_info: Any) -> None:
        self._exc_info = exc_info


def _agreement(number: int, offer: Offer | None = None) -> SimpleNamespace:
    """Just what ``WorkContext.provider_name``/``provider_id`` read."""
    name = offer.name if offer else f"local-provider-{number}"
    node_id = offer.node_id if offer else f"0xlocal{number:04x}"
    return SimpleNamespace(
        id=f"local-agreement-{number}",
        details=SimpleNamespace(
            provider_node_info=SimpleNamespace(name=name),
            raw_details=SimpleNamespace(offer=SimpleNamespace(provider_id=node_id)),
        ),
    )


@dataclasses.dataclass
class _Billing:
    offer: Offer
    name: str
    signed_at: float


class LocalEngine:
    """The engine methods ServiceRunner calls; each new worker gets a fresh LocalActivity."""

    process_batches = _Engine.process_batches  # yapapi's own batch loop, unchanged

    def __init__(
        self,
        root: Path,
        faults: FaultPlan,
        *,
        market: HarnessMarket | None = None,
        strategy: BaseMarketStrategy | None = None,
        ledger: CostLedger | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.root = root
        self.faults = faults
        self.storage = LocalStorageProvider(root / "storage")
        self.activities: list[LocalActivity] = []
        self.events: deque[Any] = deque(maxlen=2000)
        self._numbers = itertools.count(1)
        self.market, self.strategy = market, strategy
        self.clock = clock
        self.ledger = ledger or CostLedger(clock)
        self.billing: dict[str, _Billing] = {}  # live agreements with a price

    def pay(self) -> None:
        """Accept what every live agreement owes now (its offer's prices on ``clock``)."""
        for agreement_id, bill in list(self.billing.items()):
            due = bill.offer.due(self.clock() - bill.signed_at)
            self.ledger.accepted(agreement_id, bill.name, due)

    def _end_agreement(self, agreement_id: str) -> None:
        bill = self.billing.get(agreement_id)
        if bill is not None:
            self.pay()  # the final invoice
            self.ledger.ended(agreement_id)
            del self.billing[agreement_id]
            assert self.market is not None
            self.market.release(bill.offer)

    def add_job(self, job: LocalJob) -> None:
        pass

    def finalize_job(self, job: LocalJob) -> None:
        job.finished.set()

    async def accept_payments_for_agreement(self, job_id: str, agreement_id: str) -> None:
        pass

    async def start_worker(
        self,
        job: LocalJob,
        run_worker: Callable[[WorkContext], Awaitable[bool]],
        on_agreement_ready: Callable[[Any], None] | None = None,
        existing_agreement_id: str | None = None,
        existing_activity_id: str | None = None,
    ) -> asyncio.Task[bool] | None:
        offer = None
        if self.market is not None:
            assert self.strategy is not None, "a market needs a strategy"
            offer = await self.market.sign(self.strategy)
            if offer is None:
                return None  # no acceptable offer: ServiceRunner asks again in a second
        number = next(self._numbers)
        agreement = _agreement(number, offer)
        if offer is not None:
            self.billing[agreement.id] = _Billing(offer, offer.name, self.clock())
            self.ledger.priced(agreement.id, offer.due(3600) - offer.glm_per_start)
            self.pay()  # the start price is due at once
        if on_agreement_ready is not None:
            on_agreement_ready(agreement)
        activity = LocalActivity(number, self.root / f"a{number}", self.faults)
        self.activities.append(activity)
        ctx = WorkContext(activity, agreement, self.storage, emitter=job.emit)  # type: ignore[arg-type]

        async def worker() -> bool:
            try:
                return await run_worker(ctx)
            finally:
                self._end_agreement(agreement.id)
                await activity.destroy()

        return asyncio.create_task(worker())


class LocalCluster(Cluster):
    """A real yapapi Cluster whose ServiceRunner runs on the LocalEngine."""

    def __init__(
        self,
        engine: LocalEngine,
        service_class: type[ClassifierService],
        expiration: datetime,
        health_check_interval: float,
    ) -> None:
        # Not calling Cluster.__init__: it builds a market Job. Same attributes, local job.
        job = LocalJob(engine, expiration)
        self.service_runner = ServiceRunner(job, health_check_interval=health_check_interval)  # type: ignore[arg-type]
        self._service_class = service_class
        self._network = None
        self._task_ids = itertools.count(1)
        self._stack = AsyncExitStack()


class LocalRuntime:
    """Drop-in for ``GolemRuntime``: clusters run on this machine (see the module docstring).

    ``root`` is a short directory under /tmp (Unix socket paths are limited to 107 bytes).
    """

    def __init__(
        self,
        faults: FaultPlan | None = None,
        *,
        health_check_interval: float = 0.5,
        start_error: Exception | None = None,
        market: HarnessMarket | None = None,
        strategy: BaseMarketStrategy | None = None,
        clock: Clock = time.monotonic,
        hang_close: bool = False,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gh", dir="/tmp"))
        self.faults = faults or FaultPlan()
        self.ledger = CostLedger(clock)
        self.engine = LocalEngine(
            self.root, self.faults, market=market, strategy=strategy, ledger=self.ledger
        )
        self.engine.clock = clock
        self.clusters: list[LocalCluster] = []
        self._health_check_interval = health_check_interval
        self._start_error = start_error
        self._hang_close = hang_close  # yagna hangs at shutdown (after ending the agreements)
        self._payer: asyncio.Task[None] | None = None
        self.connected = False
        self.allocations: list[float] = []  # the budget of every reopened connection

    @property
    def activities(self) -> list[LocalActivity]:
        return self.engine.activities

    async def start(self) -> None:
        if self._start_error is not None:
            raise self._start_error
        self.connected = True
        if self.engine.market is not None:
            self._payer = asyncio.create_task(self._pay_loop())

    async def _pay_loop(self) -> None:
        while True:
            self.engine.pay()
            await asyncio.sleep(0.05)

    async def open_cluster(
        self, num_instances: int, instance_params: list[dict[str, Any]], expiration: datetime
    ) -> LocalCluster:
        cluster = LocalCluster(
            self.engine, ClassifierService, expiration, self._health_check_interval
        )
        await cluster.__aenter__()
        cluster.spawn_instances(num_instances=num_instances, instance_params=instance_params)
        self.clusters.append(cluster)
        return cluster

    async def reopen(self, budget_glm: float, timeout_s: float) -> None:
        """A new yagna connection after a budget stop: the old clusters are already ended."""
        self.allocations.append(budget_glm)
        self.connected = True

    async def close(self, timeout_s: float = 30.0) -> None:
        self.connected = False
        if self._payer is not None:
            self._payer.cancel()
        try:
            for cluster in self.clusters:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cluster.terminate(), min(30.0, 0.8 * timeout_s))
        finally:  # also when the caller's own bound cancels this close
            self.engine.pay()
            self.cleanup()
        if self._hang_close:
            await asyncio.Event().wait()  # like yapapi waiting for a yagna that never answers

    def cleanup(self) -> None:
        """Kill every activity's processes and remove the files (what close() ends with)."""
        for activity in self.activities:
            activity.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def processes(self) -> list[int]:
        """Every live process any activity started (should be empty after ``close()``)."""
        return [pid for activity in self.activities for pid in activity.processes()]
