"""Elastic instances and the budget, through the exe-unit harness: yapapi's real
ServiceRunner, the real provider daemon, offers from the market stub priced on a manual
clock. Scaling periods pass by moving the clock, never by sleeping them out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from golem_backend.base import BackendUnavailable, Outcome
from golem_backend.golem.backend import BUDGET_SPENT, GolemBackend
from provider.results import Prediction
from tests.golem_backend.harness.helpers import (
    ManualClock,
    golem_settings,
    install_model,
    make_backend,
    running_instances,
    wait_running,
    wait_until,
)
from tests.golem_backend.harness.market import HarnessMarket, Offer

OFFERS = [Offer(f"provider-{i}", f"0x{i:040x}", 0.1, 0.05, 0.01) for i in range(1, 5)]
PRICED = {
    "golem_max_glm_per_cpu_hour": 0.1,
    "golem_max_glm_per_env_hour": 0.05,
    "golem_max_glm_per_start": 0.01,
}


class Load:
    """Keeps ``outstanding`` one-image requests in the backend until stopped."""

    def __init__(self, backend: GolemBackend, images: list[bytes], outstanding: int) -> None:
        self.backend, self.images, self.outstanding = backend, images, outstanding
        self.results: list[list[Outcome] | BaseException] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _one(self, i: int) -> None:
        try:
            self.results.append(await self.backend.classify([self.images[i % len(self.images)]]))
        except Exception as exc:
            self.results.append(exc)

    async def _run(self) -> None:
        running: set[asyncio.Task[None]] = set()
        i = 0
        while not self._stop.is_set():
            while len(running) < self.outstanding:
                task = asyncio.create_task(self._one(i))
                running.add(task)
                task.add_done_callback(running.discard)
                i += 1
            await asyncio.sleep(0.02)
        await asyncio.gather(*running)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def advance_until(
    clock: ManualClock, step_s: float, condition: Callable[[], bool], what: str, steps: int = 40
) -> None:
    """Move the clock ``step_s`` at a time (letting the autoscaler look) until ``condition``."""
    for _ in range(steps):
        if condition():
            return
        clock.advance(step_s)
        await asyncio.sleep(0.15)
    assert condition(), f"{what} did not happen within {steps} steps of {step_s:g} s"


def actions(backend: GolemBackend) -> list[tuple[str, int]]:
    assert backend._autoscaler is not None
    return [(d.action, d.instances) for d in backend._autoscaler.decisions]


@contextlib.asynccontextmanager
async def elastic_backend(
    tmp_path, tiny_model, market: HarnessMarket, clock: ManualClock, **values: object
) -> AsyncIterator[tuple[GolemBackend, object]]:
    settings = golem_settings(
        tmp_path,
        golem_batch_size=2,
        golem_scale_up_wait_s=600,  # only the depth triggers: real waits vary on a busy box
        golem_scale_up_depth=4,
        golem_scale_up_after_s=30,
        golem_scale_down_idle_s=120,
        golem_queue_size=200,
        request_timeout_s=120,
        **{**PRICED, **values},
    )
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, market=market, clock=clock)
    await backend.start()
    try:
        yield backend, runtime
    finally:
        await backend.stop()
        assert runtime.processes() == [], "provider processes left behind"


async def test_a_load_ramp_scales_one_to_three_and_back_to_one(
    tmp_path, tiny_model, sample_images, caplog
):
    caplog.set_level(logging.INFO, logger="golem_backend.golem.elastic")
    clock, market = ManualClock(), HarnessMarket(OFFERS)
    async with elastic_backend(
        tmp_path, tiny_model, market, clock, golem_min_instances=1, golem_max_instances=3
    ) as (backend, runtime):
        await wait_running(backend, 1)
        load = Load(backend, sample_images, outstanding=30)
        load.start()
        await advance_until(clock, 10, lambda: ("up", 2) in actions(backend), "scale up to 2")
        # the next step waits until the added instance runs (deploy + daemon start)
        await advance_until(
            clock, 10, lambda: ("up", 3) in actions(backend), "scale up to 3", steps=400
        )
        await wait_running(backend, 3, within_s=120)
        await load.stop()

        await advance_until(clock, 30, lambda: ("down", 1) in actions(backend), "scale down")
        await wait_until(lambda: len(backend._dispatcher.pool.workers) == 1, 60, "one instance")
        assert await running_instances(backend) == 1
        clock.advance(3600)  # a long quiet hour: never below GOLEM_MIN_INSTANCES
        await asyncio.sleep(0.3)

        moves = [a for a in actions(backend) if a[0] != "hold"]
        assert moves == [("up", 2), ("up", 3), ("down", 2), ("down", 1)]
        assert all(isinstance(r, list) and isinstance(r[0], Prediction) for r in load.results)
        assert len(load.results) >= 30

        status = await backend.status()
        reasons = [d.reason for d in status.scaling if d.action != "hold"]
        assert "waiting (target 4)" in reasons[0] and reasons[-1].startswith("no request for")
        assert "scaling up to 2 instance(s): queue wait" in caplog.text
        assert "scaling down to 1 instance(s): no request for" in caplog.text
        # costs: three agreements at the offers' prices on the manual clock
        assert len(market.signed) == 3 and status.costs is not None
        assert status.costs.spent_glm == pytest.approx(runtime.ledger.total)
        assert {name for name, _ in status.costs.per_instance} == set(market.signed)
        assert status.costs.spent_glm > 3 * 0.01  # three starts plus the hours
        assert status.costs.glm_per_1000_images == pytest.approx(
            1000 * status.costs.spent_glm / status.costs.images
        )
        # one live agreement, at 0.1 GLM per CPU-hour + 0.05 GLM per hour
        assert status.costs.projected_glm_per_hour == pytest.approx(0.15)
        running = [i for i in status.instances if i.state == "running"]
        assert running[0].glm_accepted is not None and running[0].glm_accepted > 0.01


async def test_a_budget_that_runs_out_stops_adding_then_stops_cleanly(
    tmp_path, tiny_model, sample_images
):
    clock, market = ManualClock(), HarnessMarket(OFFERS)
    async with elastic_backend(
        tmp_path,
        tiny_model,
        market,
        clock,
        golem_min_instances=1,
        golem_max_instances=4,
        golem_budget_glm=0.4,  # 2 instances at 0.15 GLM/h for a period of 1 h: 0.31
    ) as (backend, runtime):
        await wait_running(backend, 1)
        load = Load(backend, sample_images, outstanding=30)
        load.start()
        await advance_until(clock, 10, lambda: ("up", 2) in actions(backend), "scale up to 2")
        await advance_until(
            clock, 10, lambda: ("hold", 2) in actions(backend), "a hold for the budget", steps=400
        )
        status = await backend.status()
        assert "cannot pay for 3 instance(s) for 60 min" in status.scaling[-1].reason
        assert "cannot pay for 3 instance(s)" in status.detail

        # hours pass in big steps, the last minutes in steps shorter than the reserve the
        # autoscaler keeps (2 instances for 90 s = 0.0075 GLM), as a clock ticking in seconds
        left = lambda: 0.4 - runtime.ledger.total  # noqa: E731
        await advance_until(clock, 600, lambda: left() < 0.06, "most of the budget spent")
        await advance_until(
            clock, 20, lambda: ("stop", 0) in actions(backend), "budget stop", steps=80
        )
        await wait_until(lambda: not backend._dispatcher.pool.workers, 60, "every instance ends")
        await load.stop()

        assert len(market.signed) == 2, "an instance was started the budget could not pay for"
        answered = [r for r in load.results if isinstance(r, list)]
        refused = [r for r in load.results if isinstance(r, BaseException)]
        assert answered and all(isinstance(r[0], Prediction) for r in answered)
        assert all(isinstance(r, BackendUnavailable) and r.message == BUDGET_SPENT for r in refused)
        with pytest.raises(BackendUnavailable, match="budget is used up"):
            await backend.classify([sample_images[0]])
        status = await backend.status()
        assert status.costs is not None and status.costs.spent_glm <= 0.4
        assert status.scaling[-1].action == "stop" and "budget exhausted" in status.detail
        assert not backend.serving
