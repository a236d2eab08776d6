"""Decode and featurise many images: one lane per core decodes a few images, reduces them
to what the network needs and runs them through it (:func:`featurise`), a bounded number
of pixels at once, with the HDF5 feature cache in front and saved as we go.
:func:`decode_many` decodes only (threads ahead of a consumer)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from provider.cache import FeatureCache, NotAFeatureCache
from provider.dataset import DatasetItem, file_digest
from provider.errors import ImageError
from provider.features import FeatureExtractor, Reduce, cnn
from provider.imageio import DEFAULT_MAX_PIXELS, decode_image, decoded_pixels

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
BATCH_SIZE = 16  # rows per progress report and cache hand-over
CACHE_SAVE_ROWS = 4 * BATCH_SIZE  # save new rows to the cache at least this often ...
CACHE_SAVE_SECONDS = 30.0  # ... or after this long, so an interrupted run keeps its work
REDUCED_AHEAD = 2 * BATCH_SIZE  # reduced images decoded ahead of the network


@dataclass(slots=True)
class ExtractedDataset:
    features: np.ndarray  # (N, dim) float32, rows in the order of ``items``
    items: list[DatasetItem]  # the images that were read
    digests: list[str]  # sha256 of each kept file
    skipped: list[str]  # "label/file: reason" for files that could not be used
    n_cached: int  # rows that came from the cache


MMAP_THRESHOLD = 4 * 1024 * 1024


def return_big_buffers_to_the_os() -> None:
    """Have glibc's malloc map every block of 4 MiB or more on its own (``mallopt``).

    Decoded frames are allocated in blocks of up to 16 MB; by default glibc raises its
    mmap threshold after the first such block is freed and then keeps later ones in each
    decoder thread's heap, which is never given back: 8 maximum-size PNGs peaked at
    663 MB instead of 477 MB. Photos (a few MB) are unaffected. No-op off glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):  # not glibc
        return


return_big_buffers_to_the_os()

DECODE_PIXEL_BUDGET = 40_000_000
"""Pixels being decoded at once in one process (at most about 11 bytes each at the
decoder's peak: 440 MB). An image larger than the budget is decoded alone."""


class PixelBudget:
    """Decoders take their image's pixel count before decoding and give it back after.

    A caller waits while the pixels in flight plus its own exceed ``limit``, unless
    nothing is in flight (so an image above the limit still runs, alone).
    """

    def __init__(self, limit: int = DECODE_PIXEL_BUDGET) -> None:
        self.limit = limit
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def take(self, pixels: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(
                lambda: self._in_flight == 0 or self._in_flight + pixels <= self.limit
            )
            self._in_flight += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= pixels
                self._changed.notify_all()


_BUDGET = PixelBudget()


def _decode_or_error(
    src: bytes | Path,
    max_pixels: int,
    min_side: int | None,
    reduce: Reduce | None,
    budget: PixelBudget,
) -> np.ndarray | ImageError:
    try:
        with budget.take(min(decoded_pixels(src, min_side), max_pixels)):
            image = decode_image(
                src, max_pixels=max_pixels, min_side=min_side, shrink=reduce is not None
            )
            return reduce(image) if reduce is not None else image
    except ImageError as exc:
        return exc


def decode_many(
    sources: Sequence[bytes | Path],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    workers: int = 2,
    *,
    reduce: Reduce | None = None,
    budget: PixelBudget | None = None,
) -> Generator[np.ndarray | ImageError, None, None]:
    """Decode in background threads (Pillow releases the GIL), yielding results in order.

    ``reduce`` (the extractor's) shrinks each image right after it is decoded, in the
    decoder thread, so the network's thread only crops. Memory: the pixels being decoded
    at once stay within ``budget`` (default: the process-wide :data:`DECODE_PIXEL_BUDGET`),
    and at most ``ahead`` images wait decoded for the consumer: ``2 * workers`` at full
    size, ``REDUCED_AHEAD`` when reduced (a few hundred KB each), enough to keep the
    decoders busy while the network runs a batch. Closing the iterator early cancels what
    has not started and waits only for the decodes already running.
    """
    budget = budget or _BUDGET
    args = (max_pixels, min_side, reduce, budget)
    if len(sources) <= 1:
        yield from (_decode_or_error(s, *args) for s in sources)
        return
    ahead = REDUCED_AHEAD if reduce is not None else 2 * max(1, workers)
    todo = iter(sources)
    pending: deque[Future[np.ndarray | ImageError]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    try:
        for src in todo:
            pending.append(pool.submit(_decode_or_error, src, *args))
            if len(pending) >= ahead:
                break
        while pending:
            result = pending.popleft().result()
            src = next(todo, None)
            if src is not None:
                pending.append(pool.submit(_decode_or_error, src, *args))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


LANE_IMAGES = 2
"""Images a lane decodes and then runs through the network in one pass (``cnn.BATCH_SIZE``)."""


def _lane(
    sources: Sequence[bytes | Path],
    extractor: FeatureExtractor,
    max_pixels: int,
    budget: PixelBudget,
) -> list[np.ndarray | ImageError]:
    """Decode and reduce ``sources`` here, then featurise them here, on one core."""
    args = (max_pixels, extractor.decode_min_side, extractor.reduce, budget)
    decoded = [_decode_or_error(src, *args) for src in sources]
    images = [image for image in decoded if not isinstance(image, ImageError)]
    if not images:
        return decoded
    with cnn.on_one_core():
        features, _ = extractor.extract(images)
    rows = iter(features)
    return [image if isinstance(image, ImageError) else next(rows) for image in decoded]


def featurise(
    sources: Sequence[bytes | Path],
    extractor: FeatureExtractor,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    lanes: int | None = None,
    budget: PixelBudget | None = None,
) -> Generator[np.ndarray | ImageError, None, None]:
    """Encoded images or paths -> each one's feature row ``(dim,)`` or its typed
    :class:`ImageError`, in order.

    A lone image is decoded in the calling thread and then runs on every core the
    network has. More images go through ``lanes`` threads (default: the network's cores):
    each lane takes :data:`LANE_IMAGES` sources, decodes and reduces them and runs them
    through the network on its own core, so a decoder never waits for a core a network
    pass holds (measured on the 2-core machine: +5-10% images/s over decoder threads
    feeding network threads, ``bench/bench_engines.py``). A one-core process decodes in
    one thread beside its network instead (:func:`_one_core`). Memory: the pixels decoded
    at once stay within ``budget`` and at most ``2 * lanes`` lanes' results wait for the
    consumer. Closing the iterator
    early cancels the lanes not started and waits for the running ones.
    """
    budget = budget or _BUDGET
    n = lanes or cnn.parallelism()
    if len(sources) == 1:
        image = _decode_or_error(
            sources[0], max_pixels, extractor.decode_min_side, extractor.reduce, budget
        )
        yield image if isinstance(image, ImageError) else extractor.extract([image])[0][0]
        return
    if n == 1:
        yield from _one_core(sources, extractor, max_pixels, budget)
        return
    chunks = [sources[i : i + LANE_IMAGES] for i in range(0, len(sources), LANE_IMAGES)]
    todo = iter(chunks)
    pending: deque[Future[list[np.ndarray | ImageError]]] = deque()
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="lane")
    try:
        for chunk in islice(todo, 2 * n):
            pending.append(pool.submit(_lane, chunk, extractor, max_pixels, budget))
        while pending:
            done = pending.popleft().result()
            chunk = next(todo, None)
            if chunk is not None:
                pending.append(pool.submit(_lane, chunk, extractor, max_pixels, budget))
            yield from done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


ONE_CORE_BATCH = 16
"""Images a one-core process hands the network at once."""


def _one_core(
    sources: Sequence[bytes | Path],
    extractor: FeatureExtractor,
    max_pixels: int,
    budget: PixelBudget,
) -> Generator[np.ndarray | ImageError, None, None]:
    """A one-core process (a local worker): decoding in a thread of its own beside the
    network. Measured: decoding on the network's thread (one malloc arena for both) took a
    worker's peak RSS from 471 to 575-627 MB on maximum-size inputs."""
    decoded = decode_many(
        sources, max_pixels, extractor.decode_min_side, 1, reduce=extractor.reduce, budget=budget
    )
    pending: list[np.ndarray | ImageError] = []

    def flush() -> list[np.ndarray | ImageError]:
        images = [d for d in pending if not isinstance(d, ImageError)]
        rows = iter(extractor.extract(images)[0] if images else ())
        out = [d if isinstance(d, ImageError) else next(rows) for d in pending]
        pending.clear()
        return out

    try:
        for item in decoded:
            pending.append(item)
            if sum(not isinstance(d, ImageError) for d in pending) >= ONE_CORE_BATCH:
                yield from flush()
        yield from flush()
    finally:
        decoded.close()


class _CacheSaver:
    """Collects newly extracted rows and saves them every few batches. A failed write is
    logged once and then saving stops: the extraction itself carries on."""

    def __init__(self, cache: FeatureCache | None) -> None:
        self.cache = cache
        self._digests: list[str] = []
        self._rows: list[np.ndarray] = []
        self._last = time.monotonic()

    def add(self, digests: list[str], rows: Sequence[np.ndarray]) -> None:
        if self.cache is None:
            return
        self._digests += digests
        self._rows += rows
        due = time.monotonic() - self._last >= CACHE_SAVE_SECONDS
        if due or len(self._rows) >= CACHE_SAVE_ROWS:
            self.save()

    def save(self) -> None:
        cache, digests, rows = self.cache, self._digests, self._rows
        self._digests, self._rows, self._last = [], [], time.monotonic()
        if cache is None or not rows:
            return
        try:
            cache.add(digests, np.stack(rows))
        except (OSError, ValueError, KeyError, NotAFeatureCache) as exc:  # e.g. a file lock
            log.warning("cannot write feature cache %s (%s); not saving features", cache.path, exc)
            self.cache = None


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
    featurised = featurise([items[i].path for i in todo], extractor, max_pixels)
    saver = _CacheSaver(cache)
    done = n_cached
    batch: list[int] = []  # rows extracted since the last progress report

    def report() -> None:
        nonlocal done
        saver.add([digests[i] for i in batch], [rows[i] for i in batch])  # type: ignore[misc]
        done += len(batch)
        batch.clear()
        if progress:
            progress("extracting features", done, total)

    try:
        for i, row in zip(todo, featurised, strict=True):
            if isinstance(row, ImageError):
                item = items[i]
                skipped.append(f"{item.label}/{item.path.name}: {row.message}")
                log.info("skipping %s: %s", item.path, row.message)  # callers report it
                done += 1
                continue
            rows[i] = row
            batch.append(i)
            if len(batch) >= BATCH_SIZE:
                report()
        if batch:
            report()
    finally:  # also on Ctrl-C or an error: stop the lanes, keep what was extracted
        featurised.close()
        saver.save()
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
