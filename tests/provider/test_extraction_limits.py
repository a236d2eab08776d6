"""Limits of batched extraction: bounded decoding ahead of a slow consumer, the feature
cache saved while extracting (an interrupted run keeps its work), and a cache that cannot
be written not costing the extraction. Real images, network and HDF5 files."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import provider.extraction as extraction
from provider.cache import FeatureCache
from provider.dataset import file_digest, scan_dataset
from provider.errors import EmptyImage, NotAnImage
from provider.extraction import decode_many, extract_items
from provider.features import get_extractor
from provider.imageio import decode_image
from tests.provider.conftest import LABELS, make_dataset, packaged_images

SOURCES = [p for label in LABELS for p in packaged_images(label, 0, 6)]  # 24 real JPEGs


@pytest.fixture
def decode_calls(monkeypatch) -> list[object]:
    """Count calls of the real decoder (it still does the work)."""
    calls: list[object] = []
    real = decode_image

    def counting(src, **kwargs):
        calls.append(src)
        return real(src, **kwargs)

    monkeypatch.setattr(extraction, "decode_image", counting)
    return calls


def _decode_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("decode_") and t.is_alive()}


# ---------------------------------------------------------------- decode_many


def test_decoding_runs_only_a_bounded_way_ahead_of_a_slow_consumer(decode_calls):
    workers = 2
    results = decode_many(SOURCES, workers=workers)
    first = next(results)
    time.sleep(0.5)  # a slow consumer: plenty of time to decode all 24 if nothing held back
    assert len(decode_calls) <= 2 * workers + 1, len(decode_calls)
    rest = list(results)
    assert len(decode_calls) == len(SOURCES)
    for got, src in zip([first, *rest], SOURCES, strict=True):  # still in input order
        np.testing.assert_array_equal(got, decode_image(src))


def test_bad_inputs_still_come_back_as_typed_errors_in_order():
    jpeg = SOURCES[0].read_bytes()
    sources = [b"", SOURCES[1], b"hello, I am text", jpeg, *SOURCES[2:8]]
    out = list(decode_many(sources, workers=2))
    assert isinstance(out[0], EmptyImage)
    assert isinstance(out[2], NotAnImage)
    assert out[1].shape == decode_image(SOURCES[1]).shape
    np.testing.assert_array_equal(out[3], decode_image(jpeg))
    assert all(isinstance(a, np.ndarray) for a in out[4:])


@pytest.mark.parametrize("how", ["close", "drop"])
def test_an_abandoned_iterator_stops_its_threads(decode_calls, how):
    before = _decode_threads()
    results = decode_many(SOURCES, workers=2)
    next(results)
    started = time.monotonic()
    if how == "close":
        results.close()
    else:
        del results  # the consumer just walks away; CPython finalises the generator
    assert time.monotonic() - started < 10
    assert _decode_threads() - before == set()
    n = len(decode_calls)
    assert n <= 5
    time.sleep(0.2)
    assert len(decode_calls) == n  # nothing more is decoded afterwards


# ---------------------------------------------------------------- the cache during extraction


@pytest.fixture
def items(tmp_path):
    root = make_dataset(tmp_path / "ds", LABELS[:2], per_label=8)
    return scan_dataset(root).items  # 16 images


def test_an_interrupted_extraction_keeps_the_rows_already_extracted(tmp_path, items, monkeypatch):
    monkeypatch.setattr(extraction, "BATCH_SIZE", 4)
    monkeypatch.setattr(extraction, "CACHE_SAVE_ROWS", 8)
    monkeypatch.setattr(extraction, "CACHE_SAVE_SECONDS", 1e9)  # by row count only
    extractor = get_extractor("cnn")
    path = tmp_path / "features.h5"
    digests = [file_digest(i.path) for i in items]
    seen: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if done == 12:  # three batches of 4 in: look at the file, then press Ctrl-C
            on_disk = FeatureCache(path, extractor.cache_key, extractor.dim)
            seen.update(n=len(on_disk), first8=sum(d in on_disk for d in digests[:8]))
            raise KeyboardInterrupt

    cache = FeatureCache(path, extractor.cache_key, extractor.dim)
    with pytest.raises(KeyboardInterrupt):
        extract_items(items, extractor, cache=cache, progress=progress)
    assert seen == {"n": 8, "first8": 8}  # saved while running, before the interrupt
    after = FeatureCache(path, extractor.cache_key, extractor.dim)
    assert len(after) == 12  # and what was extracted since is saved on the way out
    assert all(d in after for d in digests[:12])

    again = extract_items(items, extractor, cache=after)
    assert again.n_cached == 12 and again.features.shape == (16, extractor.dim)
    assert len(FeatureCache(path, extractor.cache_key, extractor.dim)) == 16


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py,sys; f=h5py.File(sys.argv[1],'a'); "
         "print('ready', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_cache_locked_by_another_process_does_not_lose_the_result(tmp_path, items, caplog):
    extractor = get_extractor("cnn")
    path = tmp_path / "features.h5"
    old = [hashlib.sha256(b"old").hexdigest()]
    FeatureCache(path, extractor.cache_key, extractor.dim).add(
        old, np.ones((1, extractor.dim), np.float32)
    )
    cache = FeatureCache(path, extractor.cache_key, extractor.dim)  # opened before the lock
    holder = _hold_lock(path)
    try:
        with caplog.at_level(logging.WARNING, logger="provider.extraction"):
            out = extract_items(items[:6], extractor, cache=cache)
    finally:
        holder.communicate("", timeout=30)
    assert out.features.shape == (6, extractor.dim) and out.n_cached == 0
    assert out.digests == [file_digest(i.path) for i in items[:6]]
    assert any("cannot write feature cache" in r.getMessage() for r in caplog.records)
    assert len(FeatureCache(path, extractor.cache_key, extractor.dim)) == 1  # still intact


def test_a_cache_that_cannot_be_created_does_not_lose_the_result(tmp_path, items, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    extractor = get_extractor("cnn")
    cache = FeatureCache(blocker / "features.h5", extractor.cache_key, extractor.dim)
    with caplog.at_level(logging.WARNING, logger="provider.extraction"):
        out = extract_items(items[:3], extractor, cache=cache)
    assert out.features.shape == (3, extractor.dim)
    warnings = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1 and str(blocker / "features.h5") in warnings[0]


# ---------------------------------------------------------------- featurise (lanes)


def _lane_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("lane_") and t.is_alive()}


def test_lanes_give_each_source_its_row_or_its_error_in_order():
    extractor = get_extractor("cnn")
    jpeg = SOURCES[0].read_bytes()
    sources = [b"", SOURCES[1], b"hello, I am text", jpeg, *SOURCES[2:9]]
    by_lanes = {n: list(extraction.featurise(sources, extractor, lanes=n)) for n in (1, 2, 3)}
    one = by_lanes[1]
    assert isinstance(one[0], EmptyImage) and isinstance(one[2], NotAnImage)
    rows = [r for r in one if isinstance(r, np.ndarray)]
    assert len(rows) == 9 and all(r.shape == (extractor.dim,) for r in rows)
    [alone] = list(extraction.featurise([jpeg], extractor))  # the lone-image path
    np.testing.assert_allclose(one[3], alone, atol=1e-5)
    for n in (2, 3):  # any number of lanes: the same rows, in the same places
        assert [type(r) for r in by_lanes[n]] == [type(r) for r in one]
        for a, b in zip(by_lanes[n], one, strict=True):
            if isinstance(a, np.ndarray):
                np.testing.assert_allclose(a, b, atol=1e-5)


def test_an_abandoned_featurise_stops_its_lanes(decode_calls):
    before = _lane_threads()
    rows = extraction.featurise(SOURCES, get_extractor("cnn"), lanes=2)
    next(rows)
    rows.close()
    assert _lane_threads() - before == set()
    n = len(decode_calls)
    assert n <= 2 * 2 * extraction.LANE_IMAGES + 2  # at most the lanes already queued
    time.sleep(0.2)
    assert len(decode_calls) == n  # nothing more is decoded afterwards
