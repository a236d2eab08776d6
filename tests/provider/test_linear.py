"""provider.linear: the numpy copy of the default pipeline agrees with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from provider.linear import fast_proba


def fitted(n_classes: int, scaler: StandardScaler | None = None, estimator=None) -> Pipeline:
    rng = np.random.default_rng(n_classes)
    x = rng.standard_normal((40 * n_classes, 64)).astype(np.float32)
    y = np.repeat(np.arange(n_classes), 40)
    x += y[:, None] * 0.3  # separable enough to give confident and unsure answers
    steps = [("scale", scaler or StandardScaler()), ("clf", estimator or LogisticRegression())]
    return Pipeline(steps).fit(x, y)


@pytest.mark.parametrize("n_classes", [2, 3, 17])
@pytest.mark.parametrize("rows", [1, 5, 64])
def test_probabilities_equal_scikit_learns(n_classes, rows):
    pipe = fitted(n_classes)
    proba = fast_proba(pipe)
    assert proba is not None
    x = np.random.default_rng(7).standard_normal((rows, 64)).astype(np.float32) * 3
    got, expected = proba(x), pipe.predict_proba(x)
    assert got.shape == expected.shape == (rows, n_classes)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_a_scaler_without_centring_is_handled():
    pipe = fitted(4, scaler=StandardScaler(with_mean=False))
    proba = fast_proba(pipe)
    assert proba is not None
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(proba(x), pipe.predict_proba(x), rtol=0, atol=1e-12)


def test_the_input_rows_are_not_modified():
    pipe = fitted(3)
    x = np.ones((2, 64), np.float32)
    fast_proba(pipe)(x)  # type: ignore[misc]
    assert (x == 1).all()


def test_other_estimators_keep_scikit_learn():
    assert fast_proba(fitted(3, estimator=LinearDiscriminantAnalysis())) is None

    class Custom(LogisticRegression):  # a subclass may compute differently
        pass

    assert fast_proba(fitted(3, estimator=Custom())) is None
    assert fast_proba(object()) is None


def test_a_disagreement_on_the_probe_rows_falls_back(monkeypatch):
    pipe = fitted(3)
    real = Pipeline.predict_proba
    monkeypatch.setattr(Pipeline, "predict_proba", lambda self, x: real(self, x)[:, ::-1])
    assert fast_proba(pipe) is None
