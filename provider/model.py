"""A loaded model: classify images (bytes or paths), batched through the network."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from provider.artifact import ModelArtifact, load_model
from provider.blas import use_one_blas_thread
from provider.errors import ImageError
from provider.extraction import featurise
from provider.features import FeatureExtractor, get_extractor
from provider.imageio import DEFAULT_MAX_PIXELS
from provider.linear import fast_proba
from provider.quality import calibrate
from provider.results import UNKNOWN, LabelScore, Prediction

Source = bytes | bytearray | memoryview | os.PathLike[str] | str
BATCH_SIZE = 64  # images handed to the extractor at once (it makes the forward passes)
STREAM_BATCH = 16  # feature rows classified together while the lanes featurise the next


class Classifier:
    """A verified model artifact plus its feature extractor. Thread-compatible, not -safe."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self._artifact = artifact
        self.artifact = artifact  # the verified artifact (pipeline, OOD scorer, metadata)
        self.metadata: dict[str, Any] = artifact.metadata
        self.labels: tuple[str, ...] = artifact.labels
        self.model_id: str = artifact.model_id
        self.extractor: FeatureExtractor = get_extractor(artifact.metadata["extractor"]["name"])
        use_one_blas_thread()  # see provider.blas: 26 -> 17 ms per image on 2 cores
        # the default pipeline in numpy (checked against scikit-learn), else scikit-learn
        self._proba = fast_proba(artifact.pipeline) or artifact.pipeline.predict_proba
        self._classifier_dim = self.extractor.classifier_dim
        self.temperature = float((artifact.metadata.get("calibration") or {}).get("temperature", 1))

    @classmethod
    def load(cls, path: Path | str) -> Classifier:
        """Load and verify; raises :class:`provider.errors.ModelError`."""
        return cls(load_model(Path(path)))

    @property
    def accuracy(self) -> float | None:
        value = (self.metadata.get("metrics") or {}).get("cv_accuracy")
        return float(value) if value is not None else None

    def predict_features(self, features: np.ndarray, top_k: int = 3) -> list[Prediction]:
        """(N, dim) features -> predictions; ``top_k`` is clamped to [1, number of labels]."""
        if len(features) == 0:
            return []
        k = max(1, min(int(top_k), len(self.labels)))
        features = np.asarray(features, np.float32)
        # calibrated (provider.quality): the displayed confidence is how often it is right
        proba = calibrate(self._proba(features[:, : self._classifier_dim]), self.temperature)
        classes = [str(c) for c in self._artifact.pipeline.classes_]
        ood = self._artifact.ood
        scores, _ = ood.score(features)  # distance / threshold of the nearest photo's label
        unknown = ood.is_unknown(scores)
        out = []
        for row, score, is_unknown in zip(proba, scores, unknown, strict=True):
            order = np.argsort(-row, kind="stable")[:k]
            top = tuple(LabelScore(classes[i], float(row[i])) for i in order)
            out.append(
                Prediction(
                    label=UNKNOWN if is_unknown else top[0].label,
                    confidence=top[0].confidence,
                    top=top,
                    model_id=self.model_id,
                    ood_score=float(score),
                )
            )
        return out

    def predict(self, images: Sequence[np.ndarray], top_k: int = 3) -> list[Prediction]:
        """Decoded RGB uint8 images -> one prediction each."""
        preds: list[Prediction] = []
        for start in range(0, len(images), BATCH_SIZE):
            feats, _ = self.extractor.extract(list(images[start : start + BATCH_SIZE]))
            preds.extend(self.predict_features(feats, top_k))
        return preds

    def classify_sources(
        self,
        sources: Sequence[Source],
        top_k: int = 3,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> list[Prediction | ImageError]:
        """Encoded images (bytes) or paths -> a prediction or the typed rejection, in order."""
        return list(self.classify_stream(sources, top_k, max_pixels=max_pixels))

    def classify_stream(
        self,
        sources: Sequence[Source],
        top_k: int = 3,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Iterator[Prediction | ImageError]:
        """:meth:`classify_sources`, each result yielded as soon as it and every result
        before it are known (``imageclassifier predict`` prints as it goes).

        Features come from :func:`~provider.extraction.featurise` (one lane per core:
        decode, reduce, network); the classifier and the `unknown` score run on
        ``STREAM_BATCH`` rows at a time. Only reduced images and feature rows are held.
        """
        srcs = [bytes(s) if isinstance(s, bytearray | memoryview) else s for s in sources]
        out: list[Prediction | ImageError | None] = []
        waiting: list[int] = []  # positions in ``out`` of the rows in ``features``
        features: list[np.ndarray] = []
        emitted = 0

        def flush() -> list[Prediction | ImageError]:
            nonlocal emitted
            if features:
                preds = self.predict_features(np.stack(features), top_k)
                for pos, pred in zip(waiting, preds, strict=True):
                    out[pos] = pred
                waiting.clear()
                features.clear()
            ready, emitted = out[emitted:], len(out)
            return ready  # type: ignore[return-value]  # every None was filled above

        featurised = featurise(srcs, self.extractor, max_pixels)  # type: ignore[arg-type]
        try:
            for row in featurised:
                if isinstance(row, ImageError):
                    out.append(row)
                    if not features:
                        yield from flush()
                    continue
                waiting.append(len(out))
                out.append(None)
                features.append(row)
                if len(features) >= STREAM_BATCH:
                    yield from flush()
            yield from flush()
        finally:
            featurised.close()
