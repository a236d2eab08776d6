"""The scaling policy and the cost figures, as pure functions of observations and a clock."""

from __future__ import annotations

import dataclasses

import pytest

from golem_backend.golem.costs import BudgetOutlook, CostLedger, PriceCaps, budget_outlook
from golem_backend.golem.scaling import Observation, Scaler, ScalingPolicy

POLICY = ScalingPolicy(
    min_instances=1, max_instances=3, up_wait_s=2.0, up_depth=10, up_after_s=30, down_idle_s=60
)
AFFORDABLE = BudgetOutlook(5.0, 0.1, can_add=True, exhausted=False, reason="")
CAPS = PriceCaps(glm_per_cpu_hour=0.1, glm_per_env_hour=0.05, glm_per_start=0.01)


def seen(
    now: float,
    instances: int,
    wait: float = 0.0,
    depth: int = 0,
    in_flight: int = 0,
    budget: BudgetOutlook = AFFORDABLE,
) -> Observation:
    return Observation(now, wait, depth, in_flight, instances, budget)


def test_load_must_last_up_after_s_before_scaling_up():
    scaler = Scaler(POLICY)
    assert scaler.decide(seen(0, 1, wait=5)) is None
    assert scaler.decide(seen(29, 1, wait=5)) is None
    decision = scaler.decide(seen(30, 1, wait=5))
    assert decision is not None and (decision.action, decision.target) == ("up", 2)
    assert "queue wait 5.0 s (target 2 s)" in decision.reason and "for 30 s" in decision.reason


def test_no_further_step_while_an_added_instance_is_still_starting():
    scaler = Scaler(POLICY)
    scaler.decide(seen(0, 1, depth=12))
    assert scaler.decide(seen(30, 1, depth=12)) is not None  # up to 2
    for now in (60, 120, 300):  # the provider takes minutes to deploy
        obs = dataclasses.replace(seen(now, 2, depth=12), starting=1)
        assert scaler.decide(obs) is None
    assert scaler.decide(seen(320, 2, depth=12)) is None  # it runs: a new period starts
    decision = scaler.decide(seen(330, 2, depth=12))
    assert decision is not None and (decision.action, decision.target) == ("up", 3)


def test_a_dip_in_load_restarts_the_period():
    scaler = Scaler(POLICY)
    scaler.decide(seen(0, 1, depth=12))
    scaler.decide(seen(20, 1, depth=1, in_flight=1))  # the queue emptied for a moment
    assert scaler.decide(seen(40, 1, depth=12)) is None
    decision = scaler.decide(seen(70, 1, depth=12))
    assert decision is not None and decision.action == "up" and "12 waiting" in decision.reason


def test_each_further_step_needs_its_own_period_and_stops_at_max():
    scaler = Scaler(POLICY)
    actions, reasons = [], []
    for now in range(0, 200, 5):
        instances = 1 + sum(1 for a in actions if a[0] == "up")
        decision = scaler.decide(seen(now, instances, wait=9))
        if decision is not None:
            actions.append((decision.action, decision.target, now))
            reasons.append(decision.reason)
    assert actions[:3] == [("up", 2, 30), ("up", 3, 60), ("hold", 3, 90)]
    assert reasons[2].endswith("at GOLEM_MAX_INSTANCES")


def test_scale_down_after_idle_period_never_below_min():
    scaler = Scaler(POLICY)
    assert scaler.decide(seen(0, 3)) is None
    assert scaler.decide(seen(59, 3, in_flight=0)) is None
    down = scaler.decide(seen(60, 3))
    assert down is not None and (down.action, down.target) == ("down", 2)
    assert down.reason == "no request for 60 s"
    assert scaler.decide(seen(90, 2)) is None  # the idle period restarted after the step
    down = scaler.decide(seen(120, 2))
    assert down is not None and down.target == 1
    assert scaler.decide(seen(1000, 1)) is None  # at the minimum


def test_busy_instances_are_not_idle():
    scaler = Scaler(POLICY)
    for now in range(0, 300, 10):
        assert scaler.decide(seen(now, 2, in_flight=1)) is None


def test_budget_that_cannot_pay_another_instance_holds_and_says_why():
    poor = BudgetOutlook(0.05, 0.15, can_add=False, exhausted=False, reason="budget: too little")
    scaler = Scaler(POLICY)
    scaler.decide(seen(0, 1, wait=9, budget=poor))
    decision = scaler.decide(seen(30, 1, wait=9, budget=poor))
    assert decision is not None and decision.action == "hold" and decision.target == 1
    assert decision.reason.endswith("budget: too little")


def test_exhausted_budget_stops_once():
    spent = BudgetOutlook(0.0, 0.15, can_add=False, exhausted=True, reason="budget exhausted")
    scaler = Scaler(POLICY)
    decision = scaler.decide(seen(0, 2, wait=9, budget=spent))
    assert decision is not None and (decision.action, decision.target) == ("stop", 0)
    assert scaler.decide(seen(100, 0, wait=9, budget=spent)) is None
    assert scaler.decide(seen(200, 0, wait=9)) is None  # no restart without a new backend


def test_below_min_scales_up_at_once():
    decision = Scaler(POLICY).decide(seen(0, 0))
    assert decision is not None and (decision.action, decision.target) == ("up", 1)


def test_budget_outlook_at_the_caps():
    # one instance costs 0.15 GLM/h at the caps; a period of 1 h
    args = {"caps": CAPS, "cpu_threads": 1, "period_h": 1.0, "reserve_h": 0.01}
    ok = budget_outlook(budget_glm=1.0, spent_glm=0.6, instances=1, **args)
    assert ok.can_add and not ok.exhausted and ok.remaining_glm == pytest.approx(0.4)
    # 2 instances for 1 h + one start = 0.31 GLM: 0.3 left is not enough
    short = budget_outlook(budget_glm=1.0, spent_glm=0.7, instances=1, **args)
    assert not short.can_add and not short.exhausted
    assert "cannot pay for 2 instance(s) for 60 min" in short.reason and "0.3100" in short.reason
    # what is left pays for less than the reserve (1 instance for 0.01 h = 0.0015 GLM)
    gone = budget_outlook(budget_glm=1.0, spent_glm=0.999, instances=1, **args)
    assert gone.exhausted and not gone.can_add and gone.reason.startswith("budget exhausted")


def test_ledger_counts_cumulative_notes_once_and_derives_rates():
    clock = [0.0]
    ledger = CostLedger(lambda: clock[0])
    ledger.accepted("a1", "provider-a", "0.010")
    ledger.accepted("a1", "provider-a", "0.030")  # cumulative: replaces 0.010
    ledger.accepted("a1", "provider-a", "0.020")  # a late, older note: ignored
    ledger.accepted("a2", "provider-b", 0.02)
    ledger.accepted("a3", "provider-a", 0.01)  # the same provider again, a new agreement
    ledger.images = 200
    clock[0] = 1800.0
    summary = ledger.summary(budget_glm=1.0, burn_per_hour=0.3)
    assert summary.spent_glm == pytest.approx(0.06)
    assert dict(summary.per_instance) == pytest.approx({"provider-a": 0.04, "provider-b": 0.02})
    assert summary.glm_per_1000_images == pytest.approx(0.3)
    assert summary.glm_per_hour == pytest.approx(0.12)
    assert summary.hours_left == pytest.approx(0.94 / 0.3)
    idle = CostLedger(lambda: 10.0).summary(budget_glm=1.0, burn_per_hour=0.0)
    assert idle.glm_per_1000_images is None and idle.hours_left is None


ZERO = dataclasses.replace(POLICY, min_instances=0)


def test_scale_to_zero_then_a_request_or_demand_elsewhere_starts_one_at_once():
    scaler = Scaler(ZERO)
    assert scaler.decide(seen(0, 1)) is None  # idle from now
    down = scaler.decide(seen(60, 1))
    assert down is not None and (down.action, down.target) == ("down", 0)
    assert scaler.decide(seen(600, 0)) is None  # zero, nobody asks: nothing
    up = scaler.decide(dataclasses.replace(seen(601, 0), demand=True))  # the fallback answered
    assert up is not None and (up.action, up.target) == ("up", 1)
    assert up.reason == "a request arrived while no instance runs"
    scaler = Scaler(ZERO)
    queued = scaler.decide(seen(0, 0, depth=1))  # Golem alone: a request waits
    assert queued is not None and (queued.action, queued.target) == ("up", 1)
    poor = BudgetOutlook(0.001, 0.15, can_add=False, exhausted=False, reason="budget: too little")
    held = Scaler(ZERO).decide(seen(0, 0, depth=1, budget=poor))
    assert held is not None and held.action == "hold" and "budget: too little" in held.reason
    assert Scaler(POLICY).decide(dataclasses.replace(seen(0, 1), demand=True)) is None


def test_after_a_budget_stop_nothing_until_resume():
    spent = BudgetOutlook(0.0, 0.15, can_add=False, exhausted=True, reason="budget exhausted")
    scaler = Scaler(POLICY)
    stop = scaler.decide(seen(0, 1, budget=spent))
    assert stop is not None and (stop.action, stop.target) == ("stop", 0)
    assert scaler.decide(seen(10, 0, depth=50)) is None  # stopped, however loaded
    scaler.resume()
    again = scaler.decide(seen(20, 0, depth=50))
    assert again is not None and (again.action, again.target) == ("up", 1)  # GOLEM_MIN_INSTANCES
