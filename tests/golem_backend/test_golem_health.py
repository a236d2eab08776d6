"""Hostile providers: refusing every batch, calling every image broken, lying about labels.

Each runs the real daemon behind a harness fault that rewrites or refuses its work, on the
first instance only; the replacement is honest.
"""

from __future__ import annotations

import asyncio

import pytest

from golem_backend.base import BackendUnavailable
from golem_backend.golem.backend import GolemBackend
from provider.errors import CorruptImage, NotAnImage
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)


async def _started(
    tmp_path, tiny_model, faults: FaultPlan, **overrides
) -> tuple[GolemBackend, LocalRuntime]:
    settings = golem_settings(tmp_path, **overrides)
    install_model(tiny_model.path, settings)
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    await wait_running(backend)
    return backend, runtime


def _without_canaries(backend: GolemBackend) -> None:
    """Only the rates judge the instance (the canaries would catch it first)."""
    assert backend._store is not None and backend._store.canaries is not None
    backend._store.canaries = None


async def _classify_until_answered(backend: GolemBackend, image: bytes, tries: int) -> int:
    """Classify ``image`` one request at a time until it is answered; returns how many
    requests failed before."""
    for failed in range(tries):
        try:
            got = await backend.classify([image])
        except BackendUnavailable:
            continue
        if isinstance(got[0], Prediction):
            return failed
    raise AssertionError(f"no answer in {tries} requests")


async def test_a_provider_refusing_every_batch_is_replaced(tmp_path, tiny_model, sample_images):
    faults = FaultPlan()
    faults.add("refuse", instance=1, times=1000)  # no poison: every batch
    backend, runtime = await _started(tmp_path, tiny_model, faults)
    try:
        failed = await _classify_until_answered(backend, sample_images[0], 10)
        assert failed == 4  # GOLEM_HEALTH_MIN_BATCHES refused batches, all bad: replaced
        assert runtime.activities[0].dead
        assert (await backend.status()).worker_restarts == 1
        for image in sample_images[:4]:  # the replacement serves, and stays
            assert isinstance((await backend.classify([image]))[0], Prediction)
        assert len(runtime.activities) == 2 and not runtime.activities[1].dead
    finally:
        await backend.stop()


async def test_a_provider_calling_every_image_corrupt_is_replaced(
    tmp_path, tiny_model, sample_images
):
    faults = FaultPlan()
    faults.add("lie", instance=1, times=1000, lie="corrupt")
    backend, runtime = await _started(tmp_path, tiny_model, faults, golem_batch_size=1)
    _without_canaries(backend)
    try:
        results = await asyncio.gather(*(backend.classify([img]) for img in sample_images[:4]))
        # Never passed on: the requestor's decoder reads those images, so each is re-run on
        # another instance; four bad batches out of four replace the liar.
        assert all(isinstance(r[0], Prediction) for r in results), results
        lies = [f for f in faults.fired if f[0] == "lie"]
        assert len(lies) == 4, lies
        assert runtime.activities[0].dead
        assert (await backend.status()).worker_restarts == 1
    finally:
        await backend.stop()


async def test_an_honest_provider_seeing_broken_images_is_kept(tmp_path, tiny_model, sample_images):
    backend, runtime = await _started(tmp_path, tiny_model, FaultPlan())
    try:
        truncated = sample_images[0][: len(sample_images[0]) // 3]
        for _ in range(8):  # every batch has only broken images in it
            got = await backend.classify([truncated, b"plain text, not an image"])
            assert isinstance(got[0], CorruptImage) and isinstance(got[1], NotAnImage), got
        assert len(runtime.activities) == 1 and not runtime.activities[0].dead
        assert (await backend.status()).worker_restarts == 0
    finally:
        await backend.stop()


@pytest.mark.parametrize("rate", [0.0, 1.0])
async def test_a_provider_lying_about_labels_fails_a_canary(
    tmp_path, tiny_model, sample_images, rate
):
    """The liar answers every image (the canaries too: it cannot tell them apart) with its
    second best label. Users get the re-run answers from the honest replacement, never the
    liar's. ``rate``: canaries in the first batch only, or in every batch."""
    from provider.model import Classifier

    expected = Classifier.load(tiny_model.path).classify_sources(list(sample_images), top_k=3)
    faults = FaultPlan()
    faults.add("lie", instance=1, times=1000, lie="label")
    backend, runtime = await _started(tmp_path, tiny_model, faults, golem_canary_rate=rate)
    try:
        results = await asyncio.gather(*(backend.classify([img]) for img in sample_images))
        assert [r[0].label for r in results] == [e.label for e in expected]  # type: ignore[union-attr]
        assert runtime.activities[0].dead
        assert any(f[0] == "lie" for f in faults.fired)
        assert backend._dispatcher is not None
        assert backend._dispatcher.health.canary_failures == 1
        await wait_until(lambda: len(runtime.activities) == 2, 10, "a replacement")
        assert (await backend.status()).worker_restarts == 1
    finally:
        await backend.stop()
