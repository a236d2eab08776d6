"""The elastic instance count: a small policy from observed load and budget to a decision.

No yapapi, no asyncio and no clock of its own: :meth:`Scaler.decide` takes one
:class:`Observation` (the time is in it) and returns a :class:`Decision` with the reason an
operator reads, or None when nothing is worth saying. Rules, in order:

* budget exhausted -> ``stop`` (target 0): the running agreements end while they can be paid;
  nothing more until :meth:`Scaler.resume` (the budget was raised);
* no instance (``min_instances`` 0, scaled to zero) and a request waits, or was answered by
  the local fallback meanwhile (``demand``) -> ``up`` to one at once, budget permitting;
* load (the oldest request has waited ``up_wait_s``, or ``up_depth`` requests wait)
  for ``up_after_s`` -> ``up`` by one, unless at ``max_instances`` or the budget cannot
  pay for one more instance (then ``hold``, saying why); while an instance is still
  starting, the period restarts (a provider may take minutes to deploy the image);
* no request waiting or in flight for ``down_idle_s`` -> ``down`` by one, never below
  ``min_instances``.

After a change the timers restart, so each further step needs its own sustained period.
"""

from __future__ import annotations

import dataclasses

from golem_backend.golem.costs import BudgetOutlook


@dataclasses.dataclass(frozen=True, slots=True)
class ScalingPolicy:
    min_instances: int
    max_instances: int
    up_wait_s: float  # the oldest waiting request has waited at least this long
    up_depth: int  # or at least this many requests wait
    up_after_s: float  # ... continuously for this long
    down_idle_s: float  # nothing waiting or in flight for this long


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    now: float  # seconds, any monotonic clock
    queue_wait_s: float  # how long the oldest waiting request has waited (0: none waits)
    queue_depth: int  # requests waiting
    in_flight: int  # batches on instances
    instances: int  # the current target
    budget: BudgetOutlook
    starting: int = 0  # of them, not running yet (waiting for a provider, deploying)
    demand: bool = False  # a request was answered elsewhere (the fallback) since the last look


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "up" | "down" | "hold" | "stop"
    target: int
    reason: str


class Scaler:
    """Remembers since when the load has been high or the queue idle; see the module doc."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self._loaded_since: float | None = None
        self._idle_since: float | None = None
        self._stopped = False

    def decide(self, obs: Observation) -> Decision | None:
        p = self.policy
        if obs.budget.exhausted:
            if self._stopped:
                return None
            self._stopped = True
            return Decision("stop", 0, f"{obs.budget.reason}: stopping every instance")
        if self._stopped:  # until resume(): the budget was raised
            return None
        loaded = obs.queue_wait_s >= p.up_wait_s or obs.queue_depth >= p.up_depth
        idle = obs.queue_depth == 0 and obs.in_flight == 0 and not obs.demand
        if not loaded:
            self._loaded_since = None
        elif self._loaded_since is None:
            self._loaded_since = obs.now
        if not idle:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = obs.now
        if obs.instances < p.min_instances:
            return self._change("up", p.min_instances, obs, "below GOLEM_MIN_INSTANCES")
        if obs.instances == 0 and (obs.queue_depth or obs.demand) and p.max_instances > 0:
            if not obs.budget.can_add:
                return Decision("hold", 0, f"a request arrived; {obs.budget.reason}")
            return self._change("up", 1, obs, "a request arrived while no instance runs")
        if obs.starting and self._loaded_since is not None:
            # an instance added is still starting: judge the load once it serves
            self._loaded_since = obs.now
            return None
        if self._loaded_since is not None and obs.now - self._loaded_since >= p.up_after_s:
            load = (
                f"queue wait {obs.queue_wait_s:.1f} s (target {p.up_wait_s:g} s), "
                f"{obs.queue_depth} waiting (target {p.up_depth}) for "
                f"{obs.now - self._loaded_since:.0f} s"
            )
            if obs.instances >= p.max_instances:
                return Decision("hold", obs.instances, f"{load}; at GOLEM_MAX_INSTANCES")
            if not obs.budget.can_add:
                return Decision("hold", obs.instances, f"{load}; {obs.budget.reason}")
            return self._change("up", obs.instances + 1, obs, load)
        idle_for = obs.now - self._idle_since if self._idle_since is not None else -1.0
        if idle_for >= p.down_idle_s and obs.instances > p.min_instances:
            reason = f"no request for {idle_for:.0f} s"
            return self._change("down", obs.instances - 1, obs, reason)
        return None

    def resume(self) -> None:
        """The budget was raised after a stop: decide again from the next observation."""
        self._stopped = False
        self._loaded_since = self._idle_since = None

    def _change(self, action: str, target: int, obs: Observation, reason: str) -> Decision:
        self._loaded_since = obs.now if self._loaded_since is not None else None
        self._idle_since = obs.now if self._idle_since is not None else None
        return Decision(action, target, reason)
