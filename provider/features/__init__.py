"""Feature extractors, selectable by name. Training and prediction use the same one.

Every extractor maps a batch of RGB uint8 images (any size) to an (N, dim) float32 matrix
and also returns an (N, 1000) ImageNet-logit matrix (zeros for extractors without a
network), which the out-of-distribution score may use. ``version`` changes whenever the
output would change, and keys the feature cache and the model artifact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from provider.features import cnn

Extract = Callable[[Sequence[np.ndarray]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FeatureExtractor:
    name: str
    version: str
    dim: int
    description: str
    extract: Extract
    decode_min_side: int | None = None  # JPEGs may be DCT-downscaled to this shorter side
    # The kNN `unknown` score needs an embedding where distance means "looks alike": the
    # network's. With the global descriptors it rejected 0 of 39 animal photos (FLOWERS17).
    detects_unknown: bool = True

    @property
    def cache_key(self) -> str:
        return f"{self.name}@{self.version}"


def _cnn(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return cnn.network()(images)


def _global(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from provider.features.global_features import global_features

    feats = np.stack([global_features(im) for im in images]) if images else np.zeros((0, 532))
    return feats.astype(np.float32), np.zeros((len(images), cnn.IMAGENET_CLASSES), np.float32)


def _cnn_color(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from provider.features.global_features import color_histogram

    emb, logits = _cnn(images)
    hists = [color_histogram(cnn.preprocess(im)) for im in images]
    hist = np.stack(hists) if hists else np.zeros((0, 512), np.float32)
    hist = np.sqrt(np.maximum(hist, 0))
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)
    return np.concatenate([emb, hist.astype(np.float32)], axis=1), logits


_CNN_VERSION = "lite0-ms1-draft256"

EXTRACTORS: dict[str, FeatureExtractor] = {
    "cnn": FeatureExtractor(
        "cnn",
        _CNN_VERSION,
        cnn.EMBEDDING_DIM,
        "EfficientNet-Lite0 ImageNet features: pooled head + 4 pooled stages (1984-d)",
        _cnn,
        cnn.RESIZE_SHORTER,
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
        cnn.EMBEDDING_DIM + 512,
        "cnn plus an 8x8x8 HSV histogram of the centre crop",
        _cnn_color,
        cnn.RESIZE_SHORTER,
    ),
}

DEFAULT_EXTRACTOR = "cnn"


def get_extractor(name: str) -> FeatureExtractor:
    try:
        return EXTRACTORS[name]
    except KeyError:
        known = ", ".join(EXTRACTORS)
        raise ValueError(f"unknown feature extractor {name!r}; choose one of: {known}") from None
