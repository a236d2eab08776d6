"""Cross-validation on extracted features: accuracy, confusion matrix, classifier comparison."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold

from provider.blas import use_one_blas_thread
from provider.estimators import SEED, build_pipeline

CV_SEED = 9  # the benchmark's folds: StratifiedKFold(shuffle=True, random_state=9)


@dataclass(slots=True)
class CvResult:
    accuracy: float
    accuracy_std: float
    fold_accuracies: list[float]
    folds: int
    confusion: np.ndarray  # (L, L) counts, rows = true label, columns = predicted


NO_CV_WARNING = "some label has fewer than 2 images: accuracy was not measured"


def usable_folds(y: np.ndarray, folds: int) -> int:
    """Folds that stratification allows: at most the smallest class count (0 = no CV)."""
    smallest = int(np.bincount(y).min()) if len(y) else 0
    n = min(folds, smallest)
    return n if n >= 2 else 0


def cross_validate(
    X: np.ndarray,
    y: np.ndarray,
    classifier: str,
    folds: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> CvResult | None:
    """Stratified k-fold CV with the benchmark's seed; None when a label has < 2 images."""
    n = usable_folds(y, folds)
    if n == 0:
        return None
    n_labels = int(y.max()) + 1
    confusion = np.zeros((n_labels, n_labels), np.int64)
    accs: list[float] = []
    splitter = StratifiedKFold(n_splits=n, shuffle=True, random_state=CV_SEED)
    for i, (train, test) in enumerate(splitter.split(X, y)):
        model = fit_pipeline(classifier, X[train], y[train])
        pred = model.predict(X[test])
        accs.append(float(np.mean(pred == y[test])))
        np.add.at(confusion, (y[test], pred), 1)
        if progress:
            progress(i + 1, n)
    return CvResult(float(np.mean(accs)), float(np.std(accs)), accs, n, confusion)


def fit_pipeline(classifier: str, X: np.ndarray, y: np.ndarray):  # noqa: ANN201 - Pipeline
    use_one_blas_thread()  # see provider.blas: 4x faster cross-validation on 2 cores
    model = build_pipeline(classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model


def compare_classifiers(
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    folds: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, CvResult | None]:
    """Every named classifier on the same folds (same seed, same split).

    ``progress(stage, done, total)`` is called per fold with stage ``cross-validating NAME``.
    """
    np.random.seed(SEED)
    results: dict[str, CvResult | None] = {}
    for name in names:
        stage = f"cross-validating {name}"
        hook = (lambda d, t, s=stage: progress(s, d, t)) if progress else None
        results[name] = cross_validate(X, y, name, folds, progress=hook)
    return results
