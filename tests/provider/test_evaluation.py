"""Pipelines, cross-validation and the out-of-distribution scorer, on synthetic features."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, Normalizer, StandardScaler

from provider.estimators import (
    CLASSIFIERS,
    DEFAULT_CLASSIFIER,
    PlattSVC,
    build_pipeline,
    classifier_names,
)
from provider.evaluation import (
    CV_SEED,
    compare_classifiers,
    cross_validate,
    fit_pipeline,
    usable_folds,
)


def blobs(per_class: int = 10, n_classes: int = 3, dim: int = 6, seed: int = 0):
    """Well-separated Gaussian blobs with a large common offset (as unscaled features have)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(n_classes, dim))
    X = np.concatenate([c + rng.normal(0, 0.5, size=(per_class, dim)) for c in centres]) + 100
    y = np.repeat(np.arange(n_classes), per_class)
    return X.astype(np.float32), y


# ---------------------------------------------------------------- estimators


def test_the_original_list_of_classifiers_is_available():
    assert set(classifier_names()) >= {"lr", "lda", "knn", "cart", "rf", "nb", "svm"}
    assert DEFAULT_CLASSIFIER in CLASSIFIERS
    assert all(isinstance(desc, str) and desc for desc, _ in CLASSIFIERS.values())


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_pipeline_scales_inside_and_predicts_probabilities(name):
    X, y = blobs()
    pipe = fit_pipeline(name, X, y)
    assert isinstance(pipe, Pipeline)
    assert [step for step, _ in pipe.steps] == ["scale", "clf"]
    assert isinstance(pipe.named_steps["scale"], StandardScaler)
    np.testing.assert_allclose(pipe.named_steps["scale"].mean_, X.mean(axis=0), rtol=1e-5)
    proba = pipe.predict_proba(X[:5])
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    # The original bug: a scaler refit on one sample maps it to a constant vector.
    singles = [pipe.predict(X[i : i + 1])[0] for i in (0, 10, 20)]
    assert singles == [0, 1, 2]


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_no_classifier_warns_on_fit(name):
    """Users of ``train``/``compare`` must not see deprecation noise from any classifier."""
    X, y = blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        fit_pipeline(name, X, y).predict_proba(X)


@pytest.mark.parametrize("per_class", [1, 2, 3, 10])
def test_svm_gives_probabilities_for_any_dataset_size(per_class):
    """Platt scaling needs held-out decision values; the folds adapt, one image still works."""
    X, y = blobs(per_class=per_class)
    svm = PlattSVC().fit(X, y)
    proba = svm.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert list(svm.classes_) == [0, 1, 2]
    assert (svm.predict(X) == y).all()
    assert (proba.argmax(axis=1) == y).all()


def test_svm_is_deterministic_and_survives_pickling():
    X, y = blobs(per_class=8)
    a, b = PlattSVC().fit(X, y), PlattSVC().fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    again = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(again.predict_proba(X), a.predict_proba(X))


def test_svm_probabilities_are_calibrated_not_saturated():
    """Overlapping classes: Platt scaling must leave some doubt, not answer 100% everywhere."""
    X, y = blobs(per_class=30, dim=2)
    X = X + np.random.default_rng(1).normal(0, 3, X.shape).astype(np.float32)
    proba = PlattSVC().fit(X, y).predict_proba(X)
    assert 0.4 < proba.max(axis=1).mean() < 0.99


def test_pipelines_are_fresh_and_unfitted():
    a, b = build_pipeline("lr"), build_pipeline("lr")
    assert a is not b and a.named_steps["clf"] is not b.named_steps["clf"]
    assert not hasattr(a.named_steps["scale"], "mean_")


def test_scaling_options():
    assert isinstance(build_pipeline("lr", scaling="minmax").steps[0][1], MinMaxScaler)
    l2 = build_pipeline("lr", scaling="l2")
    assert [type(s) for _, s in l2.steps[:3]] == [FunctionTransformer, Normalizer, StandardScaler]
    X, y = blobs()
    assert l2.fit(X - 100, y).score(X - 100, y) == 1.0  # signed sqrt copes with negatives
    with pytest.raises(ValueError, match="unknown scaling 'zscore'"):
        build_pipeline("lr", scaling="zscore")


def test_unknown_classifier_lists_the_choices():
    with pytest.raises(ValueError, match="unknown classifier 'boost'") as info:
        build_pipeline("boost")
    assert all(name in str(info.value) for name in CLASSIFIERS)


# ---------------------------------------------------------------- cross-validation


def test_usable_folds_is_limited_by_the_smallest_label():
    y = np.array([0] * 10 + [1] * 3)
    assert usable_folds(y, 5) == 3
    assert usable_folds(y, 2) == 2
    assert usable_folds(np.array([0, 0, 1]), 5) == 0  # a label with one image: no CV
    assert usable_folds(np.array([0, 1] * 5), 1) == 0
    assert usable_folds(np.array([], dtype=np.int64), 5) == 0


def test_cross_validate_measures_accuracy_and_confusion():
    X, y = blobs()
    seen: list[tuple[int, int]] = []
    cv = cross_validate(X, y, "lr", folds=5, progress=lambda d, t: seen.append((d, t)))
    assert cv.folds == 5 and len(cv.fold_accuracies) == 5
    assert cv.accuracy == pytest.approx(np.mean(cv.fold_accuracies))
    assert cv.accuracy_std == pytest.approx(np.std(cv.fold_accuracies))
    assert cv.accuracy == 1.0
    assert cv.confusion.shape == (3, 3) and cv.confusion.sum() == len(y)
    assert np.array_equal(cv.confusion, np.diag([10, 10, 10]))
    assert seen == [(i, 5) for i in range(1, 6)]


def test_cross_validate_counts_mistakes_in_the_right_cells():
    X, y = blobs()
    y_noisy = y.copy()
    y_noisy[:2] = 1  # two images of class 0 labelled 1: they will be predicted as 0
    cv = cross_validate(X, y_noisy, "knn", folds=3)
    assert cv.confusion[1, 0] >= 1  # rows are the (given) truth, columns the prediction
    assert cv.accuracy < 1.0
    assert cv.confusion.sum() == len(y)


def test_cross_validate_is_none_when_a_label_has_one_image():
    X, y = blobs()
    X, y = np.concatenate([X, X[:1]]), np.concatenate([y, [3]])
    assert cross_validate(X, y, "lr", folds=5) is None


def test_cross_validate_uses_the_benchmark_folds():
    """Same folds as StratifiedKFold(shuffle=True, random_state=9), fold by fold."""
    X, y = blobs(per_class=8, seed=3)
    y_noisy = y.copy()
    y_noisy[::7] = (y_noisy[::7] + 1) % 3  # label noise so that fold accuracies differ
    cv = cross_validate(X, y_noisy, "knn", folds=4)
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=CV_SEED)
    expected = []
    for train, test in splitter.split(X, y_noisy):
        model = fit_pipeline("knn", X[train], y_noisy[train])
        expected.append(float(np.mean(model.predict(X[test]) == y_noisy[test])))
    assert cv.fold_accuracies == expected
    assert len(set(expected)) > 1  # the check can tell different folds apart


def test_compare_classifiers_scores_each_on_the_same_folds():
    X, y = blobs(per_class=8, seed=5)
    y[::5] = (y[::5] + 1) % 3
    names = ["knn", "cart", "nb"]
    results = compare_classifiers(X, y, names, folds=4)
    assert list(results) == names
    for name in names:
        alone = cross_validate(X, y, name, folds=4)
        assert results[name].fold_accuracies == alone.fold_accuracies
        assert results[name].folds == 4
