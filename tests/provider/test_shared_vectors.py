"""The default dataset's open-set vectors, shared by every head that keeps the default
labels: named in the model file, held once per process, refused cleanly when missing."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from provider import shared_vectors
from provider.artifact import read_header
from provider.dataset import DatasetItem
from provider.errors import ModelError
from provider.heads import HeadCache, HeadKey, head_footprint
from provider.model import Classifier
from provider.ood import OpenSetScorer
from provider.shared_vectors import SharedBank, shared_rows
from provider.train import train_model
from tests.provider.conftest import packaged_images

TAUGHT = {"sunflower": "sun", "tigerlily": "lily"}


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    shared_vectors.clear()
    yield
    shared_vectors.clear()


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """60 rows of 3 labels (20 each: the 'base') + 2 labels of 4 rows, 8 + 4 columns."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 12)) * 3
    y = np.repeat(np.arange(5), [20, 20, 20, 4, 4])
    return (centres[y] + rng.normal(size=(len(y), 12))).astype(np.float32), y


def _bank_of(scorer: OpenSetScorer, rows: np.ndarray, key: str, names: tuple[str, ...]):
    assert scorer.bank_ is not None and scorer.labels_ is not None
    base_labels = tuple(sorted({names[i] for i in scorer.labels_[rows]}))
    index = {name: i for i, name in enumerate(base_labels)}
    return SharedBank(
        key,
        base_labels,
        np.array([index[names[i]] for i in scorer.labels_[rows]], np.int16),
        np.ascontiguousarray(scorer.bank_[rows].T, dtype=np.float32),
    )


def test_a_scorer_that_shares_rows_answers_as_if_it_held_them():
    X, y = _synthetic()
    names = ("a", "b", "c", "mine", "yours")
    full = OpenSetScorer(8).fit(X, y, 5)
    part = OpenSetScorer(8).fit(X, y, 5)
    rows = y < 3
    bank = _bank_of(part, rows, "base.k", names)
    part.share(rows, "base.k", names)
    assert part.n_images == 8 and part.shared_images_ == 60
    queries = np.random.default_rng(1).normal(size=(40, 12)).astype(np.float32) * 3
    with pytest.raises(RuntimeError, match="not attached"):
        part.score(queries)
    part.attach(bank)
    for q in (queries, X):
        (s_full, l_full), (s_part, l_part) = full.score(q), part.score(q)
        np.testing.assert_allclose(s_part, s_full, rtol=1e-6)
        np.testing.assert_array_equal(l_part, l_full)
    # pickled: its own rows only, never the shared ones, and it must be attached again
    again = pickle.loads(pickle.dumps(part))
    assert again.n_images == 8 and again._shared is None
    assert len(pickle.dumps(part)) < len(pickle.dumps(full)) / 3
    with pytest.raises(RuntimeError, match="not attached"):
        again.score(queries)


def test_attaching_other_vectors_is_refused():
    X, y = _synthetic()
    names = ("a", "b", "c", "mine", "yours")
    scorer = OpenSetScorer(8).fit(X, y, 5)
    rows = y < 3
    right = _bank_of(scorer, rows, "base.k", names)
    scorer.share(rows, "base.k", names)
    wrong_key = SharedBank("other.k", right.labels, right.row_labels, right.vectors_t)
    fewer = SharedBank("base.k", right.labels, right.row_labels[:-1], right.vectors_t[:, :-1])
    strange = SharedBank("base.k", ("a", "b", "zebra"), right.row_labels, right.vectors_t)
    for bank in (wrong_key, fewer, strange):
        with pytest.raises(ValueError, match=r"base\.k|other\.k"):
            scorer.attach(bank)
    with pytest.raises(ValueError):
        OpenSetScorer(8).fit(X, y, 5).share(np.ones(len(y), bool), "k", names)


def test_the_base_rows_are_found_by_content_and_only_when_all_are_there():
    base = (("d1", "rose"), ("d2", "rose"), ("d3", "tulip"))
    digests = ["d0", "d1", "d2", "d3", "d3"]
    labels = ["mine", "rose", "rose", "tulip", "tulip"]
    mask = shared_rows(digests, labels, base)
    assert mask is not None
    assert mask.tolist() == [False, True, True, True, False]  # a duplicate stays its own
    assert shared_rows(digests[:3], labels[:3], base) is None  # one base photo missing
    assert shared_rows(["d1", "d2", "d3"], ["rose", "rose", "rose"], base) is None  # relabelled
    assert shared_rows(digests, labels, ()) is None


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small default dataset: 4 flowers x 8 photos (files 60-67)."""
    root = tmp_path_factory.mktemp("base") / "defaults"
    for flower in ("bluebell", "crocus", "daisy", "iris"):
        (root / flower).mkdir(parents=True)
        for src in packaged_images(flower, 60, 68):
            (root / flower / src.name).symlink_to(src)
    return root


def _examples(per_label: int = 5) -> list[DatasetItem]:
    return [
        DatasetItem(path, name)
        for flower, name in TAUGHT.items()
        for path in packaged_images(flower, 0, per_label)
    ]


def _queries() -> list[Path]:
    return [p for flower in ("sunflower", "tigerlily", "daisy", "pansy") for p in
            packaged_images(flower, 40, 44)]  # fmt: skip


def test_a_head_with_the_default_labels_names_them_and_answers_the_same(
    tmp_path, base, shared_features_cache
):
    """The head stores its 10 taught rows, not the 32 default ones; its file and its
    footprint in a head cache shrink; every answer is the one of a head holding them."""
    common = {"examples": _examples(), "cache": shared_features_cache, "folds": 0}
    shared = train_model(base, tmp_path / "shared.clf", shared_base=base, **common)
    whole = train_model(base, tmp_path / "whole.clf", shared_base=tmp_path / "none", **common)
    meta, _ = read_header(tmp_path / "shared.clf")
    assert meta["format"] == 3
    assert meta["shared"]["images"] == 32
    assert meta["shared"]["key"].startswith(meta["shared"]["dataset_fingerprint"] + ".cnn@")
    assert "shared" not in whole.metadata
    assert shared.model_id != whole.model_id
    assert meta["ood"]["thresholds"] == whole.metadata["ood"]["thresholds"]
    size_shared = (tmp_path / "shared.clf").stat().st_size
    assert size_shared < (tmp_path / "whole.clf").stat().st_size - 32 * 2984 * 2 * 0.9
    a, b = Classifier.load(tmp_path / "shared.clf"), Classifier.load(tmp_path / "whole.clf")
    assert head_footprint(a) < head_footprint(b) - 32 * 2984 * 4 * 0.9
    for x, y in zip(a.classify_sources(_queries()), b.classify_sources(_queries()), strict=True):
        assert (x.label, x.top) == (y.label, y.top)
        assert x.ood_score == pytest.approx(y.ood_score, rel=1e-5)


def test_every_head_in_a_process_uses_one_copy_provided_by_the_default_model(
    tmp_path, base, shared_features_cache
):
    """The default model (trained on its dataset folder alone, whatever the folder: as
    `imageclassifier train` does) provides the vectors; heads of other servers attach that
    very array, and nothing is computed again."""
    default = train_model(base, tmp_path / "default.clf", cache=shared_features_cache, folds=0)
    key = default.metadata["ood"]["provides"]
    heads = []
    for i, per_label in enumerate((4, 6)):
        result = train_model(
            base,
            tmp_path / f"h{i}.clf",
            examples=_examples(per_label),
            cache=shared_features_cache,
            folds=0,
            shared_base=base,
        )
        assert result.metadata["shared"]["key"] == key
        heads.append(result)
    shared_vectors.clear()  # a fresh process: only the default model is there
    backbone = Classifier.load(tmp_path / "default.clf")
    cache = HeadCache(1 << 30)
    loaded = [cache.get(HeadKey(h.model_id, str(h.model_path))) for h in heads]
    provided = shared_vectors.registered(key)
    assert provided is not None
    assert provided.vectors_t is backbone.artifact.ood.working_vectors()
    assert all(h.artifact.ood._shared is provided for h in loaded)
    answers = [h.classify_sources(_queries()[:4]) for h in loaded]
    assert all(p.label == "sun" for p in answers[0] + answers[1])
    # the default model loaded again (a reload): it scores with the registered copy
    again = Classifier.load(tmp_path / "default.clf")
    assert again.artifact.ood.working_vectors() is provided.vectors_t
    first, second = (m.classify_sources(_queries()[8:12]) for m in (backbone, again))
    assert [p.ood_score for p in first] == [p.ood_score for p in second]


def test_vectors_are_computed_once_from_a_matching_base_else_refused(
    tmp_path, base, shared_features_cache
):
    head = train_model(
        base,
        tmp_path / "h.clf",
        examples=_examples(),
        cache=shared_features_cache,
        folds=0,
        shared_base=base,
    )
    key = head.metadata["shared"]["key"]
    shared_vectors.clear()  # a process without the default model, nor the base folder
    with pytest.raises(ModelError, match=r"shared vectors .* not available here.*retrain"):
        Classifier.load(tmp_path / "h.clf")
    cache = HeadCache(1 << 30)
    with pytest.raises(ModelError, match="retrain"):
        cache.get(HeadKey(head.model_id, str(head.model_path)))
    assert len(cache) == 0
    shared_vectors.add_base(tmp_path / "missing")  # not there: skipped
    shared_vectors.add_base(base)
    shared_vectors.set_feature_cache(shared_features_cache)
    model = Classifier.load(tmp_path / "h.clf")
    assert shared_vectors.registered(key) is model.artifact.ood._shared
    assert {p.label for p in model.classify_sources(_queries()[:4])} == {"sun"}


def test_a_model_of_part_of_the_base_shares_nothing_and_provides_its_own_rows(
    tmp_path, base, shared_features_cache
):
    """Every model holding all its rows says it provides them (by content: however its
    photos came in); the registry holds a loaded model's vectors only while it lives."""
    import gc

    part = [DatasetItem(p, "daisy") for p in sorted((base / "daisy").iterdir())[:5]]
    part += _examples()
    result = train_model(
        None, tmp_path / "p.clf", examples=part, cache=shared_features_cache, folds=0,
        shared_base=base,
    )  # fmt: skip
    assert "shared" not in result.metadata
    key = result.metadata["ood"]["provides"]
    assert key.split(".", 1)[0] == result.metadata["dataset"]["fingerprint"]
    model = Classifier.load(tmp_path / "p.clf")
    assert model.artifact.ood.n_images == 15
    assert model.artifact.ood.bank_ is not None  # offered, not converted before use
    assert shared_vectors.registered(key) is not None  # made into a bank when named
    del model
    gc.collect()
    assert shared_vectors.registered(key) is None  # a head evicted from a cache is freed
    unused = Classifier.load(tmp_path / "p.clf")
    assert key in shared_vectors._offers
    del unused
    gc.collect()
    assert key not in shared_vectors._offers  # nothing is left of a dropped model


def test_one_code_path_with_shared_vectors(tmp_path, base, shared_features_cache):
    """A folder holding the default labels beside the taught ones makes the model a
    server's retrain makes (same id): the shared rows are found by content."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for flower in base.iterdir():
        (folder / flower.name).symlink_to(flower)
    for item in _examples():
        (folder / item.label).mkdir(exist_ok=True)
        (folder / item.label / item.path.name).symlink_to(item.path)
    common = {"cache": shared_features_cache, "folds": 0, "shared_base": base}
    a = train_model(folder, tmp_path / "a.clf", **common)
    b = train_model(base, tmp_path / "b.clf", examples=_examples(), **common)
    assert "shared" in a.metadata
    assert a.model_id == b.model_id
    assert a.metadata["payload_sha256"] == b.metadata["payload_sha256"]
