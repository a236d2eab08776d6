"""The autoscaler: observes the dispatcher and the costs, asks the policy, resizes the pool.

Every decision is logged with its reason and kept (the last ``HISTORY``) for ``/status``.
A decision to stop (the budget is exhausted) drains every instance, so in-flight batches
finish and their agreements end while they can still be paid, and calls ``on_budget_spent``
(the backend then refuses new requests, or the fallback answers them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections import deque
from collections.abc import Callable

from yapapi.services import ServiceState
from yapapi.strategy.base import DEFAULT_DEBIT_NOTE_INTERVAL_SEC

from golem_backend.base import CostSummary, ScalingDecision
from golem_backend.golem.costs import BudgetOutlook, CostLedger, PriceCaps, budget_outlook
from golem_backend.golem.dispatcher import Dispatcher
from golem_backend.golem.scaling import Decision, Observation, Scaler, ScalingPolicy
from golem_backend.settings import BackendSettings

logger = logging.getLogger(__name__)

HISTORY = 20
_NUMBERS = re.compile(r"\d+(\.\d+)?")


@dataclasses.dataclass(frozen=True, slots=True)
class ElasticConfig:
    policy: ScalingPolicy
    budget_glm: float
    caps: PriceCaps
    cpu_threads: int  # CPU threads an instance may bill (GOLEM_MIN_CPU_THREADS)
    period_h: float  # an added instance must be affordable this long
    reserve_h: float  # a clean stop plus the usage not yet in accepted debit notes
    interval_s: float = 1.0  # how often the autoscaler looks


def elastic_config(settings: BackendSettings, caps: PriceCaps) -> ElasticConfig:
    s = settings
    return ElasticConfig(
        policy=ScalingPolicy(
            min_instances=s.min_instances,
            max_instances=s.max_instances,
            up_wait_s=s.golem_scale_up_wait_s,
            up_depth=s.golem_scale_up_depth,
            up_after_s=s.golem_scale_up_after_s,
            down_idle_s=s.golem_scale_down_idle_s,
        ),
        budget_glm=s.golem_budget_glm,
        caps=caps,
        cpu_threads=s.golem_min_cpu_threads,
        period_h=s.golem_budget_period_min / 60,
        # accepted debit notes lag the usage by up to one interval: keep that in reserve too
        reserve_h=(s.golem_stop_timeout_s + DEFAULT_DEBIT_NOTE_INTERVAL_SEC) / 3600,
    )


class Autoscaler:
    """See the module docstring; ``clock`` is the time the policy and the ledger use."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        ledger: CostLedger,
        config: ElasticConfig,
        clock: Callable[[], float],
        on_budget_spent: Callable[[], None],
    ) -> None:
        self._dispatcher = dispatcher
        self._ledger = ledger
        self.config = config
        self._clock = clock
        self._on_budget_spent = on_budget_spent
        self._scaler = Scaler(config.policy)
        self._started_at = clock()
        self._last_hold = ""
        self.decisions: deque[ScalingDecision] = deque(maxlen=HISTORY)
        self.budget_note = ""  # why no instance can be added, when that is so
        self.budget_spent = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # never let the autoscaler die silently
                logger.exception("autoscaler step failed")
            await asyncio.sleep(self.config.interval_s)

    def outlook(self) -> BudgetOutlook:
        cfg = self.config
        return budget_outlook(
            budget_glm=cfg.budget_glm,
            spent_glm=self._ledger.total,
            instances=self._dispatcher.pool.target,
            caps=cfg.caps,
            cpu_threads=cfg.cpu_threads,
            period_h=cfg.period_h,
            reserve_h=cfg.reserve_h,
        )

    def tick(self) -> Decision | None:
        """One look: observe, decide, apply, record."""
        d, pool = self._dispatcher, self._dispatcher.pool
        self._ledger.images = d.images_served
        if self.budget_spent:
            return None  # stopped for good: budget_note keeps saying why
        outlook = self.outlook()
        self.budget_note = outlook.reason
        decision = self._scaler.decide(
            Observation(
                now=self._clock(),
                queue_wait_s=d.oldest_wait_s(),
                queue_depth=d.queue_depth,
                in_flight=d.in_flight,
                instances=pool.target,
                budget=outlook,
                starting=sum(
                    1
                    for w in pool.workers
                    if not (w.retiring or w.draining) and w.service.state != ServiceState.running
                ),
            )
        )
        if decision is None:
            return None
        if decision.action == "hold":
            gist = _NUMBERS.sub("#", decision.reason)  # the same hold with new figures
            if gist == self._last_hold:
                return decision  # said already
            self._last_hold = gist
        else:
            self._last_hold = ""
            pool.resize(decision.target)
        self._record(decision)
        if decision.action == "stop":
            self.budget_spent = True
            self._on_budget_spent()
        return decision

    def _record(self, decision: Decision) -> None:
        at = self._clock() - self._started_at
        self.decisions.append(
            ScalingDecision(at, decision.action, decision.target, decision.reason)
        )
        worrying = decision.action == "stop" or "budget" in decision.reason
        log = logger.warning if worrying else logger.info
        log("scaling %s to %d instance(s): %s", decision.action, decision.target, decision.reason)

    def costs(self, running: int) -> CostSummary:
        """The cost figures; the projection is the live agreements' agreed prices, or
        ``running`` instances at the caps when no price is known."""
        agreed = self._ledger.agreed_hourly
        at_caps = running * self.config.caps.instance_hourly(self.config.cpu_threads)
        return self._ledger.summary(self.config.budget_glm, at_caps if agreed is None else agreed)
