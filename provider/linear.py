"""The default classifier's probabilities without scikit-learn's per-call machinery.

``Pipeline(StandardScaler, LogisticRegression).predict_proba`` spends about 0.45 ms on one
image, most of it in input validation, namespace and tag checks that a trusted float32
feature row does not need; the arithmetic takes a few microseconds. :func:`fast_proba`
returns the same computation in numpy (same dtypes, same order of operations), checked
against scikit-learn's own answer on probe rows when it is built: if they ever disagree
(another scikit-learn version, another estimator) it returns ``None`` and the caller keeps
using scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["fast_proba"]

Proba = Callable[[np.ndarray], np.ndarray]
_PROBE_ROWS = 8
_TOLERANCE = 1e-9


def fast_proba(pipeline: Any) -> Proba | None:
    """A function equal to ``pipeline.predict_proba`` for float32 rows, or ``None``."""
    steps = [step for _, step in getattr(pipeline, "steps", [])]
    if len(steps) != 2 or type(steps[0]) is not StandardScaler:
        return None
    scaler, lr = steps
    if type(lr) is not LogisticRegression:
        return None
    # cast to float32 first, as StandardScaler.transform does for float32 input
    mean = scaler.mean_.astype(np.float32) if scaler.with_mean else None
    scale = scaler.scale_.astype(np.float32) if scaler.with_std else None
    coef_t = lr.coef_.T  # a view, as decision_function multiplies (same BLAS path)
    intercept = lr.intercept_

    def proba(rows: np.ndarray) -> np.ndarray:
        x = np.array(rows, dtype=np.float32)  # the scaler's copy (float32 is kept)
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        z = x @ coef_t + intercept  # as decision_function (dtype of the fitted model)
        if z.shape[1] == 1:  # two classes: the logistic of the one decision
            p = expit(z[:, 0])
            return np.vstack([1 - p, p]).T
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    try:
        probe = _probe(scaler, lr.coef_.shape[1])
        agree = np.allclose(proba(probe), pipeline.predict_proba(probe), rtol=0, atol=_TOLERANCE)
    except Exception:  # an unexpected fitted state: let scikit-learn handle it
        return None
    return proba if agree else None


def _probe(scaler: StandardScaler, dim: int) -> np.ndarray:
    """Rows around the training mean, spread like the training data (deterministic)."""
    rng = np.random.default_rng(0)
    centre = scaler.mean_ if scaler.with_mean else np.zeros(dim)
    spread = scaler.scale_ if scaler.with_std else np.ones(dim)
    return (centre + 3 * spread * rng.standard_normal((_PROBE_ROWS, dim))).astype(np.float32)
