"""The autoscaler: observes the dispatcher and the costs, asks the policy, resizes the pool.

Every decision is logged with its reason and kept (the last ``HISTORY``) for ``/status``.
A decision to stop (the budget is exhausted) drains every instance, so in-flight batches
finish and their agreements end while they can still be paid, and calls ``on_budget_spent``
(the backend then refuses new requests, or the fallback answers them).

A budget raised while the bot runs (:mod:`.budget`) is taken from the budget file: once the
budget is spent and every instance has stopped, ``on_budget_raised(allocation)`` reconnects
to yagna with an allocation of what is left, and the scaler decides again (``resume``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable

from yapapi.services import ServiceState
from yapapi.strategy.base import DEFAULT_DEBIT_NOTE_INTERVAL_SEC

from golem_backend.base import BackendUnavailable, CostSummary, ScalingDecision
from golem_backend.golem.budget import BudgetFile
from golem_backend.golem.costs import BudgetOutlook, CostLedger, PriceCaps, budget_outlook
from golem_backend.golem.dispatcher import Dispatcher
from golem_backend.golem.scaling import Decision, Observation, Scaler, ScalingPolicy
from golem_backend.settings import BackendSettings

logger = logging.getLogger(__name__)

HISTORY = 20
RESUME_RETRY_S = 30.0  # a failed reconnection after a budget raise is tried again after this
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
        *,
        budget_file: BudgetFile | None = None,
        on_budget_raised: Callable[[float], Awaitable[None]] | None = None,
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
        self._budget_file = budget_file
        self._on_budget_raised = on_budget_raised
        self.pending_budget: float | None = None  # raised, not yet covered by an allocation
        self._resume_after = 0.0  # time.monotonic() before which no reconnection is tried
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
                await self.budget_step()
                self.tick()
            except Exception:  # never let the autoscaler die silently
                logger.exception("autoscaler step failed")
            await asyncio.sleep(self.config.interval_s)

    async def budget_step(self) -> None:
        """Take a raised budget from the budget file; resume once the old one is spent."""
        raised = self._budget_file.poll() if self._budget_file is not None else None
        if raised is not None:
            logger.warning(
                "Golem budget raised to %g GLM (was %g GLM)", raised, self.config.budget_glm
            )
            self.pending_budget = raised
        pending, pool = self.pending_budget, self._dispatcher.pool
        if pending is None or not self.budget_spent or self._on_budget_raised is None:
            return
        if pool.workers or time.monotonic() < self._resume_after:
            return  # the last instances are still ending their agreements
        left = pending - self._ledger.total
        if self.outlook_for(pending, instances=0).exhausted:
            self.pending_budget = None
            self.budget_note = (
                f"budget raised to {pending:g} GLM: still used up ({max(0.0, left):.4f} GLM left)"
            )
            logger.warning("%s", self.budget_note)
            return
        try:
            await self._on_budget_raised(left)
        except BackendUnavailable as exc:
            self._resume_after = time.monotonic() + RESUME_RETRY_S
            self.budget_note = f"budget raised to {pending:g} GLM; reconnecting failed: {exc}"
            logger.warning("%s (retrying in %g s)", self.budget_note, RESUME_RETRY_S)
            return
        self.config = dataclasses.replace(self.config, budget_glm=pending)
        self.pending_budget, self.budget_spent, self.budget_note = None, False, ""
        self._scaler.resume()
        reason = f"budget raised to {pending:g} GLM: reconnected with {left:.4f} GLM allocated"
        self._record(Decision("resume", pool.target, reason))

    def outlook(self) -> BudgetOutlook:
        return self.outlook_for(self.config.budget_glm, self._dispatcher.pool.target)

    def outlook_for(self, budget_glm: float, instances: int) -> BudgetOutlook:
        cfg = self.config
        return budget_outlook(
            budget_glm=budget_glm,
            spent_glm=self._ledger.total,
            instances=instances,
            caps=cfg.caps,
            cpu_threads=cfg.cpu_threads,
            period_h=cfg.period_h,
            reserve_h=cfg.reserve_h,
        )

    def tick(self) -> Decision | None:
        """One look: observe, decide, apply, record."""
        d, pool = self._dispatcher, self._dispatcher.pool
        self._ledger.images = d.images_served
        demand = d.take_demand()
        if self.budget_spent:
            return None  # stopped until the budget is raised: budget_note says why
        outlook = self.outlook()
        self.budget_note = outlook.reason
        if self.pending_budget is not None:
            self.budget_note += (
                f"{'; ' if outlook.reason else ''}budget raised to {self.pending_budget:g} GLM: "
                f"applies once the current {self.config.budget_glm:g} GLM are used up"
            )
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
                demand=demand,
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
