"""The open-set rule (provider.ood), the cross-validated quality report and the calibrated
confidence (provider.quality): on synthetic embeddings where the answer is known, and on
real photos (packaged FLOWERS17 copy, ../shared animals4)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.previous_open_set import PreviousOpenSet
from provider.dataset import DatasetItem
from provider.features import get_extractor
from provider.model import Classifier
from provider.ood import (
    OpenSetScorer,
    label_thresholds,
    leave_one_out,
    nearest_distances,
    open_set_vectors,
)
from provider.quality import (
    RECOMMENDED_PHOTOS,
    calibrate,
    cross_validated_quality,
    expected_calibration_error,
    fit_temperature,
    photo_hint,
)
from provider.results import UNKNOWN
from provider.train import train_model
from tests.provider.conftest import SHARED_ANIMALS, packaged_images, require_shared

DIM = 32


def clusters(
    sizes: list[int], spread: list[float], seed: int = 0, draw: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Points around random unit centres (fixed by ``seed``), one cluster per label;
    ``draw`` picks another sample of points around the same centres."""
    centres = np.random.default_rng(seed).normal(size=(len(sizes), DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng([seed, draw])
    rows, labels = [], []
    for label, (n, s) in enumerate(zip(sizes, spread, strict=True)):
        rows.append(centres[label] + rng.normal(scale=s, size=(n, DIM)))
        labels += [label] * n
    return np.concatenate(rows).astype(np.float32), np.array(labels)


# ---------------------------------------------------------------- the rule, synthetic


def test_open_set_vectors_join_the_embedding_and_the_semantic_part():
    emb = np.array([[3.0, 4.0]], np.float32)
    sem = np.array([[1.0, 0.0, 0.0]], np.float32)  # sqrt of probabilities: unit
    v = open_set_vectors(np.hstack([emb, sem]), classifier_dim=2)
    expected = np.array([0.6, 0.8, 0.5, 0.0, 0.0]) / np.sqrt(1.25)
    np.testing.assert_allclose(v[0], expected, rtol=1e-6)
    # without a semantic part (the `global` extractor): the unit embedding
    np.testing.assert_allclose(open_set_vectors(emb, 2), [[0.6, 0.8]], rtol=1e-6)


def test_leave_one_out_skips_the_image_itself_and_its_duplicates():
    v = open_set_vectors(np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], np.float32), 2)
    loo = leave_one_out(nearest_distances(v, v))
    # rows 0 and 1 are one photo twice: each one's neighbour is row 2, not its copy
    np.testing.assert_allclose(loo, [0.2, 0.2, 0.2, 0.4], atol=1e-6)


def test_a_label_threshold_pools_the_labels_of_about_its_size():
    loo = np.array([0.1] * 80 + [0.5] * 5 + [0.6] * 5, np.float32)
    labels = np.array([0] * 80 + [1] * 5 + [2] * 5)
    t = label_thresholds(loo, labels, 3, quantile=0.5)
    assert t[0] == pytest.approx(0.1)  # 80 photos: only itself is within a factor 2
    assert t[1] == t[2] == pytest.approx(0.55)  # the two labels of 5 share one pool


def test_a_sparse_label_beside_a_dense_bank_keeps_its_own_photos():
    """The previous rule's failure (issue 18): 17 default labels of 80 tight photos set
    one threshold that 2 taught labels of 5 loose photos failed: every new photo of them
    was `unknown`. Per-label thresholds by label size answer them; points far from
    everything stay `unknown`, and so the dense labels keep their tight thresholds."""
    spread = [0.03] * 17 + [0.15] * 2
    X, y = clusters([80] * 17 + [5] * 2, spread, seed=1)
    fresh, fy = clusters([80] * 17 + [40] * 2, spread, seed=1, draw=1)
    taught = fy >= 17
    far = np.random.default_rng(5).normal(size=(50, DIM)).astype(np.float32)
    previous = PreviousOpenSet(X)
    assert np.all(previous.is_unknown(fresh[taught]))  # the failure this rule fixes
    scorer = OpenSetScorer(classifier_dim=DIM).fit(X, y)
    scores, nearest = scorer.score(fresh[taught])
    assert np.mean(OpenSetScorer.is_unknown(scores)) <= 0.05
    assert np.mean(nearest == fy[taught]) >= 0.95
    assert np.all(OpenSetScorer.is_unknown(scorer.score(far)[0]))
    assert scorer.thresholds_[17:].min() > 3 * scorer.thresholds_[:17].max()
    dense = scorer.score(fresh[~taught])[0]
    assert np.mean(OpenSetScorer.is_unknown(dense)) <= 0.02


@pytest.mark.parametrize("per_label", [3, 30])
def test_labels_of_3_and_of_30_photos(per_label):
    X, y = clusters([per_label] * 5, [0.1] * 5, seed=per_label)
    scorer = OpenSetScorer(classifier_dim=DIM).fit(X, y)
    fresh, fy = clusters([100] * 5, [0.1] * 5, seed=per_label, draw=1)
    scores, nearest = scorer.score(fresh)
    unknown = OpenSetScorer.is_unknown(scores)
    assert np.mean(unknown) <= (0.25 if per_label == 3 else 0.05)
    assert np.mean(nearest[~unknown] == fy[~unknown]) >= 0.95
    far = np.random.default_rng(9).normal(size=(50, DIM)).astype(np.float32)
    assert np.mean(OpenSetScorer.is_unknown(scorer.score(far)[0])) >= 0.95


def test_scores_of_training_images_and_scale():
    X, y = clusters([10, 10], [0.1, 0.1])
    scorer = OpenSetScorer(classifier_dim=DIM).fit(X, y)
    scores, nearest = scorer.score(X)
    assert scores.min() >= 0.0 and scores.max() < 0.01  # each row is its own neighbour
    np.testing.assert_array_equal(nearest, y)
    np.testing.assert_allclose(scorer.score(X[:3] * 7.5)[0], scores[:3], atol=1e-3)


def test_scorer_limits_and_pickling():
    with pytest.raises(ValueError, match="at least two training images"):
        OpenSetScorer(DIM).fit(np.ones((1, DIM)), np.array([0]))
    with pytest.raises(RuntimeError, match="not fitted"):
        OpenSetScorer(DIM).score(np.ones((1, DIM)))
    X, y = clusters([4, 4], [0.1, 0.1])
    scorer = OpenSetScorer(DIM).fit(X, y)
    fresh = pickle.dumps(scorer)
    scorer.score(X)  # the float32 working copy replaces the float16 vectors
    assert scorer.bank_ is None and scorer._bank_t is not None
    assert pickle.dumps(scorer) == fresh  # pickled exactly as before its first use
    restored = pickle.loads(fresh)
    assert restored._bank_t is None and restored.bank_.dtype == np.float16
    np.testing.assert_array_equal(restored.score(X)[0], scorer.score(X)[0])


# ---------------------------------------------------------------- calibration and hints


def test_expected_calibration_error():
    conf = np.array([0.9] * 10 + [0.6] * 10)
    correct = np.array([1] * 9 + [0] + [1] * 6 + [0] * 4)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.95), np.zeros(10)) == pytest.approx(0.95)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def test_temperature_scaling_keeps_the_ranking_and_softens():
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    soft = calibrate(p, 2.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)
    assert soft[0, 0] < 0.7 and np.argmax(soft[0]) == 0
    np.testing.assert_allclose(soft[1], [0.5, 0.5, 0.0], atol=1e-12)
    assert calibrate(p, 1.0) is p


def test_fitted_temperature_softens_an_overconfident_classifier_and_sharpens_a_shy_one():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 600)
    right = rng.random(600) < 0.6  # right 60% of the time ...
    guess = np.where(right, y, (y + 1) % 3)

    def answers(p_top: float) -> np.ndarray:
        proba = np.full((600, 3), (1 - p_top) / 2)
        proba[np.arange(600), guess] = p_top
        return proba

    loud = answers(0.95)  # ... while saying 95%
    t = fit_temperature(loud, y)
    assert t > 1.5
    shown = calibrate(loud, t).max(axis=1)
    assert expected_calibration_error(shown, right) < 0.05
    assert fit_temperature(answers(0.45), y) < 1.0  # says 45%: sharpened
    # label-balanced: 500 photos of one label do not outweigh 100 of two others
    many = np.r_[np.zeros(500, int), rng.integers(1, 3, 100)]
    assert 0.25 <= fit_temperature(np.full((600, 3), 1 / 3), many) <= 4.0


def test_photo_hints():
    assert photo_hint(3, None, None, None) == (RECOMMENDED_PHOTOS - 3, "only 3 photos")
    assert photo_hint(1, 1.0, 0.0, None) == (RECOMMENDED_PHOTOS - 1, "only 1 photo")
    add, why = photo_hint(20, 0.6, 0.0, "shirt")
    assert add == 10 and why == "recognised in 60% of tests, often taken for shirt"
    assert photo_hint(12, 0.95, 0.2, None) == (6, "20% of its photos answered unknown")
    assert photo_hint(12, 0.95, 0.0, None) == (0, "")


def test_cross_validated_quality_on_synthetic_labels():
    X, y = clusters([12, 12, 4], [0.1, 0.1, 0.1], seed=3)
    q = cross_validated_quality(X, y, ["a", "b", "c"], "lr", DIM, folds=4)
    assert q.folds == 4
    assert q.closed_accuracy == pytest.approx(1.0)
    assert 0.0 <= q.unknown_rate <= 0.25 and q.accuracy == pytest.approx(1 - q.unknown_rate)
    assert q.per_label["a"].images == 12 and q.per_label["a"].recall == 1.0
    assert q.per_label["c"].add_photos == RECOMMENDED_PHOTOS - 4
    assert q.summary(["a"])["images"] == 12
    assert q.temperature == 1.0  # label c has fewer than CALIBRATE_FROM photos
    X3, y3 = clusters([12, 12, 12], [0.1, 0.1, 0.1], seed=3)
    fitted = cross_validated_quality(X3, y3, ["a", "b", "c"], "lr", DIM, folds=4)
    assert fitted.temperature != 1.0 and 0.25 <= fitted.temperature <= 4.0
    # too few photos for folds: counts and hints only
    few = cross_validated_quality(X[:13], y[:13], ["a", "b"], "lr", DIM, folds=5)
    assert few.folds == 0 and few.accuracy is None
    assert few.per_label["b"].add_photos == RECOMMENDED_PHOTOS - 1


# ---------------------------------------------------------------- real photos


def _examples(labels: dict[str, str], per_label: int, start: int = 0) -> list[DatasetItem]:
    """``per_label`` packaged photos of each flower, taught under the name given."""
    return [
        DatasetItem(path, name)
        for flower, name in labels.items()
        for path in packaged_images(flower, start, start + per_label)
    ]


TAUGHT = {"sunflower": "sun", "tigerlily": "lily", "pansy": "pansy-taught"}


@pytest.fixture(scope="module")
def animals() -> list[Path]:
    return sorted(require_shared(SHARED_ANIMALS).glob("*/*.jpg"))


@pytest.mark.parametrize("per_label", [3, 10])
@pytest.mark.parametrize("with_defaults", [False, True])
def test_real_taught_labels_with_and_without_the_default_labels(
    tmp_path, shared_features_cache, default_labels_subset, animals, per_label, with_defaults
):
    """Taught under names of their own, 3 or 10 photos of three flowers; default labels
    (20 photos each of 14 other flowers, a quick stand-in for the shipped 80) beside them
    or not. Held-out photos of the taught labels are answered with
    their name (not `unknown`); photos of animals are `unknown`."""
    examples = _examples(TAUGHT, per_label)
    out = tmp_path / "m.clf"
    result = train_model(
        default_labels_subset if with_defaults else None,
        out,
        examples=examples,
        cache=shared_features_cache,
        folds=3,
    )
    model = Classifier.load(out)
    held_out = [p for flower in TAUGHT for p in packaged_images(flower, 40, 50)]
    truth = [TAUGHT[p.parent.name] for p in held_out]
    answers = model.classify_sources(held_out)
    unknown = np.mean([a.label == UNKNOWN for a in answers])
    right = np.mean([a.label == t for a, t in zip(answers, truth, strict=True)])
    assert unknown <= (0.4 if per_label == 3 else 0.1)
    assert right >= (0.6 if per_label == 3 else 0.9)
    assert right >= (0.75 if per_label == 3 else 0.95) * (1 - unknown)  # answered: right
    others = model.classify_sources(animals)
    assert np.mean([a.label == UNKNOWN for a in others]) >= 0.9
    hints = {label: q.add_photos for label, q in result.quality.per_label.items()}
    if per_label == 3:
        assert all(hints[name] == 7 for name in TAUGHT.values())
    if with_defaults:
        own = result.metadata["metrics"]["own"]
        assert own["labels"] == sorted(TAUGHT.values())
        assert own["images"] == 3 * per_label
        assert 0.0 <= own["unknown_rate"] <= 1.0


def test_one_code_path_for_a_folder_and_for_taught_examples(
    tmp_path, shared_features_cache, default_labels_subset
):
    """`imageclassifier train` on a folder holding the default labels beside the taught
    ones trains the very model a server's retrain trains (same id, same bytes)."""
    examples = _examples({"sunflower": "sun", "tigerlily": "lily"}, 5)
    folder = tmp_path / "folder"
    folder.mkdir()
    for flower in default_labels_subset.iterdir():
        if flower.is_dir():
            (folder / flower.name).symlink_to(flower)
    for item in examples:
        (folder / item.label).mkdir(exist_ok=True)
        (folder / item.label / item.path.name).symlink_to(item.path)
    a = train_model(folder, tmp_path / "a.clf", cache=shared_features_cache, folds=0)
    b = train_model(
        default_labels_subset,
        tmp_path / "b.clf",
        examples=examples,
        cache=shared_features_cache,
        folds=0,
    )
    assert a.model_id == b.model_id  # derived from the payload's sha256 and the identity
    meta_a, meta_b = a.metadata, b.metadata
    assert meta_a["payload_sha256"] == meta_b["payload_sha256"]
    assert meta_a["ood"] == meta_b["ood"]


def test_displayed_confidence_is_the_calibrated_probability(small_model, held_out_features):
    model = Classifier.load(small_model.path)
    ext = get_extractor("cnn")
    raw = model.artifact.pipeline.predict_proba(ext.classifier_features(held_out_features))
    expected = calibrate(raw, model.temperature).max(axis=1)
    got = [p.confidence for p in model.predict_features(held_out_features)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
