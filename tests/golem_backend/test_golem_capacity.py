"""Golem's capacity() through the exe-unit harness (yapapi's real ServiceRunner, the real
provider daemon): per-instance rates measured from answered batches, instances that start
or stop changing the estimate, and the fallback reporting whichever engine serves."""

from __future__ import annotations

import asyncio
import time

import pytest

from golem_backend import Capacity, Prediction
from golem_backend.fallback import FallbackBackend
from golem_backend.golem.backend import GolemBackend
from golem_backend.golem.dispatcher import PRIOR_IMAGES_PER_S
from golem_backend.local.backend import PRIOR_IMAGES_PER_S as LOCAL_PRIOR
from golem_backend.local.backend import LocalBackend
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


async def keep_busy(backend: GolemBackend, images: list[bytes], total: int, outstanding: int):
    """``total`` one-image requests, ``outstanding`` at a time; the wall-time rate."""
    gate = asyncio.Semaphore(outstanding)

    async def one(i: int) -> None:
        async with gate:
            (outcome,) = await backend.classify([images[i % len(images)]])
            assert isinstance(outcome, Prediction)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - started)


def instance_ids(backend: GolemBackend) -> list[str]:
    assert backend._dispatcher is not None
    return [w.service.id for w in backend._dispatcher.pool.serving()]


async def test_instances_that_start_and_stop_change_the_estimate(
    tmp_path, tiny_model, sample_images
):
    settings = golem_settings(
        tmp_path,
        golem_min_instances=1,
        golem_max_instances=2,
        golem_batch_size=4,
        golem_queue_size=64,
    )
    install_model(tiny_model.path, settings)
    # the clock never moves: the autoscaler sees no period pass and leaves the pool alone
    backend, runtime = make_backend(settings, clock=ManualClock())
    assert backend.capacity() == Capacity(0.0, 0, 0, 0, measured=False)  # not started
    await backend.start()
    try:
        await wait_running(backend, 1)
        # the prior, two batches of 4 in flight per instance
        assert backend.capacity() == Capacity(PRIOR_IMAGES_PER_S, 0, 8, 1, measured=False)

        observed = await keep_busy(backend, sample_images, total=60, outstanding=8)
        one = backend.capacity()
        assert one.measured and one.units == 1 and one.in_flight == 0
        assert 0.4 < one.images_per_s / observed < 2.5, (one.images_per_s, observed)
        [first] = instance_ids(backend)
        meter = backend._dispatcher.meter  # type: ignore[union-attr]

        backend._dispatcher.pool.resize(2)  # type: ignore[union-attr]
        await wait_running(backend, 2, within_s=120)
        two = backend.capacity()
        # the newcomer counts at the mean of the measured instances until it has worked
        assert two.units == 2 and two.slots == 16
        assert two.images_per_s == pytest.approx(2 * one.images_per_s)

        await keep_busy(backend, sample_images, total=80, outstanding=16)
        [second] = [i for i in instance_ids(backend) if i != first]
        rates = {i: meter.images_per_s([i]) for i in (first, second)}
        assert all(measured for _, measured in rates.values()), rates
        assert backend.capacity().images_per_s == pytest.approx(rates[first][0] + rates[second][0])

        backend._dispatcher.pool.resize(1)  # type: ignore[union-attr]  # one drains and stops
        await wait_until(lambda: backend.capacity().units == 1, 60, "one instance serving")
        [left] = instance_ids(backend)
        assert backend.capacity().images_per_s == pytest.approx(rates[left][0])
        await wait_until(
            lambda: len(backend._dispatcher.pool.workers) == 1,  # type: ignore[union-attr]
            60,
            "the drained instance gone",
        )
        backend.capacity()
        gone = second if left == first else first
        assert meter.rate_of(gone) == pytest.approx(rates[left][0])  # forgotten: a newcomer's
    finally:
        await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"


async def test_the_fallback_reports_whichever_engine_serves(tmp_path, tiny_model, sample_images):
    settings = golem_settings(
        tmp_path, golem_fallback="local", local_workers=1, request_timeout_s=60
    )
    install_model(tiny_model.path, settings)
    market = HarnessMarket([])  # no provider offers anything yet
    golem, runtime = make_backend(settings, FaultPlan(), market=market)
    backend = FallbackBackend(lambda: golem, LocalBackend(settings), reconnect_s=0.2)
    await backend.start()
    try:
        await wait_until(lambda: backend._golem is not None, 30, "Golem connected")
        local = backend.capacity()
        assert (local.units, local.images_per_s) == (1, LOCAL_PRIOR)  # the local worker

        market.offers.append(Offer("provider-a", "0x" + "a" * 40, 0.05, 0.02, 0.001))
        await wait_running(golem, 1)
        remote = backend.capacity()
        assert (remote.units, remote.images_per_s) == (1, PRIOR_IMAGES_PER_S)  # the instance
        assert remote.slots == 2 * settings.golem_batch_size

        market.offers.clear()
        for activity in runtime.activities:
            activity.kill()  # every provider lost: the local backend serves again
        await wait_until(lambda: not golem.serving, 30, "Golem to stop serving")
        assert backend.capacity().units == 1
        assert backend.capacity().images_per_s == LOCAL_PRIOR
    finally:
        await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"


async def test_scaled_to_zero_the_door_lets_the_request_that_starts_an_instance_through(
    tmp_path, tiny_model, sample_images
):
    """GOLEM_MIN_INSTANCES=0 without the local fallback: with no instance, the request
    itself is what starts one. Golem reports one instance at its prior rate, so the door
    in front of it (the bot's admission) admits the request instead of refusing it for
    lack of capacity; the instance starts, answers, and its rate then counts."""
    from bot.core.admission import Admission
    from tests.golem_backend.test_golem_elastic_gaps import OFFERS, PRICED, actions

    settings = golem_settings(
        tmp_path, golem_min_instances=0, golem_max_instances=1, golem_batch_size=4, **PRICED
    )
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, market=HarnessMarket(OFFERS), clock=ManualClock())
    await backend.start()
    try:
        await asyncio.sleep(0.3)  # the autoscaler has looked: nothing is started at zero
        assert runtime.activities == [] and not backend.serving
        idle = backend.capacity()
        assert idle == Capacity(PRIOR_IMAGES_PER_S, 0, 8, 0, measured=False)
        door = Admission(backend.capacity, max_wait_s=10.0)
        assert door.expected_wait_s(1, 1) == pytest.approx(1 / PRIOR_IMAGES_PER_S)
        async with door.enter(server_id=1, member_id=1, path="classify", images=1) as turn:
            (outcome,) = await backend.classify([sample_images[0]], tenant="guild:1")
            turn.done()
        assert isinstance(outcome, Prediction)
        assert ("up", 1) in actions(backend)
        serving = backend.capacity()
        assert serving.units == 1 and serving.measured  # the instance's own rate now
    finally:
        await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"
    # stopped: nothing serves, nothing is admitted
    assert backend.capacity() == Capacity(0.0, 0, 0, 0, measured=False)
