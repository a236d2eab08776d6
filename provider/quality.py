"""What a trained model can be expected to do, measured by cross-validation on its own
training images: accuracy, the share of its own photos it answers ``unknown``, recall per
label, the calibration of its displayed confidence, and where a label is short of photos.

Every figure comes from the same stratified folds as :func:`provider.evaluation.cross_validate`
(its seed): each fold's classifier *and* open-set thresholds are fitted on the other folds,
then the held-out photos are answered as the final model would answer them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from provider.evaluation import CV_SEED, fit_pipeline, usable_folds
from provider.ood import label_thresholds, leave_one_out, nearest_distances, open_set_vectors

RECOMMENDED_PHOTOS = 10
"""Photos per label from which the benchmark meets its targets (bench/bench_fewshot.py:
own photos answered ``unknown`` <= 3% from 10 per label); a label with fewer gets a hint."""
WEAK_RECALL = 0.8  # a label recognised less often than this in CV gets a hint too
WEAK_UNKNOWN = 0.05  # ... and so does one whose held-out photos are this often `unknown`
ECE_BINS = 10
CALIBRATE_FROM = 10
"""Photos in the smallest label from which the temperature of the displayed confidence is
fitted on the cross-validated answers; below it the classifier's probability is shown as
it is (T = 1). Measured (bench/bench_fewshot.py, docs/classifier.md): with fewer photos
the folds' models, trained on 4 of 5 photos, are calibrated unlike the final model, and
a temperature fitted on them made the error worse (ECE 0.07 -> 0.12 at 5 per label)."""
TEMPERATURE_RANGE = (0.25, 4.0)
_FULL_MATRIX_MAX = 3000  # images up to which the N x N distance matrix is computed once


def calibrate(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of class probabilities: softmax(log p / T), row-wise."""
    if temperature == 1.0:
        return proba
    logp = np.log(np.maximum(proba, 1e-300)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    out /= out.sum(axis=1, keepdims=True)
    return out


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the label-balanced negative log-likelihood of held-out
    answers (``proba`` (N, L) uncalibrated, ``y`` (N,) true label indices): each label
    weighs the same, so 80 photos per default label do not set a server's calibration."""
    from scipy.optimize import minimize_scalar

    counts = np.bincount(y, minlength=proba.shape[1]).astype(float)
    weights = 1.0 / counts[y]
    weights /= weights.sum()
    logp = np.log(np.maximum(proba, 1e-300))

    def loss(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(-np.sum(weights * (z[np.arange(len(y)), y] - log_norm)))

    lo, hi = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(loss, bounds=(lo, hi), method="bounded").x))


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the |confidence - accuracy| gap of equal-width confidence bins, weighted by
    the share of answers in each bin (0 = perfectly calibrated)."""
    confidence = np.asarray(confidence, float)
    correct = np.asarray(correct, float)
    if len(confidence) == 0:
        return 0.0
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total)


@dataclass(slots=True)
class LabelQuality:
    images: int
    recall: float | None  # held-out photos of the label classified as it (None: no CV)
    right: float | None  # ... and answered with it: recall less those answered `unknown`
    unknown_rate: float | None  # held-out photos of the label answered `unknown`
    confused_with: str | None  # the label its photos were most often taken for
    add_photos: int  # about how many more photos would help (0: none needed)
    reason: str  # why, for the hint ("" when add_photos is 0)

    def to_json(self) -> dict[str, object]:
        return {
            "images": self.images,
            "recall": self.recall,
            "right": self.right,
            "unknown_rate": self.unknown_rate,
            "confused_with": self.confused_with,
            "add_photos": self.add_photos,
            "reason": self.reason,
        }


@dataclass(slots=True)
class Quality:
    """Cross-validated figures of a model (``folds`` 0: too few photos to measure)."""

    folds: int
    accuracy: float | None = None  # right label, `unknown` counted as wrong
    closed_accuracy: float | None = None  # right label among its labels (no open-set check)
    closed_accuracy_std: float | None = None
    unknown_rate: float | None = None  # own photos answered `unknown`
    ece: float | None = None  # of the displayed confidence, answers that name a label
    temperature: float = 1.0  # of the displayed confidence (fitted when CALIBRATE_FROM)
    confusion: np.ndarray | None = None  # (L, L) closed-set counts, rows = true label
    per_label: dict[str, LabelQuality] = field(default_factory=dict)

    def summary(self, labels: Sequence[str] | None = None) -> dict[str, float | None]:
        """Accuracy and `unknown` share over the held-out photos of ``labels`` (all: None)."""
        if self.folds == 0:
            return {"accuracy": None, "unknown_rate": None, "images": None}
        chosen = [lb for lb in (labels or self.per_label) if lb in self.per_label]
        n = sum(self.per_label[lb].images for lb in chosen)
        if not n:
            return {"accuracy": None, "unknown_rate": None, "images": 0}
        right = sum(self.per_label[lb].images * (self.per_label[lb].right or 0.0) for lb in chosen)
        unknown = sum(
            self.per_label[lb].images * (self.per_label[lb].unknown_rate or 0.0) for lb in chosen
        )
        return {"accuracy": right / n, "unknown_rate": unknown / n, "images": n}


def photo_hint(
    images: int, recall: float | None, unknown_rate: float | None, confused_with: str | None
) -> tuple[int, str]:
    """(about how many more photos, why) for one label; (0, "") when it has enough."""
    if images < RECOMMENDED_PHOTOS:
        return RECOMMENDED_PHOTOS - images, f"only {images} photo{'s' if images != 1 else ''}"
    if recall is not None and recall < WEAK_RECALL:
        why = f"recognised in {recall:.0%} of tests"
        if confused_with:
            why += f", often taken for {confused_with}"
        return math.ceil(images / 2), why
    if unknown_rate is not None and unknown_rate > WEAK_UNKNOWN:
        return math.ceil(images / 2), f"{unknown_rate:.0%} of its photos answered unknown"
    return 0, ""


def _fold_unknown(
    distances: np.ndarray | None,
    vectors: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    y: np.ndarray,
    n_labels: int,
) -> np.ndarray:
    """Which held-out photos the open-set check of a model of ``train`` answers `unknown`."""
    if distances is not None:
        among = distances[np.ix_(train, train)]
        to_test = distances[np.ix_(test, train)]
    else:
        among = nearest_distances(vectors[train], vectors[train])
        to_test = nearest_distances(vectors[test], vectors[train])
    thresholds = label_thresholds(leave_one_out(among), y[train], n_labels)
    nearest = np.argmin(to_test, axis=1)
    d = to_test[np.arange(len(test)), nearest]
    return d > thresholds[y[train][nearest]]


def cross_validated_quality(
    features: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    classifier: str,
    classifier_dim: int,
    *,
    folds: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> Quality:
    """Stratified ``folds``-fold figures of the model :func:`provider.train.train_model`
    would fit on (``features`` (N, dim), ``y`` label indices into ``labels``), and the
    temperature of its displayed confidence (fitted on the held-out answers when the
    smallest label has ``CALIBRATE_FROM`` photos, else 1)."""
    counts = np.bincount(y, minlength=len(labels))
    n = usable_folds(y, folds)
    if n == 0:
        per_label = {}
        for i, label in enumerate(labels):
            add, why = photo_hint(int(counts[i]), None, None, None)
            per_label[label] = LabelQuality(int(counts[i]), None, None, None, None, add, why)
        return Quality(folds=0, per_label=per_label)
    n_labels = len(labels)
    X = features[:, :classifier_dim]
    vectors = open_set_vectors(features, classifier_dim)
    distances = nearest_distances(vectors, vectors) if len(y) <= _FULL_MATRIX_MAX else None
    confusion = np.zeros((n_labels, n_labels), np.int64)
    unknown = np.zeros(len(y), bool)
    proba = np.zeros((len(y), n_labels))
    fold_acc: list[float] = []
    splitter = StratifiedKFold(n_splits=n, shuffle=True, random_state=CV_SEED)
    for i, (train, test) in enumerate(splitter.split(X, y)):
        model = fit_pipeline(classifier, X[train], y[train])
        classes = np.asarray(model.classes_)
        proba[np.ix_(test, classes)] = model.predict_proba(X[test])
        pred = classes[np.argmax(proba[test][:, classes], axis=1)]
        fold_acc.append(float(np.mean(pred == y[test])))
        np.add.at(confusion, (y[test], pred), 1)
        unknown[test] = _fold_unknown(distances, vectors, train, test, y, n_labels)
        if progress:
            progress(i + 1, n)
    temperature = fit_temperature(proba, y) if counts.min() >= CALIBRATE_FROM else 1.0
    shown = calibrate(proba, temperature)
    predicted = np.argmax(shown, axis=1)
    right = (predicted == y) & ~unknown
    answered = ~unknown
    ece = expected_calibration_error(shown.max(axis=1)[answered], (predicted == y)[answered])
    per_label: dict[str, LabelQuality] = {}
    for c, label in enumerate(labels):
        mine = y == c
        total = int(mine.sum())
        recall = float(confusion[c, c] / total) if total else None
        right_c = float(right[mine].mean()) if total else None
        unknown_rate = float(unknown[mine].mean()) if total else None
        row = confusion[c].copy()
        row[c] = 0
        confused = labels[int(np.argmax(row))] if row.sum() else None
        add, why = photo_hint(int(counts[c]), recall, unknown_rate, confused)
        per_label[label] = LabelQuality(
            int(counts[c]), recall, right_c, unknown_rate, confused, add, why
        )
    return Quality(
        folds=n,
        accuracy=float(right.mean()),
        closed_accuracy=float(np.mean(fold_acc)),
        closed_accuracy_std=float(np.std(fold_acc)),
        unknown_rate=float(unknown.mean()),
        ece=ece,
        temperature=temperature,
        confusion=confusion,
        per_label=per_label,
    )
