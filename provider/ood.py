"""Out-of-distribution score: "is this image like anything the model was trained on?"

The score is the cosine distance from an image's embedding to its k-th nearest training
embedding (deep nearest neighbours, Sun et al. 2022). The rejection threshold is a
quantile of the leave-one-out scores of the training images themselves, so about
``1 - quantile`` of in-distribution images are rejected by construction. On FLOWERS17 this
rejects every photo of animals4 while rejecting about 1% of held-out flowers (bench/).
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 5
DEFAULT_QUANTILE = 0.99


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class KnnOodScorer:
    """Fit on training embeddings (N, D); ``score`` gives one distance in [0, 2] per row."""

    def __init__(self, k: int = DEFAULT_K, quantile: float = DEFAULT_QUANTILE) -> None:
        self.k = k
        self.quantile = quantile
        self.bank_: np.ndarray | None = None  # (N, D) float16, unit rows (what is stored)
        self.threshold_: float = float("inf")
        self._bank_t: np.ndarray | None = None  # (D, N) float32 working copy, not pickled

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_bank_t"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._bank_t = None

    def fit(self, features: np.ndarray) -> KnnOodScorer:
        bank = _normalise(features)
        k = min(self.k, len(bank) - 1)
        if k < 1:
            raise ValueError("at least two training images are needed for the OOD score")
        # Leave-one-out: the nearest neighbour of a training row is itself, so take k+1.
        loo = np.empty(len(bank), np.float32)
        for start in range(0, len(bank), 512):
            dist = 1.0 - bank[start : start + 512] @ bank.T
            loo[start : start + 512] = np.partition(dist, k, axis=1)[:, k]
        self.k = k
        self.threshold_ = float(np.quantile(loo, self.quantile))
        self.bank_ = bank.astype(np.float16)
        self._bank_t = None
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        if self.bank_ is None:
            raise RuntimeError("KnnOodScorer is not fitted")
        if self._bank_t is None:
            self._bank_t = np.ascontiguousarray(self.bank_.T, dtype=np.float32)
        query = _normalise(features)
        dist = 1.0 - query @ self._bank_t
        # The bank is stored in float16: a row's distance to itself can round below 0.
        return np.maximum(np.partition(dist, self.k - 1, axis=1)[:, self.k - 1], 0.0)

    def is_unknown(self, scores: np.ndarray) -> np.ndarray:
        return scores > self.threshold_
