"""LocalBackend with real worker processes and a real (tiny) model.

Backends are shared per topic (module-scoped loop) to keep process start-ups few; tests that
freeze (SIGSTOP) or kill (SIGKILL) a worker use backends of their own.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import (
    BackendBusy,
    BackendTimeout,
    BackendUnavailable,
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    Prediction,
    create_backend,
)
from golem_backend.local.backend import LocalBackend
from golem_backend.settings import BackendSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODULE = {"scope": "module", "loop_scope": "module"}


def make_settings(data_dir: Path, **overrides: object) -> BackendSettings:
    values: dict[str, object] = {
        "backend": "local",
        "data_dir": data_dir,
        "local_workers": 2,
        "queue_size": 64,
        "request_timeout_s": 30.0,
        "local_batch_size": 8,
    }
    values.update(overrides)
    return BackendSettings(_env_file=None, **values)  # type: ignore[call-arg]


def install_model(settings: BackendSettings, model) -> None:
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model.path, settings.model_path)


def training_processes() -> list[multiprocessing.process.BaseProcess]:
    return [p for p in multiprocessing.active_children() if p.name == "classifier-training"]


def assert_gone(pids: tuple[int, ...]) -> None:
    children = {p.pid for p in multiprocessing.active_children()}
    for pid in pids:
        assert pid not in children
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture(scope="module")
def expected(tiny_model, sample_images: list[bytes]) -> list[Prediction]:
    """What the in-process classifier says about ``sample_images``."""
    from provider.model import Classifier

    outcomes = Classifier.load(tiny_model.path).classify_sources(sample_images, top_k=3)
    assert all(isinstance(o, Prediction) for o in outcomes)
    return outcomes  # type: ignore[return-value]


@pytest_asyncio.fixture(**MODULE)
async def backend(tmp_path_factory, tiny_model) -> AsyncIterator[LocalBackend]:
    settings = make_settings(tmp_path_factory.mktemp("shared"), max_image_bytes=2 * 2**20)
    install_model(settings, tiny_model)
    backend = create_backend(settings)
    assert isinstance(backend, LocalBackend)
    async with backend:
        yield backend


def same_prediction(got: object, want: Prediction) -> None:
    assert isinstance(got, Prediction)
    assert (got.label, got.model_id) == (want.label, want.model_id)
    assert got.confidence == pytest.approx(want.confidence, abs=1e-4)
    assert [s.label for s in got.top] == [s.label for s in want.top]


# --- serving --------------------------------------------------------------------------------


async def test_results_equal_the_in_process_classifier(backend, sample_images, expected):
    got = await backend.classify(sample_images, top_k=3)
    assert len(got) == len(expected)
    for outcome, want in zip(got, expected, strict=True):
        same_prediction(outcome, want)


async def test_top_k_is_per_request(backend, sample_images):
    one, three = await asyncio.gather(
        backend.classify(sample_images[:1], top_k=1), backend.classify(sample_images[:1], top_k=3)
    )
    assert len(one[0].top) == 1 and len(three[0].top) == 3
    assert one[0].label == three[0].label


async def test_bad_images_fail_alone(backend, sample_images, expected):
    images = [sample_images[0], b"", b"this is not an image", sample_images[1], b"x" * (3 * 2**20)]
    got = await backend.classify(images)
    same_prediction(got[0], expected[0])
    same_prediction(got[3], expected[1])
    assert isinstance(got[1], EmptyImage)
    assert isinstance(got[2], NotAnImage)
    assert isinstance(got[4], ImageTooLarge) and "limit is 2.0 MB" in got[4].message


async def test_concurrent_requests_share_batches(backend, sample_images, expected):
    before = (await backend.status()).requests_served
    batches_before = backend.batches_dispatched
    calls = [backend.classify([sample_images[i % len(sample_images)]]) for i in range(50)]
    results = await asyncio.gather(*calls)
    for i, result in enumerate(results):
        same_prediction(result[0], expected[i % len(expected)])
    assert (await backend.status()).requests_served == before + 50
    assert backend.batches_dispatched - batches_before <= 50 // 2  # several images per pass


async def test_a_lone_request_to_idle_workers_is_not_held_for_a_batch(
    tmp_path, tiny_model, sample_images, expected
):
    """The batch window only holds small batches while a batch runs: with every worker
    idle a request goes at once (the 1 s window, the most the setting allows, would
    otherwise hold each one 1 s)."""
    settings = make_settings(tmp_path, local_batch_wait_ms=1000.0)
    install_model(settings, tiny_model)
    async with create_backend(settings) as backend:
        await backend.classify([sample_images[0]])  # warm: a lone image's session is lazy
        for i in range(3):
            [outcome] = await asyncio.wait_for(backend.classify([sample_images[i]]), 0.9)
            same_prediction(outcome, expected[i])


async def test_status_describes_workers_and_model(backend, tiny_model):
    status = await backend.status()
    assert status.kind == "local" and status.ready
    assert status.model_id == tiny_model.model_id
    assert status.labels == tiny_model.labels
    assert status.accuracy is None or 0.0 <= status.accuracy <= 1.0
    assert [i.name for i in status.instances] == ["worker-1", "worker-2"]
    assert all(i.state == "idle" for i in status.instances)
    assert sum(i.requests_served for i in status.instances) > 0
    assert status.queue_depth == 0
    assert len(backend.worker_pids) == 2


async def test_create_backend_picks_the_kind_from_settings(tmp_path):
    assert isinstance(create_backend(make_settings(tmp_path)), LocalBackend)
    golem = create_backend(make_settings(tmp_path, backend="golem"))
    assert golem.kind == "golem" and not isinstance(golem, LocalBackend)


async def test_classify_needs_a_started_backend(tmp_path):
    backend = LocalBackend(make_settings(tmp_path))
    with pytest.raises(BackendUnavailable, match="not started"):
        await backend.classify([b"x"])
    await backend.stop()
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await backend.classify([b"x"])


# --- queue limits and deadlines (a frozen worker) ----------------------------------------------


@pytest_asyncio.fixture(**MODULE)
async def small(tmp_path_factory, tiny_model) -> AsyncIterator[LocalBackend]:
    settings = make_settings(
        tmp_path_factory.mktemp("small"), local_workers=1, queue_size=4, request_timeout_s=3.0
    )
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        yield backend


async def until(predicate, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def worker_states(backend: LocalBackend) -> list[str]:
    return [i.state for i in (await backend.status()).instances]


async def test_queue_full_refuses_at_once(small, sample_images):
    (pid,) = small.worker_pids
    os.kill(pid, signal.SIGSTOP)
    try:
        in_flight = asyncio.create_task(small.classify(sample_images[:1]))
        await until(lambda: small._pool.workers[0].state == "busy")
        queued = [asyncio.create_task(small.classify(sample_images[:2])) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert (await small.status()).queue_depth == 4
        started = time.monotonic()
        with pytest.raises(BackendBusy, match="busy"):
            await small.classify(sample_images[:1])
        with pytest.raises(BackendBusy, match="at most 4"):
            await small.classify(sample_images[:5])
        assert time.monotonic() - started < 0.5
    finally:
        os.kill(pid, signal.SIGCONT)
    results = await asyncio.gather(in_flight, *queued)
    assert all(isinstance(o, Prediction) for result in results for o in result)


async def test_timeout_then_a_stuck_worker_is_replaced(small, sample_images):
    (pid,) = small.worker_pids
    errors = (await small.status()).errors
    os.kill(pid, signal.SIGSTOP)  # the worker hangs (and stays hung)
    started = time.monotonic()
    with pytest.raises(BackendTimeout, match="within 3 s"):
        await small.classify(sample_images[:2])
    assert 2.9 <= time.monotonic() - started < 5
    status = await small.status()
    assert status.queue_depth == 0 and status.errors == errors + 1
    await until(lambda: small.worker_pids not in ((), (pid,)), within=30)  # killed, replaced
    assert_gone((pid,))
    result = await small.classify(sample_images[:1])
    assert isinstance(result[0], Prediction)


# --- crashes ------------------------------------------------------------------------------------


@pytest_asyncio.fixture(**MODULE)
async def crashy(tmp_path_factory, tiny_model) -> AsyncIterator[LocalBackend]:
    settings = make_settings(tmp_path_factory.mktemp("crashy"), request_timeout_s=45.0)
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        yield backend


async def test_killed_worker_is_replaced_and_request_answered(crashy, sample_images, expected):
    old = crashy.worker_pids
    os.kill(old[0], signal.SIGSTOP)  # freeze worker-1 so the request is surely in it...
    request = asyncio.create_task(crashy.classify(sample_images[:3]))
    await until(lambda: crashy._pool.workers[0].state == "busy")
    os.kill(old[0], signal.SIGKILL)  # ...then kill it mid-request
    result = await request
    for outcome, want in zip(result, expected[:3], strict=True):
        same_prediction(outcome, want)
    await until(lambda: len(crashy.worker_pids) == 2, within=60)
    assert old[0] not in crashy.worker_pids and old[1] in crashy.worker_pids
    assert_gone(old[:1])
    assert await worker_states(crashy) == ["idle", "idle"]
    same_prediction((await crashy.classify(sample_images[:1]))[0], expected[0])


async def test_second_crash_fails_the_request_clearly(crashy, sample_images, expected):
    crashy._inject_worker_crashes_for_tests(2)  # the batch, then its retry
    with pytest.raises(BackendUnavailable, match="worker crashed; try again"):
        await crashy.classify(sample_images[:1])
    await until(lambda: len(crashy.worker_pids) == 2, within=60)
    results = await asyncio.gather(*(crashy.classify([img]) for img in sample_images))
    for result, want in zip(results, expected, strict=True):
        same_prediction(result[0], want)


# --- retrain ------------------------------------------------------------------------------------


async def test_retrain_under_load_swaps_without_failures(
    tmp_path, tiny_model, other_tiny_dataset, sample_images
):
    settings = make_settings(tmp_path)
    install_model(settings, tiny_model)
    loop_thread = threading.get_ident()
    progress: list[tuple[str, int, int]] = []

    async def on_progress(stage: str, done: int, total: int) -> None:
        assert threading.get_ident() == loop_thread  # delivered on the event loop
        progress.append((stage, done, total))

    async with LocalBackend(settings) as backend:
        done, swapped = asyncio.Event(), asyncio.Event()
        answers: list[tuple[bool, Prediction]] = []  # (sent after the swap, answer)

        async def client(i: int) -> None:
            while not done.is_set():
                after_swap = swapped.is_set()
                outcome = (await backend.classify([sample_images[i % len(sample_images)]]))[0]
                assert isinstance(outcome, Prediction)
                answers.append((after_swap, outcome))
                await asyncio.sleep(0.1)

        clients = [asyncio.create_task(client(i)) for i in range(3)]
        retrain = asyncio.create_task(backend.retrain(other_tiny_dataset, on_progress))
        await asyncio.sleep(0.2)
        with pytest.raises(BackendBusy, match="already running"):
            await backend.retrain(other_tiny_dataset)
        report = await retrain
        swapped.set()
        await until(lambda: sum(after for after, _ in answers) >= 6)
        done.set()
        await asyncio.gather(*clients)  # raises if any request failed

        assert report.model_id != tiny_model.model_id
        assert report.labels == ("cat", "dog", "monkey") and report.n_images == 18
        assert report.extra["previous_model_id"] == tiny_model.model_id
        assert report.confusion_png is not None and report.confusion_png.startswith(b"\x89PNG")
        assert report.extra["confusion_labels"] == report.labels
        confusion = report.extra["confusion"]
        assert isinstance(confusion, list) and len(confusion) == 3
        assert sum(map(sum, confusion)) == report.n_images  # every image, cross-validated once
        assert progress and all(total >= done_ for _, done_, total in progress)
        status = await backend.status()
        assert status.model_id == report.model_id and status.labels == report.labels
        before = {a.model_id for after, a in answers if not after}
        assert tiny_model.model_id in before and before <= {tiny_model.model_id, report.model_id}
        assert {a.model_id for after, a in answers if after} == {report.model_id}
        assert all(a.top[0].label in report.labels for after, a in answers if after)
        assert not list(settings.model_path.parent.glob(".training-*"))  # no temp file left


async def test_retrain_with_unusable_dataset_keeps_the_model(backend, tmp_path, tiny_model):
    (tmp_path / "only-one-label" / "cat").mkdir(parents=True)
    with pytest.raises(BackendUnavailable, match="current model is still in use"):
        await backend.retrain(tmp_path / "only-one-label")
    assert (await backend.status()).model_id == tiny_model.model_id


# --- start and stop -----------------------------------------------------------------------------


async def test_start_trains_a_model_when_none_exists(tmp_path, tiny_dataset, sample_images):
    settings = make_settings(tmp_path, local_workers=1, dataset_dir=tiny_dataset)
    stages: list[str] = []
    backend = LocalBackend(settings, progress=lambda stage, done, total: stages.append(stage))
    async with backend:
        assert settings.model_path.is_file()
        status = await backend.status()
        assert status.labels == ("cat", "cow", "dog") and status.model_id
        assert stages
        assert isinstance((await backend.classify(sample_images[:1]))[0], Prediction)


async def test_start_retrains_over_a_corrupt_model(tmp_path, tiny_dataset, sample_images, caplog):
    settings = make_settings(tmp_path, local_workers=1, dataset_dir=tiny_dataset)
    settings.model_path.parent.mkdir(parents=True)
    settings.model_path.write_bytes(b"definitely not a model")
    with caplog.at_level(logging.ERROR, logger="golem_backend.local.backend"):
        async with LocalBackend(settings) as backend:
            assert isinstance((await backend.classify(sample_images[:1]))[0], Prediction)
    assert any("unusable" in r.getMessage() for r in caplog.records)


async def test_start_fails_clearly_when_training_fails(tmp_path):
    (tmp_path / "empty-dataset").mkdir()
    settings = make_settings(tmp_path, local_workers=1, dataset_dir=tmp_path / "empty-dataset")
    backend = LocalBackend(settings)
    with pytest.raises(BackendUnavailable, match="Could not train the first model"):
        await backend.start()
    assert not settings.model_path.exists()
    assert training_processes() == []


async def test_stop_fails_pending_requests_and_leaves_no_process(
    tmp_path, tiny_model, tiny_dataset, sample_images
):
    settings = make_settings(tmp_path)
    install_model(settings, tiny_model)
    backend = LocalBackend(settings)
    await backend.start()
    pids = backend.worker_pids
    assert len(pids) == 2
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # a stuck worker must not keep stop() waiting
    pending = [asyncio.create_task(backend.classify(sample_images[:1])) for _ in range(5)]
    retrain = asyncio.create_task(backend.retrain(tiny_dataset))
    await until(lambda: training_processes() != [])
    started = time.monotonic()
    await backend.stop()
    await backend.stop()  # idempotent
    assert time.monotonic() - started < 10
    for task in [*pending, retrain]:
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await task
    assert_gone(pids)
    assert training_processes() == []
    assert (await backend.status()).instances[0].state == "stopped"


async def test_stop_during_start_ends_the_start_and_leaves_nothing(tmp_path, tiny_model):
    from golem_backend.processes import executor_processes

    settings = make_settings(tmp_path)
    install_model(settings, tiny_model)
    backend = LocalBackend(settings)
    starting = asyncio.create_task(backend.start())
    await until(
        lambda: all(executor_processes(w._executor) for w in backend._pool.workers), within=30
    )
    pids = tuple(p.pid for w in backend._pool.workers for p in executor_processes(w._executor))
    assert not starting.done()  # the workers are still loading the model
    await backend.stop()
    with pytest.raises(BackendUnavailable, match="stopped while it was starting"):
        await starting
    await backend.stop()  # still a no-op
    status = await backend.status()
    assert not status.ready
    assert all(i.state == "stopped" for i in status.instances)
    assert backend._pool.tasks == set()
    assert_gone(pids)
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await backend.classify([b"x"])


async def test_a_worker_stuck_loading_a_new_model_is_replaced(
    tmp_path, tiny_model, other_tiny_dataset, sample_images
):
    settings = make_settings(tmp_path, local_workers=1, request_timeout_s=15.0)
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        (worker,) = backend._pool.workers
        (old_pid,) = backend.worker_pids
        worker.load_timeout_s = 2.0
        await worker.hang_on_next_load_for_tests()
        report = await backend.retrain(other_tiny_dataset)
        await until(lambda: worker.state == "loading")  # the refresh hangs...
        await until(lambda: backend.worker_pids not in ((), (old_pid,)), within=30)  # ...killed
        assert_gone((old_pid,))
        outcome = (await backend.classify(sample_images[:1]))[0]
        assert isinstance(outcome, Prediction) and outcome.model_id == report.model_id
        assert await worker_states(backend) == ["idle"]


async def test_a_lone_request_borrows_the_idle_workers_cores(backend, sample_images, monkeypatch):
    """One image while the other worker is idle runs on every worker's cores; images that
    arrive together are batched on the workers' own shares."""
    lent: list[int] = []
    for worker in backend._pool.workers:
        real = worker.classify

        async def spy(*args, _real=real, **kwargs):
            lent.append(args[5] if len(args) > 5 else kwargs.get("cores", 1))
            return await _real(*args, **kwargs)

        monkeypatch.setattr(worker, "classify", spy)
    await backend.classify(sample_images[:1])
    assert lent == [2 * backend._pool.threads]
    lent.clear()
    await asyncio.gather(*(backend.classify([image]) for image in sample_images * 4))
    assert lent and all(cores == backend._pool.threads for cores in lent[:-1])
