"""GolemBackend lifecycle through the local exe-unit harness: bounded retries, no provider
(timeout, busy, shutdown), expiration replacement, retrain, start/stop errors."""

from __future__ import annotations

import asyncio
import errno
import multiprocessing
import os
import signal
import time

import pytest

from golem_backend.base import BackendBusy, BackendTimeout, BackendUnavailable
from golem_backend.golem import default_model, model_file
from golem_backend.golem.backend import GolemBackend
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)


async def test_retries_are_bounded(tmp_path, tiny_model, sample_images):
    settings = golem_settings(tmp_path, golem_max_retries=1, golem_instances=2)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("fail", times=10)
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    try:
        await wait_running(backend, 2)
        with pytest.raises(BackendUnavailable, match="failed on 2 Golem providers"):
            await backend.classify([sample_images[0]])
        assert len(faults.fired) == 2  # the first try and one retry, on two instances
        assert len({number for _, number, _ in faults.fired}) == 2
        assert (await backend.status()).errors == 1
    finally:
        await backend.stop()
    assert runtime.processes() == []


async def test_without_a_provider_requests_time_out_fill_up_and_fail_on_shutdown(
    tmp_path, tiny_model, sample_images
):
    settings = golem_settings(
        tmp_path, golem_queue_size=2, request_timeout_s=1.5, golem_script_timeout_s=1.0
    )
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("fail", match="provider.serve daemon", times=1000)  # no instance ever starts
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    started = time.monotonic()
    with pytest.raises(BackendTimeout, match="No Golem provider is running the classifier"):
        await backend.classify([sample_images[0]])
    assert 1.4 < time.monotonic() - started < 5

    settings.request_timeout_s = 60.0
    waiting = [asyncio.create_task(backend.classify([img])) for img in sample_images[:2]]

    async def two_queued() -> bool:
        return (await backend.status()).queue_depth == 2

    await wait_until(two_queued, 5, "two queued requests")
    with pytest.raises(BackendBusy, match="2 requests waiting"):
        await backend.classify([sample_images[2]])
    assert (await backend.status()).queue_depth == 2

    stopping = time.monotonic()
    await backend.stop()
    assert time.monotonic() - stopping < 15
    for task in waiting:
        with pytest.raises(BackendUnavailable, match="shutting down"):
            await task
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await backend.classify([sample_images[0]])
    assert len(runtime.activities) >= 2  # failed starts were replaced (with back-off)
    assert runtime.processes() == []


async def test_instances_are_replaced_before_expiration(tmp_path, tiny_model, sample_images):
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, expiration_s=12.0, replace_before_s=8.0)
    await backend.start()
    try:
        await wait_running(backend)
        first = runtime.activities[0]
        deadline = time.monotonic() + 9
        answered = 0
        while time.monotonic() < deadline:  # steady traffic across the replacement
            outcomes = await backend.classify([sample_images[answered % len(sample_images)]])
            assert isinstance(outcomes[0], Prediction)
            answered += 1
            await asyncio.sleep(0.1)
        assert len(runtime.activities) >= 2
        await wait_until(lambda: first.dead, 10, "the expiring instance to be stopped")
        status = await backend.status()
        assert status.errors == 0 and "failure" not in status.detail  # stopped, not failed
        assert status.requests_served == answered
        assert runtime.clusters[0].instances[0].state.value == "terminated"
    finally:
        await backend.stop()
    assert runtime.processes() == []


async def test_retrain_uploads_the_new_model_to_running_instances(
    tmp_path, tiny_model, other_tiny_dataset, sample_images
):
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings)
    await backend.start()
    try:
        await wait_running(backend)
        report = await backend.retrain(other_tiny_dataset)
        assert report.model_id != tiny_model.model_id
        assert set(report.labels) == {"cat", "dog", "monkey"}
        assert report.extra["instances_updated"] == 1
        outcomes = await backend.classify(list(sample_images[:3]))
        for outcome in outcomes:
            assert isinstance(outcome, Prediction) and outcome.model_id == report.model_id
            assert outcome.label in report.labels or outcome.is_unknown
        status = await backend.status()
        assert status.model_id == report.model_id and len(runtime.activities) == 1
        commands = [c for script in runtime.activities[0].scripts for c in script]
        assert any("run" in c and "reload" in c["run"]["args"] for c in commands)
    finally:
        await backend.stop()
    assert runtime.processes() == []


async def test_start_errors_and_use_before_start(tmp_path):
    settings = golem_settings(tmp_path)
    runtime = LocalRuntime(start_error=BackendUnavailable("yagna is not reachable at X"))
    backend = GolemBackend(settings, runtime=runtime)
    with pytest.raises(BackendUnavailable, match="still starting up; try again in a minute"):
        await backend.classify([b"x"])
    with pytest.raises(BackendUnavailable, match="yagna is not reachable"):
        await backend.start()
    with pytest.raises(BackendUnavailable, match="stopped"):
        await backend.start()
    await backend.stop()


class SlowOpenRuntime(LocalRuntime):
    """Opening a cluster takes a while (as a market negotiation does)."""

    def __init__(self, delay_s: float = 1.0) -> None:
        super().__init__(health_check_interval=0.5)
        self.opening = asyncio.Event()
        self.delay_s = delay_s

    async def open_cluster(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.opening.set()
        await asyncio.sleep(self.delay_s)
        return await super().open_cluster(*args, **kwargs)


async def test_stop_during_start_ends_the_start_and_leaves_nothing(tmp_path, tiny_model):
    settings = golem_settings(tmp_path)
    install_model(tiny_model.path, settings)
    runtime = SlowOpenRuntime()
    backend = GolemBackend(settings, runtime=runtime)
    starting = asyncio.create_task(backend.start())
    await asyncio.wait_for(runtime.opening.wait(), 30)
    await backend.stop()
    with pytest.raises(BackendUnavailable, match="stopped while it was starting"):
        await starting
    await backend.stop()  # still a no-op
    await asyncio.sleep(1.5)  # past the moment the cluster would have opened
    assert not (await backend.status()).ready
    dispatcher = backend._dispatcher
    assert dispatcher is not None
    for task in (dispatcher._loop_task, dispatcher.pool._monitor):
        assert task is None or task.done()
    assert runtime.processes() == [] and runtime.activities == []
    with pytest.raises(BackendUnavailable, match="shutting down"):
        await backend.classify([b"x"])


async def test_an_error_in_the_dispatch_loop_fails_its_requests_only(
    tmp_path, tiny_model, sample_images, caplog
):
    settings = golem_settings(tmp_path, request_timeout_s=10.0)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings)
    await backend.start()
    try:
        await wait_running(backend)
        dispatcher = backend._dispatcher
        assert dispatcher is not None
        (worker,) = dispatcher.pool.workers
        send = worker.service.send_message_nowait
        calls = 0

        def broken_once(message):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected dispatcher failure")
            return send(message)

        worker.service.send_message_nowait = broken_once  # type: ignore[method-assign]
        with pytest.raises(BackendUnavailable, match="could not send the request"):
            await backend.classify([sample_images[0]])
        assert "injected dispatcher failure" in caplog.text
        assert worker.in_flight == {}
        outcomes = await backend.classify([sample_images[1]])  # the loop is still alive
        assert isinstance(outcomes[0], Prediction) and calls == 2
    finally:
        await backend.stop()
    assert runtime.processes() == []


# --- start-up errors say what went wrong ---------------------------------------------------


async def test_a_start_timeout_names_the_setting(tmp_path, tiny_model):
    settings = golem_settings(tmp_path, golem_start_timeout_s=0.5)
    install_model(tiny_model.path, settings)
    backend = GolemBackend(settings, runtime=SlowOpenRuntime(delay_s=30))
    with pytest.raises(BackendUnavailable, match=r"within 0.5 s \(GOLEM_START_TIMEOUT_S\)"):
        await asyncio.wait_for(backend.start(), 10)


def fifo_model(settings) -> None:  # type: ignore[no-untyped-def]
    """A model path whose reads block for ever (like a hung network share)."""
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(settings.model_path)


def children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


async def test_reading_the_model_is_bounded(tmp_path, monkeypatch):
    settings = golem_settings(tmp_path)
    fifo_model(settings)
    monkeypatch.setattr(default_model, "DESCRIBE_TIMEOUT_S", 1.0)
    before = children()
    backend = GolemBackend(settings, runtime=LocalRuntime())
    with pytest.raises(BackendUnavailable, match=r"Reading the model .* took more than 1 s"):
        await asyncio.wait_for(backend.start(), 20)
    assert children() <= before  # the stuck process was killed


async def test_a_dead_model_reader_is_backend_unavailable(tmp_path):
    settings = golem_settings(tmp_path)
    fifo_model(settings)
    before = children()
    backend = GolemBackend(settings, runtime=LocalRuntime())
    starting = asyncio.create_task(backend.start())
    await wait_until(lambda: children() - before, 30, "the model reader process")
    for pid in children() - before:
        os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    with pytest.raises(BackendUnavailable, match=r"Could not read the model .*terminated abruptly"):
        await asyncio.wait_for(starting, 20)


async def test_an_os_error_reading_the_model_is_backend_unavailable(tmp_path, monkeypatch):
    settings = golem_settings(tmp_path)
    fifo_model(settings)

    def no_more_processes(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(model_file, "ProcessPoolExecutor", no_more_processes)
    backend = GolemBackend(settings, runtime=LocalRuntime())
    with pytest.raises(BackendUnavailable, match=r"Could not read the model .*Too many open files"):
        await backend.start()
