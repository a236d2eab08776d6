"""The local fallback and the bounded stop, through the exe-unit harness (real ServiceRunner,
real provider daemon) and the real local backend (real worker processes)."""

from __future__ import annotations

import asyncio
import time

from golem_backend.base import BackendUnavailable
from golem_backend.factory import create_backend
from golem_backend.fallback import FallbackBackend
from golem_backend.golem.backend import GolemBackend
from golem_backend.local.backend import LocalBackend
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import (
    ManualClock,
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)
from tests.golem_backend.harness.market import HarnessMarket, Offer

FIRST = Offer("provider-first", "0x" + "1" * 40, 0.05, 0.02, 0.001)
SECOND = Offer("provider-second", "0x" + "2" * 40, 0.05, 0.02, 0.001)


async def classify_one(backend: FallbackBackend, image: bytes) -> str:
    """Classify one image; returns the engine that answered (a prediction is required)."""
    (outcome,) = await backend.classify([image])
    assert isinstance(outcome, Prediction), outcome
    return (await backend.status()).answered_by


async def test_local_answers_whenever_no_golem_instance_runs(tmp_path, tiny_model, sample_images):
    settings = golem_settings(
        tmp_path, golem_fallback="local", local_workers=1, request_timeout_s=60
    )
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    market = HarnessMarket([])  # no provider offers anything yet
    golem, runtime = make_backend(settings, faults, market=market)
    backend = FallbackBackend(lambda: golem, LocalBackend(settings), reconnect_s=0.2)
    await backend.start()
    try:
        # not started yet: Golem is connected but no instance runs
        await wait_until(lambda: backend._golem is not None, 30, "Golem connected")
        assert await classify_one(backend, sample_images[0]) == "local"
        status = await backend.status()
        assert status.ready and "Answering now: the local backend" in status.detail

        market.offers.append(FIRST)  # a provider appears
        await wait_running(golem, 1)
        assert await classify_one(backend, sample_images[1]) == "golem"
        assert "Answering now: Golem" in (await backend.status()).detail

        # every provider is lost, with a request on the instance: it is answered locally
        faults.add("hang")
        waiting = asyncio.create_task(backend.classify([sample_images[2]]))
        await wait_until(lambda: faults.fired, 30, "the request to reach the instance")
        market.offers.clear()
        for activity in runtime.activities:
            activity.kill()
        (outcome,) = await asyncio.wait_for(waiting, 30)
        assert isinstance(outcome, Prediction)
        assert (await backend.status()).answered_by == "local"
        assert not golem.serving
        assert await classify_one(backend, sample_images[3]) == "local"

        market.offers.append(SECOND)  # an instance returns
        await wait_until(lambda: golem.serving, 60, "a Golem instance again")
        assert await classify_one(backend, sample_images[4]) == "golem"
        assert market.signed == ["provider-first", "provider-second"]
    finally:
        await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"


async def test_factory_builds_the_fallback_only_when_asked(tmp_path):
    with_fallback = golem_settings(tmp_path, golem_fallback="local")
    assert isinstance(create_backend(with_fallback), FallbackBackend)
    assert not isinstance(create_backend(golem_settings(tmp_path)), FallbackBackend)


async def stop_within(backend, bound_s: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    await asyncio.wait_for(backend.stop(), bound_s + 30)  # the test's own safety net
    elapsed = time.monotonic() - started
    assert elapsed < bound_s, f"stop() took {elapsed:.1f} s, the bound is {bound_s:g} s"
    return elapsed


async def test_stop_is_bounded_when_a_provider_hangs(tmp_path, tiny_model, sample_images):
    settings = golem_settings(tmp_path, golem_stop_timeout_s=4.0)
    install_model(tiny_model.path, settings)
    faults = FaultPlan(hang_teardown=True)  # ending the activity never returns
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    await wait_running(backend, 1)
    (outcome,) = await backend.classify([sample_images[0]])
    assert isinstance(outcome, Prediction)
    await stop_within(backend, 4.0 + 3.0)
    assert runtime.processes() == [], "provider processes left behind"


async def test_stop_is_bounded_when_yagna_hangs(tmp_path, tiny_model, sample_images):
    settings = golem_settings(tmp_path, golem_stop_timeout_s=4.0)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, hang_close=True)
    await backend.start()
    await wait_running(backend, 1)
    await stop_within(backend, 4.0 + 3.0)
    assert runtime.processes() == []


async def test_golem_is_retried_until_it_connects_and_a_retrain_reaches_it(
    tmp_path, tiny_model, sample_images, other_tiny_dataset
):
    """yagna is down at first (start fails): the local backend answers and /status says why;
    the next attempt connects and Golem answers. A retrain (done locally) is then served by
    the Golem instances too."""
    settings = golem_settings(tmp_path, golem_fallback="local", local_workers=1)
    install_model(tiny_model.path, settings)
    down = BackendUnavailable("yagna is not reachable at http://127.0.0.1:1 (ClientError)")
    built: list[LocalRuntime] = []

    def connect() -> GolemBackend:
        golem, runtime = make_backend(settings)
        if not built:
            runtime._start_error = down  # the first attempt: yagna is down
        built.append(runtime)
        return golem

    backend = FallbackBackend(connect, LocalBackend(settings), reconnect_s=3.0)
    await backend.start()
    try:

        async def says_yagna_is_down() -> bool:
            return "yagna is not reachable" in (await backend.status()).detail

        await wait_until(says_yagna_is_down, 3, "/status to say why Golem is not used")
        assert await classify_one(backend, sample_images[0]) == "local"
        assert "(retrying every 3 s)" in (await backend.status()).detail
        await wait_until(lambda: backend._golem is not None and backend._golem.serving, 60, "Golem")
        assert len(built) == 2
        assert await classify_one(backend, sample_images[1]) == "golem"

        report = await backend.retrain(other_tiny_dataset)
        assert report.extra["instances_updated"] == 1
        (outcome,) = await backend.classify([sample_images[2]])
        assert isinstance(outcome, Prediction) and outcome.model_id == report.model_id
        assert (await backend.status()).answered_by == "golem"
        assert set(report.labels) == {"cat", "dog", "monkey"}
    finally:
        await backend.stop()
    assert all(runtime.processes() == [] for runtime in built)


async def test_a_spent_budget_hands_requests_to_the_local_backend(
    tmp_path, tiny_model, sample_images
):
    clock = ManualClock()
    settings = golem_settings(
        tmp_path,
        golem_fallback="local",
        local_workers=1,
        golem_budget_glm=0.02,
        golem_max_glm_per_cpu_hour=0.1,
        golem_max_glm_per_env_hour=0.05,
        golem_max_glm_per_start=0.01,
    )
    install_model(tiny_model.path, settings)
    golem, runtime = make_backend(settings, market=HarnessMarket([FIRST, SECOND]), clock=clock)
    backend = FallbackBackend(lambda: golem, LocalBackend(settings), reconnect_s=0.2)
    await backend.start()
    try:
        await wait_until(lambda: golem.serving, 60, "a Golem instance")
        assert await classify_one(backend, sample_images[0]) == "golem"
        # FIRST costs 0.001 + 0.07 GLM/h: after 800 s 0.0166 GLM is spent, and the 0.0034
        # left is less than the reserve (one instance for 90 s at the caps: 0.00375)
        clock.advance(800)
        await wait_until(lambda: not golem.serving, 30, "the budget stop")
        assert await classify_one(backend, sample_images[1]) == "local"
        status = await backend.status()
        assert "budget exhausted" in status.detail and "Answering now: the local" in status.detail
        assert status.costs is not None and status.costs.spent_glm <= 0.02
        await wait_until(lambda: not golem._dispatcher.pool.workers, 30, "the instance ends")
    finally:
        await backend.stop()
    assert runtime.processes() == []
