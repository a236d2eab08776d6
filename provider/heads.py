"""Many models on one backbone: an LRU of loaded heads, bounded by memory, and batch
classification where each image is answered by its own head.

A *head* is a model artifact (scaler + classifier + unknown-detection bank + labels); every
head trained with the same feature extractor shares the expensive part, the CNN backbone.
So a batch mixing images of several servers is decoded and run through the network once,
and each image's feature row then goes to the head its request named.

Heads are loaded from their file and verified exactly as a single model is
(:func:`provider.artifact.load_model`), and kept in memory until the cache's byte budget
is spent; the least recently used head is dropped first. A head is addressed by its
content-derived model id: a file whose id differs from the one asked for is refused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from provider.errors import ImageError, ModelError
from provider.extraction import featurise
from provider.imageio import DEFAULT_MAX_PIXELS
from provider.model import Classifier, Source
from provider.results import Prediction


def head_footprint(model: Classifier) -> int:
    """Bytes a loaded head holds in use: its pickled payload (the arrays dominate it), with
    the open-set vectors as the float32 working copy that replaces their float16 form."""
    ood = model.artifact.ood
    payload = int(model.metadata.get("payload_size") or 0)
    return payload - ood.stored_bytes() + ood.working_bytes()


@dataclass(frozen=True, slots=True)
class HeadKey:
    """Which head to use: its model id and the file it is loaded from when not in memory."""

    model_id: str
    path: str


class HeadCache:
    """Loaded heads, least recently used dropped first once ``max_bytes`` is exceeded.

    The head just loaded always stays, even when it alone exceeds the budget (a batch needs
    it). Not thread-safe: one per process, used by one thread.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._heads: OrderedDict[str, tuple[Classifier, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.loads = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._heads)

    def __contains__(self, model_id: str) -> bool:
        return model_id in self._heads

    def get(self, key: HeadKey) -> Classifier:
        """The head ``key`` names, loaded and verified from its file if not in memory.

        Raises :class:`ModelError` when the file is missing, corrupt, of another version,
        or holds another model than ``key.model_id``.
        """
        entry = self._heads.get(key.model_id)
        if entry is not None:
            self._heads.move_to_end(key.model_id)
            self.hits += 1
            return entry[0]
        model = Classifier.load(Path(key.path))
        if model.model_id != key.model_id:
            raise ModelError(
                f"{Path(key.path).name} holds model {model.model_id}, not {key.model_id}."
            )
        self.put(model)
        self.loads += 1
        return model

    def put(self, model: Classifier) -> None:
        """Keep ``model`` (most recently used), then drop old heads beyond the budget."""
        old = self._heads.pop(model.model_id, None)
        if old is not None:
            self.bytes -= old[1]
        size = head_footprint(model)
        self._heads[model.model_id] = (model, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self._heads) > 1:
            _, (_, dropped) = self._heads.popitem(last=False)
            self.bytes -= dropped
            self.evictions += 1

    def stats(self) -> dict[str, int]:
        return {
            "heads": len(self._heads),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "loads": self.loads,
            "evictions": self.evictions,
        }


def classify_with_heads(
    backbone: Classifier,
    sources: Sequence[Source],
    heads: Sequence[Classifier | ModelError | None],
    top_k: int = 3,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Prediction | ImageError | ModelError]:
    """One outcome per source: features from ``backbone``'s extractor, once per image, then
    the prediction of that image's head (None: ``backbone`` itself).

    A head given as a :class:`ModelError` (it could not be loaded) answers its images with
    that error, without stopping the others. A head trained on another feature extractor
    than the backbone's is refused the same way.
    """
    if len(heads) != len(sources):
        raise ValueError(f"{len(heads)} heads for {len(sources)} images")
    extractor = backbone.extractor
    chosen: list[Classifier | ModelError] = []
    for head in heads:
        if head is None:
            chosen.append(backbone)
        elif not isinstance(head, ModelError) and head.extractor.name != extractor.name:
            chosen.append(
                ModelError(
                    f"model {head.model_id} uses the {head.extractor.name!r} features, "
                    f"this backend serves {extractor.name!r}; retrain it."
                )
            )
        else:
            chosen.append(head)
    outcomes: list[Prediction | ImageError | ModelError | None] = [None] * len(sources)
    wanted = [i for i, head in enumerate(chosen) if not isinstance(head, ModelError)]
    for i, head in enumerate(chosen):
        if isinstance(head, ModelError):
            outcomes[i] = head
    srcs = [bytes(s) if isinstance(s, bytearray | memoryview) else s for s in sources]
    featurised = featurise(
        [srcs[i] for i in wanted],  # type: ignore[misc]
        extractor,
        max_pixels,  # held reduced, not at full size (issue 9)
    )
    features: list[np.ndarray] = []
    rows: list[int] = []
    for i, row in zip(wanted, featurised, strict=True):
        if isinstance(row, ImageError):
            outcomes[i] = row
        else:
            rows.append(i)
            features.append(row)
    matrix = np.stack(features) if features else np.zeros((0, extractor.dim), np.float32)
    by_head: dict[int, list[int]] = {}
    for position, i in enumerate(rows):
        by_head.setdefault(id(chosen[i]), []).append(position)
    for positions in by_head.values():
        head = chosen[rows[positions[0]]]
        assert isinstance(head, Classifier)
        for position, prediction in zip(
            positions, head.predict_features(matrix[positions], top_k), strict=True
        ):
            outcomes[rows[position]] = prediction
    answered = [o for o in outcomes if o is not None]
    if len(answered) != len(sources):
        raise RuntimeError(f"{len(answered)} outcomes for {len(sources)} images")
    return answered
