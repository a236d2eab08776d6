"""LocalBackend.capacity() with real worker processes: the prior, images in flight, the rate
measured from answered batches, and a worker that is down not counted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from golem_backend import Capacity, Prediction
from golem_backend.local.backend import PRIOR_IMAGES_PER_S, LocalBackend
from golem_backend.settings import BackendSettings


def make_settings(data_dir: Path, **overrides: object) -> BackendSettings:
    values: dict[str, object] = {
        "backend": "local",
        "data_dir": data_dir,
        "local_workers": 2,
        "queue_size": 64,
        "local_batch_size": 8,
        "request_timeout_s": 60.0,
    }
    values.update(overrides)
    return BackendSettings(_env_file=None, **values)  # type: ignore[call-arg]


def install_model(settings: BackendSettings, model) -> None:
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    settings.model_path.write_bytes(model.path.read_bytes())


async def keep_busy(
    backend: LocalBackend, images: list[bytes], total: int, outstanding: int
) -> float:
    """Classify ``total`` one-image requests, ``outstanding`` at a time; returns the
    images per second answered (wall time)."""
    gate = asyncio.Semaphore(outstanding)

    async def one(i: int) -> None:
        async with gate:
            (outcome,) = await backend.classify([images[i % len(images)]])
            assert isinstance(outcome, Prediction)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - started)


async def test_capacity_comes_from_the_workers_answered_batches(
    tmp_path, tiny_model, sample_images
):
    settings = make_settings(tmp_path)
    install_model(settings, tiny_model)
    backend = LocalBackend(settings)
    assert backend.capacity() == Capacity(0.0, 0, 0, 0, measured=False)  # not started
    async with backend:
        # before any work: the prior of two workers; a batch running and one ready on each
        assert backend.capacity() == Capacity(2 * PRIOR_IMAGES_PER_S, 0, 32, 2, measured=False)

        waiting = [
            asyncio.create_task(backend.classify([sample_images[i % len(sample_images)]]))
            for i in range(40)
        ]
        await asyncio.sleep(0)  # each request is queued now; none can be answered yet
        assert backend.capacity().in_flight == 40
        await asyncio.gather(*waiting)
        assert backend.capacity().in_flight == 0

        observed = await keep_busy(backend, sample_images, total=400, outstanding=32)
        capacity = backend.capacity()
        assert capacity.measured and capacity.units == 2
        # busy-time rate of both workers against what the burst got in wall time
        ratio = capacity.images_per_s / observed
        assert 0.5 < ratio < 2.0, (capacity.images_per_s, observed)


async def test_a_worker_that_is_down_does_not_count(tmp_path, tiny_model, sample_images):
    settings = make_settings(tmp_path)
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        assert isinstance(backend, LocalBackend)
        await keep_busy(backend, sample_images, total=100, outstanding=16)
        full = backend.capacity()
        assert full.units == 2 and full.measured

        backend._inject_worker_crashes_for_tests(1)  # the next batch's worker exits
        answered = asyncio.create_task(backend.classify([sample_images[0]]))
        seen: list[Capacity] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            capacity = backend.capacity()
            if capacity.units == 1:
                seen.append(capacity)
            elif seen:  # replaced and serving again
                break
            await asyncio.sleep(0.005)
        (outcome,) = await answered  # retried on the other worker
        assert isinstance(outcome, Prediction)
        assert seen, "the crashed worker was never seen out of service"
        down = seen[0]
        assert down.slots == 16 and 0 < down.images_per_s < full.images_per_s
        assert backend.capacity().units == 2
