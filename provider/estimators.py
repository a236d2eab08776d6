"""Classifiers selectable by name, each a scikit-learn ``Pipeline`` with its scaling inside.

Because scaling is fitted with the classifier and travels with it in the model artifact,
training and prediction cannot disagree (the original service refit its scaler on the one
image being predicted, which gave every image the same label).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, Normalizer, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

SEED = 9


def _signed_sqrt(x):  # noqa: ANN001, ANN202 - numpy in, numpy out (picklable top-level fn)
    return np.sign(x) * np.sqrt(np.abs(x))


class PlattSVC(ClassifierMixin, BaseEstimator):
    """RBF SVM with Platt-scaled probabilities, for datasets of any size.

    What ``SVC(probability=True)`` did (deprecated in scikit-learn 1.9, gone in 1.11):
    sigmoid calibration of the decision values on internal cross-validation folds, then
    one SVM fitted on everything. The folds adapt to the data (at most 5, at least 2
    images of every label per fold split); a label with a single image leaves no held-out
    decision value to calibrate on, so then the sigmoid is fitted on the training
    decision values.
    """

    def __init__(self, C: float = 10.0, random_state: int = SEED) -> None:
        self.C = C
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> PlattSVC:
        svc = SVC(C=self.C, gamma="scale", random_state=self.random_state)
        folds = min(5, int(np.unique(y, return_counts=True)[1].min()))
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.random_state)
            model = CalibratedClassifierCV(svc, method="sigmoid", cv=cv, ensemble=False)
        else:  # one split whose test part is everything: the training decision values
            everything = np.arange(len(y))
            frozen = FrozenEstimator(svc.fit(X, y))
            model = CalibratedClassifierCV(frozen, method="sigmoid", cv=[(everything, everything)])
        self.model_ = model.fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)


def _lr() -> BaseEstimator:
    return LogisticRegression(C=1.0, max_iter=2000, random_state=SEED)


CLASSIFIERS: dict[str, tuple[str, Callable[[], BaseEstimator]]] = {
    "lr": ("logistic regression", _lr),
    # Shrinkage (Ledoit-Wolf): with more features than images per label the plain
    # covariance is singular; FLOWERS17 5-fold CV 24.4% -> 96.6% on cnn features.
    "lda": (
        "linear discriminant analysis (Ledoit-Wolf shrinkage)",
        lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
    ),
    "knn": ("k nearest neighbours (k=5)", lambda: KNeighborsClassifier(n_neighbors=5)),
    "cart": ("decision tree", lambda: DecisionTreeClassifier(random_state=SEED)),
    "rf": (
        "random forest (100 trees)",
        lambda: RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=1),
    ),
    "nb": ("Gaussian naive Bayes", GaussianNB),
    "svm": ("support vector machine (RBF, Platt-scaled)", PlattSVC),
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
