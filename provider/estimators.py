"""Classifiers selectable by name, each a scikit-learn ``Pipeline`` with its scaling inside.

Because scaling is fitted with the classifier and travels with it in the model artifact,
training and prediction cannot disagree (the original service refit its scaler on the one
image being predicted, which gave every image the same label).
"""

from __future__ import annotations

from collections.abc import Callable

from sklearn.base import BaseEstimator
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, Normalizer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

SEED = 9


def _signed_sqrt(x):  # noqa: ANN001, ANN202 - numpy in, numpy out (picklable top-level fn)
    import numpy as np

    return np.sign(x) * np.sqrt(np.abs(x))


def _lr() -> BaseEstimator:
    return LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)


CLASSIFIERS: dict[str, tuple[str, Callable[[], BaseEstimator]]] = {
    "lr": ("logistic regression", _lr),
    "lda": ("linear discriminant analysis", lambda: LinearDiscriminantAnalysis(solver="svd")),
    "knn": ("k nearest neighbours (k=5)", lambda: KNeighborsClassifier(n_neighbors=5)),
    "cart": ("decision tree", lambda: DecisionTreeClassifier(random_state=SEED)),
    "rf": (
        "random forest (100 trees)",
        lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1),
    ),
    "nb": ("Gaussian naive Bayes", GaussianNB),
    # probability=True (Platt scaling) also works on tiny datasets, unlike
    # CalibratedClassifierCV; it is deprecated in scikit-learn 1.9, hence the <1.11 cap.
    "svm": (
        "support vector machine (RBF)",
        lambda: SVC(C=10.0, gamma="scale", probability=True, random_state=SEED),
    ),
}

DEFAULT_CLASSIFIER = "lr"


def classifier_names() -> list[str]:
    return list(CLASSIFIERS)


def build_pipeline(classifier: str, *, scaling: str = "standard") -> Pipeline:
    """A fresh, unfitted pipeline ``scale -> classifier``.

    ``scaling``: ``"standard"`` (zero mean, unit variance), ``"minmax"`` (the original
    service's choice) or ``"l2"`` (signed square root, then unit L2 norm, then standard).
    """
    try:
        _, factory = CLASSIFIERS[classifier]
    except KeyError:
        known = ", ".join(CLASSIFIERS)
        raise ValueError(f"unknown classifier {classifier!r}; choose one of: {known}") from None
    steps: list[tuple[str, BaseEstimator]] = []
    if scaling == "standard":
        steps.append(("scale", StandardScaler()))
    elif scaling == "minmax":
        steps.append(("scale", MinMaxScaler()))
    elif scaling == "l2":
        steps += [
            ("sqrt", FunctionTransformer(_signed_sqrt)),
            ("norm", Normalizer()),
            ("scale", StandardScaler()),
        ]
    else:
        raise ValueError(f"unknown scaling {scaling!r}")
    steps.append(("clf", factory()))
    return Pipeline(steps)
