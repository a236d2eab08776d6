"""Decode and featurise many images: batched through the network, decoding prefetched in
threads, with the HDF5 feature cache in front."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from provider.cache import FeatureCache
from provider.dataset import DatasetItem, file_digest
from provider.errors import ImageError
from provider.features import FeatureExtractor
from provider.imageio import DEFAULT_MAX_PIXELS, decode_image

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
BATCH_SIZE = 16


@dataclass(slots=True)
class ExtractedDataset:
    features: np.ndarray  # (N, dim) float32, rows in the order of ``items``
    items: list[DatasetItem]  # the images that were read
    digests: list[str]  # sha256 of each kept file
    skipped: list[str]  # "label/file: reason" for files that could not be used
    n_cached: int  # rows that came from the cache


def _decode_or_error(
    src: bytes | Path, max_pixels: int, min_side: int | None
) -> np.ndarray | ImageError:
    try:
        return decode_image(src, max_pixels=max_pixels, min_side=min_side)
    except ImageError as exc:
        return exc


def decode_many(
    sources: Sequence[bytes | Path],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    workers: int = 2,
) -> Iterator[np.ndarray | ImageError]:
    """Decode in background threads (Pillow releases the GIL), yielding results in order."""
    if len(sources) <= 1:
        yield from (_decode_or_error(s, max_pixels, min_side) for s in sources)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        yield from pool.map(lambda s: _decode_or_error(s, max_pixels, min_side), sources)


def extract_items(
    items: Sequence[DatasetItem],
    extractor: FeatureExtractor,
    *,
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ExtractedDataset:
    """Features for dataset files; unreadable files are reported in ``skipped``, not raised."""
    total = len(items)
    digests: list[str | None] = []
    skipped: list[str] = []
    for item in items:
        try:
            digests.append(file_digest(item.path))
        except OSError as exc:
            digests.append(None)
            skipped.append(f"{item.label}/{item.path.name}: cannot be read ({exc.strerror})")
    rows: dict[int, np.ndarray] = {}
    todo: list[int] = []
    for i, digest in enumerate(digests):
        if digest is None:
            continue
        cached = cache.get(digest) if cache is not None else None
        if cached is not None:
            rows[i] = cached
        else:
            todo.append(i)
    n_cached = len(rows)
    if progress:
        progress("extracting features", n_cached, total)
    decoded = decode_many([items[i].path for i in todo], max_pixels, extractor.decode_min_side)
    new_digests: list[str] = []
    new_rows: list[np.ndarray] = []
    done = n_cached
    batch_idx: list[int] = []
    batch_img: list[np.ndarray] = []

    def flush() -> None:
        nonlocal done
        if not batch_img:
            return
        feats, _ = extractor.extract(batch_img)
        for i, row in zip(batch_idx, feats, strict=True):
            rows[i] = row
            new_digests.append(digests[i])  # type: ignore[arg-type]
            new_rows.append(row)
        done += len(batch_img)
        batch_idx.clear()
        batch_img.clear()
        if progress:
            progress("extracting features", done, total)

    for i, image in zip(todo, decoded, strict=True):
        if isinstance(image, ImageError):
            item = items[i]
            skipped.append(f"{item.label}/{item.path.name}: {image.message}")
            log.warning("skipping %s: %s", item.path, image.message)
            done += 1
            continue
        batch_idx.append(i)
        batch_img.append(image)
        if len(batch_img) >= BATCH_SIZE:
            flush()
    flush()
    if cache is not None and new_rows:
        cache.add(new_digests, np.stack(new_rows))
    kept = sorted(rows)
    features = (
        np.stack([rows[i] for i in kept]).astype(np.float32)
        if kept
        else np.zeros((0, extractor.dim), np.float32)
    )
    return ExtractedDataset(
        features=features,
        items=[items[i] for i in kept],
        digests=[digests[i] for i in kept],  # type: ignore[misc]
        skipped=skipped,
        n_cached=n_cached,
    )
