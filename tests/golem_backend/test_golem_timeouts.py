"""A batch that times out on a provider blames nobody before its images are retried apart.

The hostile image is simulated by the harness: a ``hang`` fault keyed on the image's content
makes the provider's classification command hang whenever that image is in the batch (a
decoder stuck on it), on an otherwise honest provider.
"""

from __future__ import annotations

import asyncio

from golem_backend.golem.protocol import USER_MESSAGES
from provider.errors import ImageTooComplex
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)

BOMB = b"\xff\xd9HOSTILE-IMAGE-THAT-HANGS-THE-DECODER"


def _settings(tmp_path, **overrides):
    values = {"golem_script_timeout_s": 3.0, "golem_batch_wait_ms": 300.0}
    return golem_settings(tmp_path, **{**values, **overrides})


async def test_a_hostile_image_costs_no_innocent_request_and_no_provider(
    tmp_path, tiny_model, sample_images
):
    settings = _settings(tmp_path)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("hang", poison=BOMB, times=100)
    backend, runtime = make_backend(settings, faults)
    try:
        await backend.start()
        await wait_running(backend)
        bomb = sample_images[0] + BOMB  # still a valid JPEG: the bytes follow its end
        requests = [[img] for img in sample_images[1:5]] + [[bomb], [sample_images[5], bomb]]

        results = await asyncio.gather(*(backend.classify(r) for r in requests))

        *innocent, alone, mixed = results
        assert all(len(r) == 1 and isinstance(r[0], Prediction) for r in innocent), innocent
        assert isinstance(alone[0], ImageTooComplex), alone
        assert alone[0].message == USER_MESSAGES["too_complex"]  # the requestor's words
        assert isinstance(mixed[0], Prediction) and isinstance(mixed[1], ImageTooComplex)
        hangs = [f for f in faults.fired if f[0] == "hang"]
        assert len(hangs) == 3, hangs  # the batch of all, then the bomb alone, twice
        # No provider was blamed: the one instance still serves and was never replaced.
        assert len(runtime.activities) == 1 and not runtime.activities[0].dead
        assert (await backend.status()).worker_restarts == 0
        again = await backend.classify([sample_images[1]])
        assert isinstance(again[0], Prediction)
    finally:
        await backend.stop()
    assert runtime.processes() == []


async def test_an_instance_that_times_out_on_innocent_images_is_replaced(
    tmp_path, tiny_model, sample_images
):
    settings = _settings(tmp_path)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    faults.add("hang", instance=1, times=100)  # the first provider hangs on everything
    backend, runtime = make_backend(settings, faults)
    try:
        await backend.start()
        await wait_running(backend)

        got = await backend.classify([sample_images[0]])

        # Not "too complex": the instance failed its canaries and the image was re-run.
        assert isinstance(got[0], Prediction), got
        assert runtime.activities[0].dead
        await wait_until(lambda: len(runtime.activities) == 2, 10, "one replacement")
        assert (await backend.status()).worker_restarts == 1
        fired = {number for _, number, _ in faults.fired}
        assert fired == {1}, fired
    finally:
        await backend.stop()
    assert runtime.processes() == []
