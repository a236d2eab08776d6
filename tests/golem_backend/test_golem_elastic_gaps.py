"""Scale to zero and back, resume after a budget stop, and a full Golem queue spilling to the
local fallback: through the exe-unit harness (real ServiceRunner, real provider daemon,
offers priced on a manual clock) and the real local backend."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

import pytest

from golem_backend.base import BackendBusy, BackendUnavailable
from golem_backend.fallback import FallbackBackend
from golem_backend.golem.backend import BUDGET_SPENT, GolemBackend
from golem_backend.golem.budget import BudgetFile, budget_path, main, write_budget
from golem_backend.local.backend import LocalBackend
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan
from tests.golem_backend.harness.helpers import (
    ManualClock,
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)
from tests.golem_backend.harness.market import HarnessMarket, Offer

OFFERS = [Offer(f"provider-{i}", f"0x{i:040x}", 0.1, 0.05, 0.01) for i in range(1, 4)]
PRICED = {
    "golem_max_glm_per_cpu_hour": 0.1,
    "golem_max_glm_per_env_hour": 0.05,
    "golem_max_glm_per_start": 0.01,
}


def actions(backend: GolemBackend) -> list[tuple[str, int]]:
    assert backend._autoscaler is not None
    return [(d.action, d.instances) for d in backend._autoscaler.decisions]


async def advance_until(
    clock: ManualClock, step_s: float, condition: Callable[[], bool], what: str, steps: int = 60
) -> None:
    for _ in range(steps):
        if condition():
            return
        clock.advance(step_s)
        await asyncio.sleep(0.15)
    assert condition(), f"{what} did not happen within {steps} steps of {step_s:g} s"


async def answered_by(backend: FallbackBackend, image: bytes) -> str:
    (outcome,) = await backend.classify([image])
    assert isinstance(outcome, Prediction), outcome
    return (await backend.status()).answered_by


@contextlib.asynccontextmanager
async def with_fallback(golem: GolemBackend, settings, runtime) -> AsyncIterator[FallbackBackend]:  # type: ignore[no-untyped-def]
    backend = FallbackBackend(lambda: golem, LocalBackend(settings), reconnect_s=0.2)
    await backend.start()
    try:
        await wait_until(lambda: backend._golem is not None, 60, "Golem connected")
        yield backend
    finally:
        await backend.stop()
        assert runtime.processes() == [], "provider processes left behind"


async def test_scale_to_zero_and_back_while_the_fallback_answers(
    tmp_path, tiny_model, sample_images
):
    clock, market = ManualClock(), HarnessMarket(OFFERS)
    settings = golem_settings(
        tmp_path,
        golem_fallback="local",
        local_workers=1,
        golem_min_instances=0,
        golem_max_instances=2,
        golem_scale_down_idle_s=120,
        **PRICED,
    )
    install_model(tiny_model.path, settings)
    golem, runtime = make_backend(settings, market=market, clock=clock)
    async with with_fallback(golem, settings, runtime) as backend:
        await asyncio.sleep(0.5)  # the autoscaler has looked a few times
        assert runtime.activities == [] and market.signed == []  # zero: nothing started
        assert (await golem.status()).ready  # scaled to zero by policy is ready

        # the first request is answered locally and starts an instance
        assert await answered_by(backend, sample_images[0]) == "local"
        await wait_until(lambda: ("up", 1) in actions(golem), 10, "scale up from zero")
        await wait_running(golem, 1)
        assert await answered_by(backend, sample_images[1]) == "golem"
        up = golem._autoscaler.decisions[-1]
        assert up.reason == "a request arrived while no instance runs"

        # idle for GOLEM_SCALE_DOWN_IDLE_S: back to zero, the agreement ended
        await advance_until(clock, 30, lambda: ("down", 0) in actions(golem), "scale to zero")
        await wait_until(lambda: not golem._dispatcher.pool.workers, 60, "no instance left")
        assert market.busy == set()  # the agreement ended
        assert await answered_by(backend, sample_images[2]) == "local"

        # and back again
        await wait_until(lambda: actions(golem).count(("up", 1)) == 2, 10, "up again")
        await wait_running(golem, 1)
        assert await answered_by(backend, sample_images[3]) == "golem"
        assert [a for a in actions(golem) if a[0] != "hold"] == [("up", 1), ("down", 0), ("up", 1)]
        assert len(market.signed) == 2


async def test_a_raised_budget_resumes_after_a_budget_stop_without_a_restart(
    tmp_path, tiny_model, sample_images
):
    clock, market = ManualClock(), HarnessMarket(OFFERS)
    settings = golem_settings(
        tmp_path,
        golem_min_instances=1,
        golem_max_instances=1,
        golem_budget_glm=0.2,  # 0.15 GLM per hour at the offers' prices
        golem_budget_period_min=5,
        **PRICED,
    )
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, market=market, clock=clock)
    await backend.start()
    try:
        await wait_running(backend, 1)
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction)
        await advance_until(clock, 300, lambda: ("stop", 0) in actions(backend), "budget stop")
        await wait_until(lambda: not backend._dispatcher.pool.workers, 60, "every instance ends")
        with pytest.raises(BackendUnavailable) as stopped:
            await backend.classify([sample_images[1]])
        assert stopped.value.message == BUDGET_SPENT
        spent = runtime.ledger.total
        assert 0 < spent <= 0.2
        await asyncio.sleep(0.3)
        assert runtime.allocations == []  # nothing happens without a raise

        # the operator raises the budget with the command (same DATA_DIR); no restart
        write_budget(settings.data_dir, 0.5)
        await wait_until(lambda: ("resume", 0) in actions(backend), 30, "resume")
        assert runtime.allocations == [pytest.approx(0.5 - spent)]
        await wait_until(lambda: ("up", 1) in actions(backend), 30, "an instance again")
        await wait_running(backend, 1)
        (outcome,) = await backend.classify([sample_images[1]])
        assert isinstance(outcome, Prediction)
        status = await backend.status()
        assert status.costs is not None and status.costs.budget_glm == 0.5
        assert "budget 0.5 GLM" in status.detail
        resume = next(d for d in status.scaling if d.action == "resume")
        assert resume.reason.startswith("budget raised to 0.5 GLM: reconnected with")
        assert len(market.signed) == 2
    finally:
        await backend.stop()
    assert runtime.processes() == []


def test_the_budget_command_and_file_are_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    watcher = BudgetFile(tmp_path, since=0.0)
    assert watcher.poll() is None  # no file yet
    assert main(["2.5"]) == 0
    assert "set to 2.5 GLM" in capsys.readouterr().out
    assert watcher.poll() == 2.5 and watcher.poll() is None  # once per write
    for bad in ("0", "-1", "1001", "nan"):
        assert main([bad]) == 1
        assert "the budget must be more than 0" in capsys.readouterr().err
    budget_path(tmp_path).write_text('{"budget_glm": "lots"} ' + "x" * 10_000)
    os.utime(budget_path(tmp_path), (1e10, 1e10))  # a later write
    assert watcher.poll() is None and watcher.error is not None
    assert "is not a budget" in watcher.error and "lots" not in watcher.error
    assert BudgetFile(tmp_path).poll() is None  # written before it started: not taken


async def test_a_full_golem_queue_spills_to_the_local_fallback(tmp_path, tiny_model, sample_images):
    settings = golem_settings(
        tmp_path,
        golem_fallback="local",
        local_workers=1,
        golem_batch_size=1,
        golem_queue_size=2,
        golem_script_timeout_s=4.0,
        request_timeout_s=60,
    )
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("hang", times=2)  # the instance's two batch slots hang until their timeout
    golem, runtime = make_backend(settings, faults)
    async with with_fallback(golem, settings, runtime) as backend:
        await wait_running(golem, 1)
        first = [asyncio.create_task(backend.classify([sample_images[i]])) for i in range(2)]
        await wait_until(lambda: len(faults.fired) == 2, 30, "both slots busy")
        queued = [asyncio.create_task(backend.classify([sample_images[i]])) for i in (2, 3)]
        await wait_until(lambda: golem._dispatcher.queue_depth == 2, 10, "a full Golem queue")
        with pytest.raises(BackendBusy):  # Golem alone would refuse the next request
            await golem.classify([sample_images[4]])
        (outcome,) = await backend.classify([sample_images[4]])  # the fallback takes it
        assert isinstance(outcome, Prediction)
        assert (await backend.status()).answered_by == "local" and backend.spilled == 1
        for task in queued:
            (outcome,) = await asyncio.wait_for(task, 60)
            assert isinstance(outcome, Prediction)
        for task in first:  # a batch that hangs alone is the image's fault: "too complex"
            (outcome,) = await asyncio.wait_for(task, 60)
        assert "1 request(s) went to the local backend" in (await backend.status()).detail


async def test_a_budget_raised_while_running_applies_when_the_allocation_is_used_up(
    tmp_path, tiny_model, sample_images
):
    clock, market = ManualClock(), HarnessMarket(OFFERS)
    settings = golem_settings(
        tmp_path,
        golem_min_instances=1,
        golem_max_instances=1,
        golem_budget_glm=0.2,
        golem_budget_period_min=5,
        **PRICED,
    )
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, market=market, clock=clock)
    await backend.start()
    try:
        await wait_running(backend, 1)
        write_budget(settings.data_dir, 0.5)
        await wait_until(lambda: backend._autoscaler.pending_budget == 0.5, 10, "the raise")
        status = await backend.status()
        assert "budget raised to 0.5 GLM: applies once the current 0.2 GLM are used up" in (
            status.detail
        )
        assert runtime.allocations == [] and status.costs.budget_glm == 0.2
        # the first allocation runs out: stop, then at once a new connection and instance
        await advance_until(clock, 300, lambda: ("stop", 0) in actions(backend), "budget stop")
        await wait_until(lambda: ("resume", 0) in actions(backend), 60, "resume")
        await wait_running(backend, 1)
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction)
        assert len(runtime.allocations) == 1 and 0.3 <= runtime.allocations[0] < 0.5
    finally:
        await backend.stop()
    assert runtime.processes() == []
