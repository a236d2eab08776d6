"""What Golem costs: GLM accepted per instance, rates, and what the budget still pays for.

Pure bookkeeping (no yapapi): the runtime feeds :meth:`CostLedger.accepted` from yapapi's
``DebitNoteAccepted`` / ``InvoiceAccepted`` events (the harness from its own price list),
the autoscaler copies the dispatcher's image count in, and :func:`budget_outlook` turns
the figures and the price caps into what the scaling policy and ``/status`` need.
Amounts are GLM; times are seconds of a monotonic clock unless a name says hours.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal

from golem_backend.base import CostSummary


@dataclasses.dataclass(frozen=True, slots=True)
class PriceCaps:
    """The most this bot pays a provider: per CPU-hour, per hour of environment, per start."""

    glm_per_cpu_hour: float
    glm_per_env_hour: float
    glm_per_start: float

    def instance_hourly(self, cpu_threads: int) -> float:
        """The most one instance of ``cpu_threads`` busy threads can cost per hour."""
        return self.glm_per_env_hour + self.glm_per_cpu_hour * cpu_threads


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetOutlook:
    """What the remaining budget pays for, at the caps (the worst case)."""

    remaining_glm: float
    hourly_per_instance: float  # at the caps
    can_add: bool  # the budget pays for one more instance for a whole budget period
    exhausted: bool  # only enough left to end the running agreements cleanly
    reason: str  # why not (empty when can_add)


def budget_outlook(
    *,
    budget_glm: float,
    spent_glm: float,
    instances: int,
    caps: PriceCaps,
    cpu_threads: int,
    period_h: float,
    reserve_h: float,
) -> BudgetOutlook:
    """Whether one more instance is affordable, and whether the budget is used up.

    Adding is allowed when what is left pays, at the caps, for one start plus
    ``instances + 1`` instances during ``period_h`` hours. The budget is *exhausted* when
    what is left pays for no more than the running instances during ``reserve_h`` hours
    (the time a clean stop takes), so the bot stops while it can still pay what is due.
    """
    remaining = max(0.0, budget_glm - spent_glm)
    hourly = caps.instance_hourly(cpu_threads)
    needed = caps.glm_per_start + (instances + 1) * hourly * period_h
    reserve = max(1, instances) * hourly * reserve_h
    exhausted = remaining <= reserve if hourly > 0 else remaining <= 0
    can_add = remaining >= needed and not exhausted
    reason = ""
    if exhausted:
        reason = f"budget exhausted: {remaining:.4f} of {budget_glm:g} GLM left"
    elif not can_add:
        reason = (
            f"budget: {remaining:.4f} GLM left cannot pay for {instances + 1} instance(s) for "
            f"{period_h * 60:g} min at the price caps (needs {needed:.4f} GLM)"
        )
    return BudgetOutlook(remaining, hourly, can_add, exhausted, reason)


class CostLedger:
    """GLM accepted per agreement (and the instance it paid for), images served, since start.

    ``accepted`` takes the *cumulative* amount of one agreement (yapapi's debit notes and
    invoices state the total due so far), so a repeated or reordered note never double
    counts.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.started_at = clock()
        self._by_agreement: dict[str, Decimal] = {}
        self._instance_of: dict[str, str] = {}
        self._hourly: dict[str, float] = {}  # live agreements: agreed GLM per hour
        self.images = 0  # images classified on Golem (the dispatcher's count)

    def accepted(self, agreement_id: str, instance: str, amount: Decimal | float | str) -> None:
        total = Decimal(str(amount))
        if total < 0 or not total.is_finite():
            return
        self._instance_of[agreement_id] = instance
        self._by_agreement[agreement_id] = max(self._by_agreement.get(agreement_id, total), total)

    def priced(self, agreement_id: str, glm_per_hour: float) -> None:
        """An agreement was signed at this hourly price (every billed thread busy)."""
        self._hourly[agreement_id] = glm_per_hour

    def ended(self, agreement_id: str) -> None:
        self._hourly.pop(agreement_id, None)

    @property
    def agreed_hourly(self) -> float | None:
        """GLM per hour the live agreements cost at their agreed prices; None: none known."""
        return sum(self._hourly.values()) if self._hourly else None

    @property
    def total(self) -> float:
        return float(sum(self._by_agreement.values(), Decimal(0)))

    def per_instance(self) -> dict[str, float]:
        """GLM accepted per instance name (a provider that served twice adds up)."""
        out: dict[str, float] = {}
        for agreement, amount in self._by_agreement.items():
            name = self._instance_of[agreement]
            out[name] = out.get(name, 0.0) + float(amount)
        return out

    def summary(self, budget_glm: float, burn_per_hour: float) -> CostSummary:
        """Figures for ``/status`` and the metrics; ``burn_per_hour``: the projected rate
        (the live agreements' prices when known, see :meth:`priced`)."""
        total = self.total
        hours = max(self._clock() - self.started_at, 1e-9) / 3600
        remaining = max(0.0, budget_glm - total)
        return CostSummary(
            budget_glm=budget_glm,
            spent_glm=total,
            per_instance=tuple(sorted(self.per_instance().items())),
            images=self.images,
            glm_per_1000_images=1000 * total / self.images if self.images else None,
            glm_per_hour=total / hours,
            projected_glm_per_hour=burn_per_hour,
            hours_left=remaining / burn_per_hour if burn_per_hour > 0 else None,
        )
