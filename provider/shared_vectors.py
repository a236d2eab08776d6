"""Open-set vectors shared by many models: the default dataset's, held once per process.

A server that keeps the default labels trains a head on its taught photos *and* every
photo of the default dataset (1360 flowers). The open-set check needs the vectors of all
of them, but the default dataset's are the same in every such head. So a head stores only
its own rows and *names* the shared part by a key: the default dataset's fingerprint (its
photos' content and labels), the feature extractor and its version, and the open-set
vector recipe. A process resolves the key once and every head that names it uses the same
arrays:

1. from the registry, filled by every loaded model that holds all its rows (each says it
   *provides* the key of its own rows; the default model every worker and every Golem
   instance loads is the one that matters: its vectors *are* the shared part) and by an
   earlier resolution. The registry holds a loaded model's vectors weakly (they go when
   the model and every head using them go); computed ones and those of a training stay;
2. else by computing them from a base dataset folder whose fingerprint matches (the copy
   the package ships, or one named with :func:`add_base`), through the feature cache when
   one is configured (:func:`set_feature_cache`).

A key that resolves to nothing is refused with :class:`~provider.errors.ModelError`: the
head was trained with another default dataset or extractor; retraining it fixes that.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from provider.dataset import dataset_fingerprint, file_digest, scan_dataset
from provider.errors import ModelError

if TYPE_CHECKING:
    from provider.ood import OpenSetScorer

log = logging.getLogger(__name__)

_lock = threading.Lock()
_registry: weakref.WeakValueDictionary[str, SharedBank] = weakref.WeakValueDictionary()
_kept: dict[str, SharedBank] = {}  # computed or trained here: kept for the process
# loaded models that hold all their rows, by the key of their rows: turned into a bank
# only when a head names that key (a head's vectors stay float16 until it is used)
_offers: dict[str, tuple[weakref.ref[OpenSetScorer], tuple[str, ...]]] = {}
_bases: list[Path] = []
_feature_cache: Path | None = None


@dataclass(frozen=True, eq=False)
class SharedBank:
    """The open-set vectors of one base dataset, as every head that names ``key`` uses them.

    ``vectors_t`` (D, N) float32, made from the float16 form a model stores (so a head scores
    exactly as if it held the rows itself); ``row_labels`` (N,) index into ``labels``.
    """

    key: str
    labels: tuple[str, ...]
    row_labels: np.ndarray
    vectors_t: np.ndarray

    @property
    def n_images(self) -> int:
        return int(self.vectors_t.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.vectors_t.nbytes + self.row_labels.nbytes)


def shared_key(fingerprint: str, extractor: str, version: int | str, semantic_weight: float) -> str:
    """The name of a base dataset's open-set vectors: what they are made of and how."""
    return f"{fingerprint}.{extractor}@{version}.w{semantic_weight:g}"


def register(bank: SharedBank, *, keep: bool = False) -> SharedBank:
    """Register ``bank`` (held weakly unless ``keep``); the one already registered under
    its key wins and is returned."""
    with _lock:
        current = _registry.get(bank.key)
        if current is None:
            _registry[bank.key] = current = bank
        if keep:
            _kept.setdefault(bank.key, current)
        return current


def registered(key: str) -> SharedBank | None:
    """The bank registered under ``key``, made from a loaded model offering it if need be."""
    with _lock:
        bank = _registry.get(key)
        if bank is not None:
            return bank
        offer = _offers.pop(key, None)
    scorer = offer[0]() if offer is not None else None
    if offer is None or scorer is None:
        return None
    bank = register(SharedBank(key, offer[1], scorer.labels_, scorer.working_vectors()))
    scorer.keep_provided(bank)
    return bank


def offer(scorer: OpenSetScorer, labels: tuple[str, ...]) -> None:
    """A loaded model's scorer holding all its rows (``scorer.provides_``): its vectors
    become the bank of that key when a head names it. When that bank is already there (a
    reloaded default model), the scorer uses it: one copy per process."""
    key = scorer.provides_
    if not key:
        return
    bank = registered(key)
    if bank is None:

        def gone(ref: weakref.ref[OpenSetScorer]) -> None:  # the model was dropped
            with _lock:
                if _offers.get(key, (None,))[0] is ref:
                    del _offers[key]

        with _lock:
            _offers[key] = (weakref.ref(scorer, gone), labels)
        return
    mine = scorer.working_vectors()
    if (
        bank.vectors_t is not mine
        and bank.labels == labels
        and np.array_equal(bank.row_labels, scorer.labels_)
        and np.array_equal(bank.vectors_t, mine)
    ):
        scorer.use_working_vectors(bank.vectors_t)
        scorer.keep_provided(bank)


def add_base(folder: Path | str) -> None:
    """A dataset folder :func:`resolve` may compute shared vectors from (e.g. the bot's
    ``DATASET_DIR``); the packaged default dataset is always one."""
    folder = Path(folder)
    with _lock:
        if folder not in _bases:
            _bases.append(folder)


def set_feature_cache(path: Path | str | None) -> None:
    """The feature cache used when shared vectors must be computed (None: none)."""
    global _feature_cache
    _feature_cache = Path(path) if path is not None else None


def clear() -> None:
    """Forget every registered bank and base (tests)."""
    global _feature_cache
    with _lock:
        _registry.clear()
        _kept.clear()
        _offers.clear()
        _bases.clear()
    _feature_cache = None
    base_items.cache_clear()


@lru_cache(maxsize=8)
def base_items(folder: Path) -> tuple[tuple[str, str], ...]:
    """The (content digest, label) of every image file of a dataset folder, sorted."""
    scan = scan_dataset(folder)
    return tuple(sorted((file_digest(item.path), item.label) for item in scan.items))


def known_base_items(folder: Path, known: Mapping[Path, str]) -> tuple[tuple[str, str], ...]:
    """:func:`base_items`, from the digests in ``known`` (path -> sha256) when it has every
    file of the folder (a retrain has just hashed them), else by reading the files."""
    scan = scan_dataset(folder)
    if all(item.path in known for item in scan.items):
        return tuple(sorted((known[item.path], item.label) for item in scan.items))
    return base_items(folder)


def items_fingerprint(items: Sequence[tuple[str, str]]) -> str:
    return dataset_fingerprint([d for d, _ in items], [lb for _, lb in items])


def base_fingerprint(folder: Path) -> str:
    return items_fingerprint(base_items(folder))


def shared_rows(
    digests: Sequence[str], labels: Sequence[str], base: Sequence[tuple[str, str]]
) -> np.ndarray | None:
    """Which training rows are the base dataset's: (N,) bool, or None unless every base
    image is among them (a part of a base is not shared). A duplicate of a base image
    (same content and label) beyond the first is the model's own row."""
    if not base or len(digests) < len(base):
        return None
    wanted = set(base)
    if len(wanted) != len(base):  # the base holds duplicates: not worth the edge cases
        return None
    mask = np.zeros(len(digests), bool)
    for i, pair in enumerate(zip(digests, labels, strict=True)):
        if pair in wanted:
            wanted.discard(pair)
            mask[i] = True
    return mask if not wanted else None


def resolve(key: str, extractor_name: str) -> SharedBank:
    """The bank ``key`` names, registered or computed once; raises :class:`ModelError`."""
    bank = registered(key)
    if bank is not None:
        return bank
    from provider.train import default_dataset

    fingerprint = key.split(".", 1)[0]
    with _lock:
        candidates = [*_bases, Path(default_dataset())]
    for folder in candidates:
        try:
            matches = folder.is_dir() and base_fingerprint(folder) == fingerprint
        except OSError:
            matches = False
        if matches:
            return register(_compute(key, folder, extractor_name), keep=True)
    raise ModelError(
        f"this model uses the default labels' shared vectors {key}, which are not available "
        "here (trained with another default dataset or feature extractor); retrain it."
    )


def _compute(key: str, folder: Path, extractor_name: str) -> SharedBank:
    """Featurise the base dataset (cached features when a cache is set) into a bank."""
    from provider.cache import FeatureCache
    from provider.extraction import extract_items
    from provider.features import get_extractor
    from provider.ood import SEMANTIC_WEIGHT, open_set_vectors

    extractor = get_extractor(extractor_name)
    if key != shared_key(
        base_fingerprint(folder), extractor.name, extractor.version, SEMANTIC_WEIGHT
    ):
        raise ModelError(
            f"the shared vectors {key} need another feature extractor or open-set recipe "
            "than this version has; retrain the model."
        )
    log.info("computing the shared open-set vectors %s from %s", key, folder)
    cache = (
        FeatureCache(_feature_cache, extractor.cache_key, extractor.dim)
        if _feature_cache is not None
        else None
    )
    data = extract_items(scan_dataset(folder).items, extractor, cache=cache)
    if data.skipped:
        raise ModelError(f"the default dataset at {folder} has unreadable images; retrain.")
    labels = tuple(sorted({item.label for item in data.items}))
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[item.label] for item in data.items], np.int16)
    order = sorted(range(len(y)), key=lambda i: (int(y[i]), data.digests[i]))
    vectors = open_set_vectors(data.features[order], extractor.classifier_dim)
    working = np.ascontiguousarray(vectors.astype(np.float16).T, dtype=np.float32)
    return SharedBank(key, labels, y[order], working)
