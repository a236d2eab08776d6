"""Servers' heads on Golem, through the local exe-unit harness: real ClassifierService
scripts, the real provider daemon and client, heads uploaded on demand."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import BackendBusy, BackendUnavailable, ModelRef, Prediction
from golem_backend.golem.backend import GolemBackend
from golem_backend.golem.batch import ClassifyBatch
from golem_backend.golem.model_store import ModelArtifact, ModelStore
from golem_backend.golem.protocol import ProtocolError, parse_classify_reply
from golem_backend.golem.service import ServiceConfig
from tests.golem_backend.flower_heads import Head, copy_dataset, held_out, train_head
from tests.golem_backend.harness import FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
    wait_until,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODULE = {"scope": "module", "loop_scope": "module"}
DEFAULT_LABELS = ("bluebell", "buttercup", "coltsfoot")
HEAD_LABELS = (
    ("daisy", "dandelion"),
    ("iris", "pansy", "tulip"),
    ("sunflower", "snowdrop"),
    ("crocus", "daffodil", "windflower"),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from provider.train import train_model

    root = tmp_path_factory.mktemp("golem-heads")
    cache = root / "features.h5"
    dataset = copy_dataset(root / "dataset", DEFAULT_LABELS)
    # as the backends train it (golem_backend.child): the default dataset is the shared base
    default = train_model(
        dataset, root / "default.model", cache=cache, folds=0, shared_base=dataset
    )
    heads = [train_head(root / f"guild-{i}", labels, cache) for i, labels in enumerate(HEAD_LABELS)]
    keeper = train_head(root / "keeper", ("iris", "pansy"), cache, defaults=dataset)
    other = copy_dataset(root / "other-defaults", ("daisy", "dandelion"))
    foreign = train_head(root / "foreign", ("iris", "pansy"), cache, defaults=other)
    return {
        "root": root,
        "default": Path(default.model_path),
        "heads": heads,
        "keeper": keeper,
        "foreign": foreign,
    }


class Shared:
    def __init__(self, backend: GolemBackend, runtime: LocalRuntime) -> None:
        self.backend, self.runtime = backend, runtime


@pytest_asyncio.fixture(**MODULE)
async def shared(tmp_path_factory, world) -> AsyncIterator[Shared]:
    settings = golem_settings(
        tmp_path_factory.mktemp("golem-heads-backend"), golem_instances=2, golem_batch_size=6
    )
    install_model(world["default"], settings)
    backend, runtime = make_backend(settings, FaultPlan())
    await backend.start()
    await wait_running(backend, 2)
    yield Shared(backend, runtime)
    await backend.stop()
    assert runtime.processes() == [], "provider processes left behind"


def uploads(shared: Shared) -> list[dict[str, int]]:
    """Per instance: how many times each head was uploaded to it."""
    assert shared.backend._dispatcher is not None
    return [dict(w.service.heads.uploads) for w in shared.backend._dispatcher.pool.workers]


async def test_every_request_is_answered_by_its_own_head(shared, world):
    heads: list[Head] = world["heads"]  # type: ignore[assignment]
    status = await shared.backend.status()
    for _ in range(3):  # rounds: a head is uploaded to an instance once, then reused
        jobs = [(None, DEFAULT_LABELS, held_out("bluebell", 1))]
        jobs += [(h.ref, h.labels, held_out(h.labels[0], 1)) for h in heads]
        answers = await asyncio.gather(
            *(
                shared.backend.classify(images, model=ref, tenant="guild:1")
                for ref, _, images in jobs
            )
        )
        for (ref, labels, _), outcomes in zip(jobs, answers, strict=True):
            [outcome] = outcomes
            assert isinstance(outcome, Prediction)
            assert outcome.model_id == (ref.model_id if ref else status.model_id)
            assert {s.label for s in outcome.top} <= set(labels)
    per_instance = uploads(shared)
    assert all(n == 1 for counts in per_instance for n in counts.values())
    assert {m for counts in per_instance for m in counts} == {h.ref.model_id for h in heads}


async def test_a_corrupt_or_missing_head_is_refused_before_any_upload(shared, world, tmp_path):
    heads: list[Head] = world["heads"]  # type: ignore[assignment]
    before = uploads(shared)
    data = bytearray(heads[0].ref.path.read_bytes())
    data[-50] ^= 0xFF
    bad = ModelRef("0badbadbad00", tmp_path / "0badbadbad00.model")
    bad.path.write_bytes(bytes(data))
    with pytest.raises(BackendUnavailable, match="checksum"):
        await shared.backend.classify(held_out("daisy", 1), model=bad)
    with pytest.raises(BackendUnavailable, match="missing"):
        await shared.backend.classify(held_out("daisy", 1), model=ModelRef("abc", tmp_path / "x"))
    wrong = ModelRef("aaaaaaaaaaaa", tmp_path / "aaaaaaaaaaaa.model")
    shutil.copy(heads[1].ref.path, wrong.path)
    with pytest.raises(BackendUnavailable, match=f"holds model {heads[1].ref.model_id}"):
        await shared.backend.classify(held_out("daisy", 1), model=wrong)
    assert uploads(shared) == before


async def test_one_tenant_holds_at_most_half_the_golem_queue(world, tmp_path):
    settings = golem_settings(tmp_path / "data", golem_queue_size=4)
    install_model(world["default"], settings)
    backend, _ = make_backend(settings, FaultPlan())
    await backend.start()  # no instance is waited for: requests stay queued
    try:
        image = held_out("daisy", 1)
        waiting = [asyncio.create_task(backend.classify(image, tenant="guild:a")) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(BackendBusy, match="This server is sending too many requests"):
            await backend.classify(image, tenant="guild:a")
        other = asyncio.create_task(backend.classify(image, tenant="guild:b"))
        await asyncio.sleep(0.05)
        assert not other.done()  # queued, not refused
    finally:
        await backend.stop()
    for task in [*waiting, other]:
        with pytest.raises(BackendUnavailable):
            await task


# --- one instance, driven directly: provider-side LRU of head files -------------------------


async def test_an_instance_keeps_its_most_recent_heads_and_reuploads_evicted_ones(world):
    heads: list[Head] = world["heads"]  # type: ignore[assignment]
    default = Path(world["default"])  # type: ignore[arg-type]
    from provider.model import Classifier

    model = Classifier.load(default)
    data = await asyncio.to_thread(default.read_bytes)
    store = ModelStore(ModelArtifact(data, model.model_id, model.labels))
    runtime = LocalRuntime(FaultPlan())
    cluster = await runtime.open_cluster(
        1,
        [{"config": ServiceConfig(store=store, script_timeout_s=8, head_files=2)}],
        datetime.now(UTC) + timedelta(hours=1),
    )
    service = cluster.instances[0]
    try:
        await wait_until(lambda: service.state.value == "running", 60, "start")
        artifacts = [
            ModelArtifact(h.ref.path.read_bytes(), h.ref.model_id, h.labels) for h in heads[:3]
        ]

        async def ask(*picks: int | None) -> list[object]:
            future = asyncio.get_running_loop().create_future()
            chosen = [artifacts[i] if i is not None else None for i in picks]
            images = [held_out(a.labels[0] if a else "bluebell", 1)[0] for a in chosen]
            service.send_message_nowait(ClassifyBatch("batch-t", images, 2, future, chosen))
            return await asyncio.wait_for(future, 30)

        # The uploaded model first, then a head, in one batch (the head list starts "-,").
        default_first = await ask(None, 0)
        assert [o.model_id for o in default_first] == [model.model_id, artifacts[0].model_id]  # type: ignore[attr-defined]

        work = Path(runtime.activities[0].root) / "work"
        for picks in ((0, 1), (0,), (2,), (1,)):  # head 0 is on the provider already
            outcomes = await ask(*picks)
            for outcome, i in zip(outcomes, picks, strict=True):
                assert isinstance(outcome, Prediction)
                assert outcome.model_id == artifacts[i].model_id
        ids = [a.model_id for a in artifacts]
        # head 1 was the least recent when head 2 came: removed, then uploaded again.
        assert service.heads.uploads == {ids[0]: 1, ids[1]: 2, ids[2]: 1}
        assert list(service.heads.files) == [ids[2], ids[1]]
        on_disk = sorted(p.stem for p in work.glob("*.model"))
        assert on_disk == sorted([ids[1], ids[2]])
    finally:
        await runtime.close()


# --- reply validation against each head's own labels ----------------------------------------


def _reply(model_id: str, labels: list[str], results: list[dict[str, object]]) -> bytes:
    import json

    return json.dumps(
        {"ok": True, "version": 1, "model_id": model_id, "labels": labels, "results": results}
    ).encode()


def _prediction(label: str, model_id: str) -> dict[str, object]:
    return {
        "label": label,
        "confidence": 0.9,
        "top": [{"label": label, "confidence": 0.9}],
        "model_id": model_id,
        "ood_score": 0.1,
    }


async def test_a_reply_is_checked_against_each_images_own_head():
    default, head = ("m-default", ["a", "b"]), ("m-head", ["x", "y"])
    heads = [None, head]
    good = _reply(*default, [_prediction("a", "m-default"), _prediction("x", "m-head")])
    outcomes = parse_classify_reply(
        good, n_images=2, top_k=1, model_id=default[0], labels=default[1], heads=heads
    )
    assert [o.model_id for o in outcomes] == ["m-default", "m-head"]  # type: ignore[union-attr]
    for wrong in (
        [_prediction("a", "m-default"), _prediction("a", "m-head")],  # default's label
        [_prediction("a", "m-default"), _prediction("x", "m-default")],  # another model
        [_prediction("x", "m-head"), _prediction("x", "m-head")],  # head answers default's
        [
            _prediction("a", "m-default"),
            {k: v for k, v in _prediction("x", "m-head").items() if k != "model_id"},
        ],
    ):
        with pytest.raises(ProtocolError):
            parse_classify_reply(
                _reply(*default, wrong),
                n_images=2,
                top_k=1,
                model_id=default[0],
                labels=default[1],
                heads=heads,
            )


async def test_a_head_that_keeps_the_default_labels_uses_the_instances_shared_vectors(
    shared, world
):
    """A server that keeps the default labels: its head names the default dataset's open-set
    vectors instead of holding them; an instance attaches the ones of the default model it
    was given, once, for every such head."""
    from provider.artifact import read_header

    keeper: Head = world["keeper"]  # type: ignore[assignment]
    meta, _ = read_header(keeper.ref.path)
    assert meta["shared"]["images"] == 3 * 8
    images = held_out("iris", 1) + held_out("bluebell", 1)
    outcomes = await shared.backend.classify(images, model=keeper.ref, tenant="guild:7")
    assert all(isinstance(o, Prediction) for o in outcomes)
    assert [o.model_id for o in outcomes] == [keeper.ref.model_id] * 2  # type: ignore[union-attr]
    assert outcomes[0].label == "iris"  # type: ignore[union-attr]
    assert outcomes[1].label in ("bluebell", "unknown")  # type: ignore[union-attr]


async def test_a_head_naming_vectors_the_instances_lack_is_refused_before_upload(shared, world):
    """Trained beside another default dataset than the default model the instances serve:
    refused by the requestor with the remedy, nothing uploaded; every other head served."""
    foreign: Head = world["foreign"]  # type: ignore[assignment]
    before = uploads(shared)
    with pytest.raises(BackendUnavailable, match=r"another default dataset.*retrain it"):
        await shared.backend.classify(held_out("iris", 1), model=foreign.ref, tenant="guild:8")
    assert uploads(shared) == before
    heads: list[Head] = world["heads"]  # type: ignore[assignment]
    [outcome] = await shared.backend.classify(held_out("daisy", 1), model=heads[0].ref)
    assert isinstance(outcome, Prediction) and outcome.model_id == heads[0].ref.model_id
