"""Feature extractors, selectable by name. Training and prediction use the same one.

Every extractor maps a batch of RGB uint8 images (any size) to an (N, dim) float32 matrix
and also returns an (N, 1000) ImageNet-logit matrix (zeros for extractors without a
network). The classifier reads the first ``classifier_dim`` columns of a row; the network's
extractors append the square roots of the ImageNet class probabilities (1000 columns, a
unit vector), which only the open-set check reads (:mod:`provider.ood`): they travel in
the feature cache with the rest, so a retrain never runs the network again for them.
``version`` changes whenever the output would change, and keys the feature cache and the
model artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from provider.features import cnn

Extract = Callable[[Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]]
Reduce = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FeatureExtractor:
    name: str
    version: str
    dim: int
    description: str
    extract: Extract
    decode_min_side: int | None = None  # JPEGs may be DCT-downscaled to this shorter side
    # Applied right after decoding (in the decoder thread): shrinks an image to what
    # ``extract`` needs, without changing its output, so big images are not held at size.
    reduce: Reduce | None = None
    # The kNN `unknown` score needs an embedding where distance means "looks alike": the
    # network's. With the global descriptors it rejected 0 of 39 animal photos (FLOWERS17).
    detects_unknown: bool = True
    # Leading columns the classifier reads; the rest (if any) are for the open-set check.
    classifier_columns: int | None = None

    @property
    def cache_key(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def classifier_dim(self) -> int:
        return self.dim if self.classifier_columns is None else self.classifier_columns

    def classifier_features(self, rows: np.ndarray) -> np.ndarray:
        """The columns of feature ``rows`` (N, dim) that the classifier reads."""
        return rows[:, : self.classifier_dim]


def semantic(logits: np.ndarray) -> np.ndarray:
    """(N, 1000) ImageNet logits -> (N, 1000) float32 square roots of the class
    probabilities: a unit vector per row (what the network would call the image)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return np.sqrt(p).astype(np.float32)


def _cnn(
    images: Sequence[np.ndarray], variant: cnn.Variant = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    emb, logits = cnn.network(variant)(images)
    return np.concatenate([emb, semantic(logits)], axis=1), logits


def _global(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from provider.features.global_features import global_features

    feats = np.stack([global_features(im) for im in images]) if images else np.zeros((0, 532))
    return feats.astype(np.float32), np.zeros((len(images), cnn.IMAGENET_CLASSES), np.float32)


def _cnn_color(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from provider.features.global_features import color_histogram

    rows, logits = _cnn(images)
    hists = [color_histogram(cnn.preprocess(im)) for im in images]
    hist = np.stack(hists) if hists else np.zeros((0, 512), np.float32)
    hist = np.sqrt(np.maximum(hist, 0))
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)
    emb, sem = rows[:, : cnn.EMBEDDING_DIM], rows[:, cnn.EMBEDDING_DIM :]
    return np.concatenate([emb, hist.astype(np.float32), sem], axis=1), logits


# "ort": ONNX Runtime (was cv2.dnn). Features agree to ~1e-5, but a cache must never mix
# engines; the int8 version names its model's sha256, so a rebuilt model is a new version.
# "sem1000": the rows end with the square roots of the ImageNet class probabilities.
_CNN_VERSION = "lite0-ort-ms1-draft240-bicubic-sem1000"
_CNN_INT8_VERSION = "lite0-int8-073d1210-ort-ms1-draft240-bicubic-sem1000"
_CNN_DIM = cnn.EMBEDDING_DIM + cnn.IMAGENET_CLASSES

EXTRACTORS: dict[str, FeatureExtractor] = {
    "cnn": FeatureExtractor(
        "cnn",
        _CNN_VERSION,
        _CNN_DIM,
        "EfficientNet-Lite0 ImageNet features: pooled head + 4 pooled stages (1984-d)",
        _cnn,
        cnn.DECODE_MIN_SIDE,
        cnn.reduce_for_network,
        classifier_columns=cnn.EMBEDDING_DIM,
    ),
    "cnn-int8": FeatureExtractor(
        "cnn-int8",
        _CNN_INT8_VERSION,
        _CNN_DIM,
        "cnn on the int8 (statically quantised) network: about twice as fast",
        partial(_cnn, variant="int8"),
        cnn.DECODE_MIN_SIDE,
        cnn.reduce_for_network,
        classifier_columns=cnn.EMBEDDING_DIM,
    ),
    "global": FeatureExtractor(
        "global",
        "v1",
        532,
        "the original service: HSV histogram + Haralick + Hu moments (500x500)",
        _global,
        detects_unknown=False,
    ),
    "cnn+color": FeatureExtractor(
        "cnn+color",
        f"{_CNN_VERSION}+hsv8",
        _CNN_DIM + 512,
        "cnn plus an 8x8x8 HSV histogram of the centre crop",
        _cnn_color,
        cnn.DECODE_MIN_SIDE,
        cnn.reduce_for_network,
        classifier_columns=cnn.EMBEDDING_DIM + 512,
    ),
}

DEFAULT_EXTRACTOR = "cnn"


def get_extractor(name: str) -> FeatureExtractor:
    try:
        return EXTRACTORS[name]
    except KeyError:
        known = ", ".join(EXTRACTORS)
        raise ValueError(f"unknown feature extractor {name!r}; choose one of: {known}") from None
