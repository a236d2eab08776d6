"""GolemBackend through the local exe-unit harness: real ClassifierService scripts, yapapi's
ServiceRunner, the real provider daemon and client, a real (tiny) model.

One backend with two instances is shared by this module; each fault test injects one
failure into it and waits until the failed instance has been replaced.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend.base import Outcome
from golem_backend.golem.backend import GolemBackend
from provider.errors import EmptyImage, ImageTooLarge, NotAnImage
from provider.results import Prediction
from tests.golem_backend.harness import REPO_ROOT, FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import (
    client_runs,
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODULE = {"scope": "module", "loop_scope": "module"}


class Shared:
    def __init__(self, backend: GolemBackend, runtime: LocalRuntime, faults: FaultPlan) -> None:
        self.backend, self.runtime, self.faults = backend, runtime, faults


@pytest_asyncio.fixture(**MODULE)
async def shared(tmp_path_factory: pytest.TempPathFactory, tiny_model) -> AsyncIterator[Shared]:
    settings = golem_settings(
        tmp_path_factory.mktemp("golem-shared"),
        golem_instances=2,
        golem_script_timeout_s=4.0,
        max_image_bytes=200_000,
    )
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    backend, runtime = make_backend(settings, faults)
    await backend.start()
    await wait_running(backend)
    yield Shared(backend, runtime, faults)
    await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"


@pytest.fixture(scope="module")
def expected(tiny_model, sample_images: list[bytes]) -> list[Outcome]:
    """The classifier run directly on the same images."""
    from provider.model import Classifier

    return Classifier.load(tiny_model.path).classify_sources(list(sample_images), top_k=3)


def assert_same(got: list[Outcome], want: list[Outcome]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert isinstance(g, Prediction) and isinstance(w, Prediction)
        assert g.label == w.label
        assert g.confidence == pytest.approx(w.confidence, abs=1e-5)
        assert [s.label for s in g.top] == [s.label for s in w.top]
        assert g.model_id == w.model_id


async def test_classification_matches_the_classifier(shared: Shared, sample_images, expected):
    got = await shared.backend.classify(list(sample_images), top_k=3)
    assert_same(got, expected)


async def test_results_match_the_cli(shared: Shared, sample_images, tiny_model, tmp_path: Path):
    files = []
    for i, data in enumerate(sample_images[:3]):
        files.append(tmp_path / f"{i}.jpg")
        files[-1].write_bytes(data)
    cli = [sys.executable, "-m", "provider.cli", "--json", "predict"]
    cli += ["--model", str(tiny_model.path), *map(str, files)]
    proc = await asyncio.to_thread(subprocess.run, cli, capture_output=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    got = await shared.backend.classify(list(sample_images[:3]), top_k=3)
    assert len(lines) == 3
    for outcome, line in zip(got, lines, strict=True):
        assert isinstance(outcome, Prediction)
        assert outcome.label == line["label"] and outcome.model_id == line["model_id"]
        assert outcome.confidence == pytest.approx(line["confidence"], abs=1e-5)
        assert [s.label for s in outcome.top] == [t["label"] for t in line["top"]]


async def test_bad_images_are_typed_errors_in_the_list(shared: Shared, sample_images):
    got = await shared.backend.classify(
        [b"", b"not an image at all", b"x" * 300_000, sample_images[0]]
    )
    assert isinstance(got[0], EmptyImage)
    assert isinstance(got[1], NotAnImage)  # decided by the provider, rebuilt from JSON
    assert isinstance(got[2], ImageTooLarge)  # refused before upload
    assert isinstance(got[3], Prediction)


async def test_concurrent_requests_share_micro_batches(shared: Shared, sample_images, expected):
    before = client_runs(shared.runtime)
    calls = [shared.backend.classify([img], top_k=1) for img in sample_images * 2]
    results = await asyncio.gather(*calls)
    runs = client_runs(shared.runtime) - before
    assert all(len(r) == 1 and isinstance(r[0], Prediction) for r in results)
    assert [r[0].label for r in results] == [e.label for e in expected] * 2  # type: ignore[union-attr]
    assert all(len(r[0].top) == 1 for r in results)  # type: ignore[union-attr]
    assert runs < len(calls), f"{len(calls)} requests took {runs} execs: no micro-batching"


async def test_status_lists_instances(shared: Shared, tiny_model):
    status = await shared.backend.status()
    assert status.kind == "golem" and status.ready
    assert status.model_id == tiny_model.model_id and status.labels == tiny_model.labels
    assert len(status.instances) == 2
    assert {i.state for i in status.instances} == {"running"}
    assert all(i.name.startswith("local-provider-") and i.provider_id for i in status.instances)
    assert status.requests_served > 0 and status.glm_spent == 0.0
    assert "2/2 instance(s) running" in status.detail


async def _survives(shared: Shared, fault: str, sample_images, expected, **kwargs) -> None:
    backend, runtime = shared.backend, shared.runtime
    activities = len(runtime.activities)
    restarts = (await backend.status()).worker_restarts
    shared.faults.add(fault, **kwargs)
    got = await backend.classify(list(sample_images), top_k=3)
    assert_same(got, expected)  # answered anyway, by another instance
    kind, number, _ = shared.faults.fired[-1]
    assert kind == fault
    await wait_until(lambda: len(runtime.activities) > activities, 30, "a replacement")
    await wait_running(backend, 2)
    faulty = runtime.activities[number - 1]
    await wait_until(lambda: faulty.dead, 30, "the faulty instance to be terminated")
    assert faulty.processes() == []
    assert f"local-provider-{number}" not in {i.name for i in (await backend.status()).instances}
    assert (await backend.status()).worker_restarts > restarts  # counted for /metrics


async def test_a_failing_command_is_retried_elsewhere(shared: Shared, sample_images, expected):
    await _survives(shared, "fail", sample_images, expected)


async def test_a_timeout_is_retried_apart_and_blames_nobody(
    shared: Shared, sample_images, expected
):
    """One hang: the batch's images are retried apart; the instance then answers its
    canaries, so it is kept (a timeout alone does not prove the provider at fault)."""
    backend, runtime = shared.backend, shared.runtime
    activities = len(runtime.activities)
    restarts = (await backend.status()).worker_restarts
    shared.faults.add("hang")
    got = await backend.classify(list(sample_images), top_k=3)
    assert_same(got, expected)
    assert shared.faults.fired[-1][0] == "hang"
    await wait_running(backend, 2)
    assert len(runtime.activities) == activities
    assert (await backend.status()).worker_restarts == restarts


async def test_an_instance_dying_mid_batch(shared: Shared, sample_images, expected):
    await _survives(shared, "die", sample_images, expected)


def _forged_reply(tiny_model, n: int) -> bytes:
    """Well-formed JSON from the right model, but with a label the model does not know."""
    result = {
        "label": "giraffe",
        "confidence": 0.9,
        "top": [{"label": "giraffe", "confidence": 0.9}],
    }
    return json.dumps(
        {
            "ok": True,
            "version": 1,
            "model_id": tiny_model.model_id,
            "labels": list(tiny_model.labels),
            "results": [result] * n,
        }
    ).encode()


@pytest.mark.parametrize("kind", ["garbage", "forged"])
async def test_a_malformed_reply_is_rejected(
    shared: Shared, sample_images, expected, tiny_model, kind
):
    reply = b"{not json" if kind == "garbage" else _forged_reply(tiny_model, len(sample_images))
    await _survives(shared, "reply", sample_images, expected, reply=reply)


async def test_an_idle_instance_that_vanishes_is_replaced(shared: Shared, sample_images, expected):
    """No batch in flight: yapapi's health check notices, the pool replaces the instance."""
    backend, runtime = shared.backend, shared.runtime
    activities = len(runtime.activities)
    name = (await backend.status()).instances[0].name  # "local-provider-<activity number>"
    victim = runtime.activities[int(name.rsplit("-", 1)[1]) - 1]
    assert not victim.dead
    victim.kill()  # the provider disappears
    await wait_until(lambda: len(runtime.activities) > activities, 30, "a replacement")
    await wait_running(backend, 2)
    assert_same(await backend.classify(list(sample_images), top_k=3), expected)
