"""Open-set recognition: "is this image like the photos of one of the model's labels?"

The score of an image is the cosine distance from its *open-set vector* to the nearest
training image (deep nearest neighbours, Sun et al. 2022). The open-set vector joins the
network's embedding with what the network's ImageNet classifier makes of the image: the
unit embedding beside ``SEMANTIC_WEIGHT`` times the square root of its ImageNet class
probabilities (a unit vector too). Two photos that look alike *and* that the network
would call by the same names are close; a cat photo stays far from a server's t-shirts.

The image is ``unknown`` when that distance exceeds the threshold of the label of its
nearest training image. A label's threshold is the ``QUANTILE`` of the leave-one-out
distances (each training image to its nearest *other* training image) of the images of
every label of about its size (between half and twice as many images, ``SIZE_FACTOR``).
Leave-one-out distances depend on how densely a label is covered: 80 photos of a flower
lie closer together than 5 photos of a server's subject. One threshold for all (the
previous rule) let the dense default labels set a threshold the sparse taught labels
failed; a threshold per label from its own few distances alone is noisy. Pooling labels
of a similar size keeps both right (docs/classifier.md, "Open-set recognition").
"""

from __future__ import annotations

import numpy as np

SEMANTIC_WEIGHT = 0.5
QUANTILE = 0.99
SIZE_FACTOR = 2.0
_CHUNK = 1024  # rows of a distance matrix computed at once
_SAME = 1e-6  # distances below this are the same photo (a duplicate), not a neighbour


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def open_set_vectors(features: np.ndarray, classifier_dim: int) -> np.ndarray:
    """(N, dim) feature rows -> (N, dim) float32 unit open-set vectors.

    Columns ``[:classifier_dim]`` are the embedding; the rest, when there are any, are the
    square roots of the ImageNet class probabilities (see :mod:`provider.features`).
    """
    features = np.asarray(features, np.float32)
    embedding = _unit(features[:, :classifier_dim])
    if features.shape[1] == classifier_dim:
        return embedding
    semantic = features[:, classifier_dim:] * np.float32(SEMANTIC_WEIGHT)
    return _unit(np.concatenate([embedding, semantic], axis=1))


def nearest_distances(queries: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(M, D) x (N, D) unit rows -> (M, N) cosine distances, float32, in [0, 2]."""
    out = np.empty((len(queries), len(bank)), np.float32)
    for start in range(0, len(queries), _CHUNK):
        block = queries[start : start + _CHUNK] @ bank.T
        np.subtract(1.0, block, out=out[start : start + _CHUNK])
    return np.maximum(out, 0.0, out=out)


def leave_one_out(distances: np.ndarray) -> np.ndarray:
    """(N, N) distances among training images -> each one's distance to its nearest
    *other* image (itself and exact duplicates of it excluded; inf when none is left)."""
    d = np.where(distances < _SAME, np.inf, distances)
    return d.min(axis=1) if d.shape[1] else np.full(len(d), np.inf, np.float32)


def label_thresholds(
    loo: np.ndarray,
    labels: np.ndarray,
    n_labels: int,
    quantile: float = QUANTILE,
    size_factor: float = SIZE_FACTOR,
) -> np.ndarray:
    """(L,) thresholds: for each label, the ``quantile`` of the leave-one-out distances of
    the images of all labels with between 1/size_factor and size_factor times its count."""
    counts = np.bincount(labels, minlength=n_labels)
    finite = np.isfinite(loo)
    fallback = float(np.max(loo[finite])) if finite.any() else 1.0
    out = np.empty(n_labels, np.float32)
    for c in range(n_labels):
        if counts[c] == 0:
            out[c] = fallback
            continue
        alike = (counts >= counts[c] / size_factor) & (counts <= counts[c] * size_factor)
        pool = loo[alike[labels] & finite]
        out[c] = np.quantile(pool, quantile) if len(pool) else fallback
    return out


class OpenSetScorer:
    """Fit on training feature rows and their label indices; ``score`` gives each image
    its distance to the nearest training image divided by that image's label threshold
    (> 1: ``unknown``), and the label of that nearest image.

    Stored (pickled): the training open-set vectors in float16, their label indices and
    the per-label thresholds. On first use a float32 working copy *replaces* the float16
    vectors (they are made again from it for pickling), so a loaded head holds one copy.
    """

    def __init__(self, classifier_dim: int, quantile: float = QUANTILE) -> None:
        self.classifier_dim = classifier_dim
        self.quantile = quantile
        self.bank_: np.ndarray | None = None  # (N, D) float16 unit rows
        self.labels_: np.ndarray | None = None  # (N,) int16 label index of each row
        self.thresholds_: np.ndarray | None = None  # (L,) float32
        self._bank_t: np.ndarray | None = None  # (D, N) float32 working copy

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        if state["bank_"] is None and self._bank_t is not None:  # exact: made from float16
            state["bank_"] = np.ascontiguousarray(self._bank_t.T).astype(np.float16)
        state["_bank_t"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._bank_t = None

    def fit(
        self, features: np.ndarray, labels: np.ndarray, n_labels: int | None = None
    ) -> OpenSetScorer:
        """``features`` (N, dim) rows, ``labels`` (N,) label indices 0..L-1."""
        labels = np.asarray(labels, np.int64)
        if len(features) < 2:
            raise ValueError("at least two training images are needed for open-set recognition")
        vectors = open_set_vectors(features, self.classifier_dim)
        loo = leave_one_out(nearest_distances(vectors, vectors))
        n = int(labels.max()) + 1 if n_labels is None else n_labels
        self.thresholds_ = label_thresholds(loo, labels, n, self.quantile)
        self.bank_ = vectors.astype(np.float16)
        self.labels_ = labels.astype(np.int16)
        self._bank_t = None
        return self

    @property
    def n_images(self) -> int:
        return 0 if self.labels_ is None else len(self.labels_)

    @property
    def dim(self) -> int:
        if self._bank_t is not None:
            return int(self._bank_t.shape[0])
        return 0 if self.bank_ is None else int(self.bank_.shape[1])

    def stored_bytes(self) -> int:
        """Bytes of the float16 vectors in the pickled payload."""
        return self.n_images * self.dim * 2

    def working_bytes(self) -> int:
        """Bytes of the float32 working copy that replaces them once in use."""
        return self.n_images * self.dim * 4

    def _working(self) -> np.ndarray:
        working = self._bank_t
        if working is None:
            bank = self.bank_
            if bank is None:  # another thread made the working copy in between
                working = self._bank_t
                assert working is not None
                return working
            working = np.ascontiguousarray(bank.T, dtype=np.float32)
            self._bank_t = working  # set before the float16 form goes (see above)
            self.bank_ = None
        return working

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(M, dim) -> (normalised distance (M,) float32, nearest label index (M,))."""
        if self.thresholds_ is None or self.labels_ is None:
            raise RuntimeError("OpenSetScorer is not fitted")
        query = open_set_vectors(features, self.classifier_dim)
        similarity = query @ self._working()
        nearest = np.argmax(similarity, axis=1)
        # float16 storage: a row's distance to itself can round below 0
        distance = np.maximum(1.0 - similarity[np.arange(len(query)), nearest], 0.0)
        label = self.labels_[nearest].astype(np.int64)
        return (distance / self.thresholds_[label]).astype(np.float32), label

    @staticmethod
    def is_unknown(scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) > 1.0
