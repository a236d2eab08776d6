"""LocalBackend serving many models at once: real worker processes, real heads on disk.

Three models share the CNN backbone: the default model (bluebell/buttercup/coltsfoot) and
two servers' heads with labels of their own, all trained from the flowers shipped with the
package, so these tests need no external data.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import (
    BackendBusy,
    BackendTimeout,
    BackendUnavailable,
    Example,
    ModelRef,
    Prediction,
    TrainingSet,
    create_backend,
)
from golem_backend.local.backend import LocalBackend
from golem_backend.settings import BackendSettings
from tests.golem_backend.flower_heads import (
    FLOWERS,
    PER_LABEL,
    Head,
    copy_dataset,
    flower_files,
    held_out,
    train_head,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODULE = {"scope": "module", "loop_scope": "module"}
DEFAULT_LABELS = ("bluebell", "buttercup", "coltsfoot")
HEAD_B_LABELS = ("daisy", "dandelion", "iris")
HEAD_C_LABELS = ("lilyvalley", "pansy", "snowdrop", "sunflower")


def make_settings(data_dir: Path, dataset: Path, **overrides: object) -> BackendSettings:
    values: dict[str, object] = {
        "backend": "local",
        "data_dir": data_dir,
        "dataset_dir": dataset,
        "local_workers": 1,
        "queue_size": 64,
        "request_timeout_s": 60.0,
        "local_batch_size": 16,
        "local_batch_wait_ms": 300.0,  # hold batches open: concurrent requests share one
    }
    values.update(overrides)
    return BackendSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("heads")
    dataset = copy_dataset(root / "default-dataset", DEFAULT_LABELS)
    cache = root / "data" / "features.h5"
    b = train_head(root / "guild-b", HEAD_B_LABELS, cache)
    c = train_head(root / "guild-c", HEAD_C_LABELS, cache)
    return {"root": root, "dataset": dataset, "b": b, "c": c}


@pytest_asyncio.fixture(**MODULE)
async def backend(world: dict[str, object]) -> AsyncIterator[LocalBackend]:
    root = world["root"]
    assert isinstance(root, Path)
    settings = make_settings(root / "data", world["dataset"])  # type: ignore[arg-type]
    backend = create_backend(settings)
    assert isinstance(backend, LocalBackend)
    async with backend:
        yield backend


# --- one batch, many heads ------------------------------------------------------------------


async def test_a_batch_mixing_heads_answers_each_image_with_its_own_head(backend, world):
    b, c = world["b"], world["c"]
    assert isinstance(b, Head) and isinstance(c, Head)
    status = await backend.status()
    default_id = status.model_id
    assert set(status.labels) == set(DEFAULT_LABELS)
    before = backend.batches_dispatched
    requests = [
        (None, DEFAULT_LABELS, held_out("buttercup")),
        (b.ref, HEAD_B_LABELS, held_out("daisy")),
        (c.ref, HEAD_C_LABELS, held_out("sunflower")),
        (b.ref, HEAD_B_LABELS, held_out("iris")),
    ]
    answers = await asyncio.gather(
        *(backend.classify(images, top_k=3, model=ref) for ref, _, images in requests)
    )
    # One worker, a 300 ms batch window: the four requests (8 images) shared one batch.
    assert backend.batches_dispatched - before == 1
    for (ref, labels, _), outcomes in zip(requests, answers, strict=True):
        want_id = ref.model_id if ref is not None else default_id
        for outcome in outcomes:
            assert isinstance(outcome, Prediction)
            assert outcome.model_id == want_id
            assert {s.label for s in outcome.top} <= set(labels)
            assert len(outcome.top) == 3
    # Each head recognises its own subject (held-out photos, a confident majority).
    tops = [[o.top[0].label for o in outcomes] for outcomes in answers]  # type: ignore[union-attr]
    assert tops[0].count("buttercup") >= 1
    assert tops[1].count("daisy") >= 1
    assert tops[2].count("sunflower") >= 1
    assert tops[3].count("iris") >= 1


async def test_a_missing_head_file_is_a_clear_error(backend, world, tmp_path):
    gone = ModelRef("0123456789ab", tmp_path / "0123456789ab.model")
    with pytest.raises(BackendUnavailable, match=r"0123456789ab.*missing"):
        await backend.classify(held_out("daisy", 1), model=gone)


async def test_a_corrupt_head_fails_its_request_only(backend, world, tmp_path):
    b = world["b"]
    assert isinstance(b, Head)
    data = bytearray(b.ref.path.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the payload
    bad = ModelRef(b.ref.model_id + "x", tmp_path / "corrupt.model")
    bad.path.write_bytes(bytes(data))
    garbage = ModelRef("feedfeedfeed", tmp_path / "garbage.model")
    garbage.path.write_bytes(b"not a model at all" * 100)
    good, corrupt, junk = await asyncio.gather(
        backend.classify(held_out("dandelion", 1), model=b.ref),
        backend.classify(held_out("dandelion", 1), model=bad),
        backend.classify(held_out("dandelion", 1), model=garbage),
        return_exceptions=True,
    )
    assert isinstance(good, list) and isinstance(good[0], Prediction)
    assert good[0].model_id == b.ref.model_id
    assert isinstance(corrupt, BackendUnavailable)
    assert "checksum" in corrupt.message and bad.model_id in corrupt.message
    assert isinstance(junk, BackendUnavailable)
    assert "not a model file" in junk.message


async def test_a_head_file_holding_another_model_is_refused(backend, world, tmp_path):
    b = world["b"]
    assert isinstance(b, Head)
    wrong = ModelRef("aaaaaaaaaaaa", tmp_path / "aaaaaaaaaaaa.model")
    shutil.copy(b.ref.path, wrong.path)
    with pytest.raises(BackendUnavailable, match=f"holds model {b.ref.model_id}"):
        await backend.classify(held_out("daisy", 1), model=wrong)


# --- retraining a server's head -------------------------------------------------------------


def taught(labels: tuple[str, ...], count: int = 6) -> tuple[Example, ...]:
    return tuple(Example(p, lb) for lb in labels for p in flower_files(lb, 0, count))


async def test_retrain_with_a_training_set_writes_a_head_and_keeps_the_default(
    backend, world, tmp_path
):
    before = await backend.status()
    out_dir = tmp_path / "guild-42"
    report = await backend.retrain(
        training_set=TrainingSet(out_dir, taught(("tulip", "windflower")), include_default=False),
        tenant="guild:42",
    )
    path = Path(str(report.extra["model_path"]))
    assert path == out_dir / f"{report.model_id}.model"
    assert await asyncio.to_thread(path.is_file)
    assert [p.name for p in out_dir.iterdir()] == [path.name]  # no temporary left behind
    assert report.labels == ("tulip", "windflower")
    assert report.extra["label_counts"] == {"tulip": 6, "windflower": 6}
    recall = report.extra["per_label_recall"]
    assert isinstance(recall, dict) and set(recall) == {"tulip", "windflower"}
    assert all(0.0 <= v <= 1.0 for v in recall.values())
    quality = report.extra["quality"]
    assert isinstance(quality, dict)
    assert quality["labels"] == ["tulip", "windflower"]  # no default labels: all of them
    assert 0.0 <= quality["accuracy"] <= 1.0 and 0.0 <= quality["unknown_rate"] <= 1.0
    assert 0.0 <= quality["ece"] <= 1.0 and quality["temperature"] == 1.0  # < 10 photos
    assert set(quality["per_label"]) == {"tulip", "windflower"}
    assert quality["per_label"]["tulip"]["images"] == 6
    assert quality["hints"] == [
        {"label": "tulip", "add": 4, "reason": "only 6 photos"},
        {"label": "windflower", "add": 4, "reason": "only 6 photos"},
    ]
    assert set(quality["thresholds"]) == {"tulip", "windflower"}
    assert quality["head_bytes"] > 0
    after = await backend.status()
    assert (after.model_id, after.labels) == (before.model_id, before.labels)
    [outcome] = await backend.classify(held_out("tulip", 1), model=ModelRef(report.model_id, path))
    assert isinstance(outcome, Prediction)
    assert outcome.model_id == report.model_id and outcome.top[0].label in report.labels


async def test_retrain_with_the_default_dataset_adds_its_labels(backend, world, tmp_path):
    report = await backend.retrain(
        training_set=TrainingSet(tmp_path / "g", taught(("tulip",)), include_default=True),
        tenant="guild:43",
    )
    assert set(report.labels) == set(DEFAULT_LABELS) | {"tulip"}
    counts = report.extra["label_counts"]
    assert counts == {**dict.fromkeys(DEFAULT_LABELS, PER_LABEL), "tulip": 6}
    assert set(report.extra["per_label_recall"]) == set(report.labels)  # type: ignore[arg-type]
    # what the server can expect of its own label, not of the default ones beside it
    quality = report.extra["quality"]
    assert isinstance(quality, dict) and quality["labels"] == ["tulip"]
    assert set(quality["per_label"]) == {"tulip"}
    assert quality["hints"] == [{"label": "tulip", "add": 4, "reason": "only 6 photos"}]
    assert set(quality["thresholds"]) == set(report.labels)  # one per label, defaults too


async def test_the_default_retrain_reports_per_label_recall(backend):
    report = await backend.retrain()
    assert set(report.extra["per_label_recall"]) == set(DEFAULT_LABELS)  # type: ignore[arg-type]
    assert report.extra["label_counts"] == dict.fromkeys(DEFAULT_LABELS, PER_LABEL)


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ((), "Only 0 label"),
        (taught(("tulip",)), "Only 1 label"),
        ((*taught(("tulip",)), Example(FLOWERS / "daisy" / "x.jpg", "unknown")), "'unknown'"),
        ((*taught(("tulip",)), Example(FLOWERS / "README.md", "bad\nlabel")), "not a usable"),
        ((*taught(("tulip",)), Example(FLOWERS / "README.md", "x" * 500)), "not a usable"),
    ],
)
async def test_a_broken_training_set_is_a_clear_error(backend, tmp_path, examples, message):
    before = await backend.status()
    with pytest.raises(BackendUnavailable, match=f"Retraining failed: .*{message}") as caught:
        await backend.retrain(
            training_set=TrainingSet(tmp_path / "g", examples, include_default=False),
            tenant="guild:44",
        )
    assert "current model is still in use" in caught.value.message
    assert not list((tmp_path / "g").glob("*.model"))
    assert (await backend.status()).model_id == before.model_id


async def test_unreadable_taught_images_are_skipped_and_listed(backend, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated jpeg")
    examples = (
        *taught(("tulip", "windflower")),
        Example(broken, "tulip"),
        Example(tmp_path / "does-not-exist.jpg", "tulip"),
    )
    report = await backend.retrain(
        training_set=TrainingSet(tmp_path / "g", examples, include_default=False),
        tenant="guild:45",
    )
    assert report.n_images == 12
    assert len(report.skipped) == 2
    assert any("broken.jpg" in s for s in report.skipped)
    assert any("does-not-exist.jpg" in s for s in report.skipped)


async def test_an_out_dir_that_cannot_be_created_is_a_clear_error(backend, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    with pytest.raises(BackendUnavailable, match="cannot be created"):
        await backend.retrain(
            training_set=TrainingSet(blocker / "g", taught(("tulip", "iris")), False),
            tenant="guild:46",
        )


async def test_a_retrain_past_its_deadline_times_out_and_leaves_no_process(world, tmp_path):
    settings = make_settings(
        tmp_path / "data", world["dataset"], retrain_timeout_s=0.5, local_batch_wait_ms=2.0
    )
    shutil.copytree(Path(world["root"]) / "data", tmp_path / "data")  # type: ignore[arg-type]
    async with create_backend(settings) as backend:
        await backend.classify(held_out("daisy", 1))  # warm
        # Photos no test extracted yet: 60 forward passes take seconds, far past 0.5 s.
        uncached = taught(("cowslip", "crocus", "fritillary"), 20)
        with pytest.raises(BackendTimeout, match="RETRAIN_TIMEOUT_S"):
            await backend.retrain(
                training_set=TrainingSet(tmp_path / "g", uncached, False), tenant="guild:47"
            )
        names = [p.name for p in multiprocessing.active_children()]
        assert "classifier-training" not in names
        assert not list((tmp_path / "g").glob("*.model"))
        [outcome] = await backend.classify(held_out("daisy", 1))  # still serving
        assert isinstance(outcome, Prediction)


# --- memory-bounded head cache in the workers, fairness ------------------------------------


async def test_workers_keep_heads_within_head_cache_mb(world, tmp_path):
    root = Path(world["root"])  # type: ignore[arg-type]
    heads = [world["b"], world["c"]]
    for labels in (("tulip", "windflower"), ("crocus", "daffodil")):
        heads.append(train_head(tmp_path / labels[0], labels, root / "data" / "features.h5"))
    shutil.copytree(root / "data", tmp_path / "data")
    settings = make_settings(
        tmp_path / "data", world["dataset"], head_cache_mb=1, local_batch_wait_ms=2.0
    )
    async with create_backend(settings) as backend:
        assert isinstance(backend, LocalBackend)
        for _ in range(2):
            for head in heads:
                assert isinstance(head, Head)
                [outcome] = await backend.classify(held_out(head.labels[0], 1), model=head.ref)
                assert isinstance(outcome, Prediction) and outcome.model_id == head.ref.model_id
        [stats] = await backend.head_cache_stats()
    assert stats["max_bytes"] == 2**20
    assert 0 < stats["bytes"] <= stats["max_bytes"]
    assert 1 <= stats["heads"] < len(heads)  # not all four fit in 1 MB ...
    assert stats["evictions"] > 0 and stats["loads"] > len(heads)  # ... so some came back


async def test_a_flood_from_one_server_does_not_starve_another(backend, world):
    b = world["b"]
    assert isinstance(b, Head)
    finished: list[str] = []

    async def ask(tenant: str, ref: ModelRef | None, label: str) -> object:
        try:
            result = await backend.classify(held_out(label, 1), model=ref, tenant=tenant)
        except Exception as exc:
            return exc
        finished.append(tenant)
        return result

    flood = [asyncio.create_task(ask("guild:flood", None, "bluebell")) for _ in range(60)]
    await asyncio.sleep(0)  # the flood is queued first
    calm = [asyncio.create_task(ask("guild:calm", b.ref, "daisy")) for _ in range(4)]
    flood_results = await asyncio.gather(*flood)
    calm_results = await asyncio.gather(*calm)
    refused = [r for r in flood_results if isinstance(r, BackendBusy)]
    assert len(refused) == 60 - 32  # the flood got half of the 64-image queue, no more
    assert all("This server is sending too many images" in r.message for r in refused)
    for result in calm_results:  # the other server was served in full, by its own head
        assert isinstance(result, list) and isinstance(result[0], Prediction)
        assert result[0].model_id == b.ref.model_id
    # ... and early: at most the flood's batch already running (16 images) is ahead of it;
    # then batches take turns (first come, first served would put it behind all 32).
    last_calm = max(i for i, tenant in enumerate(finished) if tenant == "guild:calm")
    assert last_calm < 16 + 2 * 4
