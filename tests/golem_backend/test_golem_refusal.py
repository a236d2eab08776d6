"""A batch the provider's daemon refuses (``ok: false``, client exit 1) is a request error.

The instance is healthy: it is neither ended nor replaced, and the batch's requests are
retried one at a time, so only the "poison" request fails and the others are answered.
The refusal is produced by the harness's ``refuse`` fault, keyed on the poison image's
content (the real daemon turns every bad image into a typed error in an ``ok: true`` reply).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from golem_backend.base import BackendUnavailable
from golem_backend.golem.batch import BatchRefused, ClassifyBatch
from golem_backend.golem.dispatcher import PRIOR_IMAGES_PER_S, Dispatcher, DispatcherConfig
from golem_backend.golem.pool import Home, Worker
from golem_backend.golem.protocol import REFUSED_MESSAGE
from golem_backend.golem.requests import Request
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan
from tests.golem_backend.harness.helpers import (
    client_runs,
    golem_settings,
    install_model,
    make_backend,
    open_one_service,
    wait_running,
    wait_until,
)

MARKER = b"\xff\xd9POISON-FOR-THE-DAEMON"  # after the JPEG's end: the image still decodes


def _poison(image: bytes) -> bytes:
    return image + MARKER


async def test_a_refused_batch_keeps_the_service_running(tiny_model, sample_images):
    faults = FaultPlan()
    faults.add("refuse", poison=MARKER, times=100)
    runtime, service = await open_one_service(faults, tiny_model)
    loop = asyncio.get_running_loop()
    try:
        assert service.state.value == "running"
        refused = ClassifyBatch(
            "batch-r1", [sample_images[0], _poison(sample_images[1])], 3, loop.create_future()
        )
        await service.send_message(refused)
        with pytest.raises(BatchRefused) as error:
            await asyncio.wait_for(refused.future, 30)
        assert str(error.value) == "ValueError: injected refusal of a poison image"

        good = ClassifyBatch("batch-r2", [sample_images[0]], 3, loop.create_future())
        await service.send_message(good)
        outcomes = await asyncio.wait_for(good.future, 30)
        assert len(outcomes) == 1 and isinstance(outcomes[0], Prediction)
        assert service.state.value == "running" and service.failure is None
        assert len(runtime.activities) == 1 and not runtime.activities[0].dead
    finally:
        await runtime.close()


async def test_a_poison_request_fails_alone_and_the_instance_stays(
    tmp_path, tiny_model, sample_images
):
    settings = golem_settings(tmp_path, golem_instances=1, golem_batch_wait_ms=300.0)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("refuse", poison=MARKER, times=100)
    backend, runtime = make_backend(settings, faults)
    try:
        await backend.start()
        await wait_running(backend)
        activity = runtime.activities[0]
        good = list(sample_images[:5])
        requests = [[img] for img in good[:2]] + [[_poison(good[2])]] + [[img] for img in good[2:]]

        results = await asyncio.gather(
            *(backend.classify(r, top_k=2) for r in requests), return_exceptions=True
        )

        poison = results.pop(2)
        assert isinstance(poison, BackendUnavailable), poison
        assert str(poison) == REFUSED_MESSAGE  # the requestor's words, not the provider's
        assert all(isinstance(r, list) and isinstance(r[0], Prediction) for r in results), results
        # One batch of all six, refused; then each request alone: no retry storm.
        fired = [f for f in faults.fired if f[0] == "refuse"]
        assert len(fired) == 2, fired
        assert client_runs(runtime) == 1 + len(requests)
        # The instance was neither ended nor replaced, and still serves.
        assert len(runtime.activities) == 1 and not activity.dead
        status = await backend.status()
        assert [i.state for i in status.instances] == ["running"]
        assert backend._dispatcher is not None and backend._dispatcher.instance_failures == 0
        again = await backend.classify([good[0]])
        assert isinstance(again[0], Prediction)
        assert len(runtime.activities) == 1
    finally:
        await backend.stop()
    assert runtime.processes() == []


class _Recorder:
    """Stands in for a ClassifierService: records the batches it is sent."""

    def __init__(self) -> None:
        self.sent: list[ClassifyBatch] = []
        self.id = "recorder"  # a Service's id: the dispatcher measures rates per instance

    def send_message_nowait(self, batch: ClassifyBatch) -> None:
        self.sent.append(batch)


async def test_a_batch_whose_requests_all_ended_is_cancelled():
    async def no_cluster(*_: Any) -> Any:
        raise AssertionError("not started")

    dispatcher = Dispatcher(no_cluster, dict, DispatcherConfig())
    service = _Recorder()
    worker = Worker(service, Home(None, 0.0))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    reqs = [Request([b"x"], 3, loop.create_future(), time.monotonic()) for _ in range(2)]
    dispatcher._send_requests(worker, reqs)
    (batch,) = service.sent
    reqs[0].future.cancel()  # timed out
    await asyncio.sleep(0)
    assert not batch.future.done()  # one caller still waits
    reqs[1].future.cancel()
    await asyncio.sleep(0)
    assert batch.future.cancelled()  # the instance skips it (ClassifierService.run)
    await wait_until(lambda: not worker.in_flight, 5, "the watcher to finish")
    assert dispatcher.requests_served == 0 and not dispatcher._queue
    assert dispatcher.meter.images_per_s(["recorder"]) == (PRIOR_IMAGES_PER_S, False)
