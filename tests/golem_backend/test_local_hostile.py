"""Hostile images through the real local backend: a scan bomb costs only its own request,
and a worker stuck in a batch is killed before the innocent images of that batch time out."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from golem_backend import Prediction
from golem_backend.local.backend import LocalBackend
from provider.errors import ImageTooComplex
from tests.golem_backend.test_local_backend import (
    MODULE,
    assert_gone,
    install_model,
    make_settings,
    until,
)
from tests.scan_bomb import scan_bomb

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return scan_bomb(10_000)  # ~14 MB: tens of seconds of libjpeg without the checks


@pytest_asyncio.fixture(**MODULE)
async def two_workers(tmp_path_factory, tiny_model) -> AsyncIterator[LocalBackend]:
    settings = make_settings(tmp_path_factory.mktemp("hostile"), max_image_bytes=20 * 2**20)
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        yield backend


@pytest_asyncio.fixture(**MODULE)
async def one_worker(tmp_path_factory, tiny_model) -> AsyncIterator[LocalBackend]:
    settings = make_settings(
        tmp_path_factory.mktemp("stuck"), local_workers=1, max_image_bytes=20 * 2**20
    )
    install_model(settings, tiny_model)
    async with LocalBackend(settings) as backend:
        yield backend


async def test_bombs_cost_only_their_own_answer(two_workers, bomb, sample_images):
    pids = two_workers.worker_pids
    started = time.monotonic()
    mixed, *alone = await asyncio.gather(
        two_workers.classify([bomb, sample_images[0], bomb]),
        two_workers.classify([bomb]),
        two_workers.classify([sample_images[1]]),
        two_workers.classify([bomb, bomb]),
    )
    elapsed = time.monotonic() - started
    assert isinstance(mixed[0], ImageTooComplex) and isinstance(mixed[2], ImageTooComplex)
    assert "more than 100 scans" in mixed[0].message
    assert isinstance(mixed[1], Prediction)
    assert isinstance(alone[0][0], ImageTooComplex)
    assert isinstance(alone[1][0], Prediction)
    assert all(isinstance(o, ImageTooComplex) for o in alone[2])
    assert two_workers.worker_pids == pids  # rejected in the worker, nothing killed
    assert elapsed < 20  # loose (shared machine); without the checks: minutes


async def test_a_stuck_batch_is_split_and_its_innocent_images_answered(
    one_worker, bomb, sample_images
):
    (pid,) = one_worker.worker_pids
    deadline = one_worker.batch_deadline_s(2)
    assert deadline < 30  # well inside the request timeout
    os.kill(pid, signal.SIGSTOP)  # the worker hangs as in a C decoder that never returns
    started = time.monotonic()
    hostile = asyncio.create_task(one_worker.classify([bomb]))
    innocent = asyncio.create_task(one_worker.classify([sample_images[0]]))
    await until(lambda: len(one_worker._pool.workers[0].batch) == 2)  # one batch holds both
    hostile_out, innocent_out = await asyncio.gather(hostile, innocent)
    elapsed = time.monotonic() - started
    assert isinstance(innocent_out[0], Prediction)
    assert isinstance(hostile_out[0], ImageTooComplex)  # from the markers, on the new worker
    assert deadline <= elapsed < 30
    assert_gone((pid,))
    await until(lambda: one_worker._pool.workers[0].state == "idle", within=60)


async def test_an_image_stuck_alone_is_answered_as_too_complex(one_worker, sample_images):
    await until(lambda: len(one_worker.worker_pids) == 1, within=60)
    (pid,) = one_worker.worker_pids
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    (outcome,) = await one_worker.classify([sample_images[1]])
    elapsed = time.monotonic() - started
    assert isinstance(outcome, ImageTooComplex)
    assert outcome.message == "That image took too long to classify."
    assert one_worker.batch_deadline_s(1) <= elapsed < 30
    await until(lambda: one_worker.worker_pids not in ((), (pid,)), within=60)
    assert_gone((pid,))
    (after,) = await one_worker.classify([sample_images[2]])
    assert isinstance(after, Prediction)
