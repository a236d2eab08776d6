"""The previous release's `unknown` rule, kept to measure it beside the current one
(bench/bench_fewshot.py): the cosine distance from an image's embedding (the classifier's
1984 columns) to its 5th-nearest training image, above the 99th percentile of the
training images' own leave-one-out distances, one threshold for all labels. Its
confidence was the classifier's probability, uncalibrated."""

from __future__ import annotations

import numpy as np

K = 5
QUANTILE = 0.99


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class PreviousOpenSet:
    def __init__(self, embeddings: np.ndarray) -> None:
        bank = _unit(embeddings)
        self.k = min(K, len(bank) - 1)
        loo = np.empty(len(bank), np.float32)
        for start in range(0, len(bank), 512):
            dist = 1.0 - bank[start : start + 512] @ bank.T
            loo[start : start + 512] = np.partition(dist, self.k, axis=1)[:, self.k]
        self.threshold = float(np.quantile(loo, QUANTILE))
        self.bank_t = np.ascontiguousarray(bank.astype(np.float16).T, dtype=np.float32)

    def is_unknown(self, embeddings: np.ndarray) -> np.ndarray:
        dist = 1.0 - _unit(embeddings) @ self.bank_t
        return np.maximum(np.partition(dist, self.k - 1, axis=1)[:, self.k - 1], 0) > (
            self.threshold
        )
