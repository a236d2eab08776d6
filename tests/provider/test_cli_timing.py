"""``evaluate``'s ``feature_ms_per_image``: the warm cost of feature extraction per image,
without scanning, hashing, the cache or network start-up."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from provider.cli import feature_ms_per_image, main
from provider.dataset import scan_dataset
from provider.extraction import decode_many
from provider.features import EXTRACTORS, FeatureExtractor, get_extractor

STARTUP_S = 0.5  # a slow first call, as when the network is loaded and run cold
PER_IMAGE_MS = 5.0


def slow_start(real: FeatureExtractor) -> FeatureExtractor:
    """``real`` with a known cost: STARTUP_S on the first call, then PER_IMAGE_MS per image."""
    calls = 0

    def extract(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        nonlocal calls
        calls += 1
        time.sleep((STARTUP_S if calls == 1 else 0) + PER_IMAGE_MS * len(images) / 1000)
        rng = np.random.default_rng(calls)
        return rng.random((len(images), real.dim), np.float32), np.zeros((len(images), 1000))

    return dataclasses.replace(real, extract=extract)


@pytest.mark.parametrize("cached", [False, True], ids=["fresh", "all-cached"])
def test_evaluate_times_only_warm_extraction(small_model, tmp_path, capsys, monkeypatch, cached):
    """Fresh: the old timing added scanning, hashing and start-up (~25 ms). All cached: it
    timed a 16-image sample on the cold extractor (~36 ms). The truth is PER_IMAGE_MS."""
    monkeypatch.setitem(EXTRACTORS, "cnn", slow_start(get_extractor("cnn")))
    argv = ["--json", "-q", "evaluate", str(small_model.dataset), "--folds", "2"]
    if cached:  # the real features of every image, under the same cache key
        argv += ["--cache", str(shutil.copy(small_model.cache, tmp_path / "features.h5"))]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert PER_IMAGE_MS <= result["feature_ms_per_image"] < 2 * PER_IMAGE_MS


def test_feature_ms_per_image_matches_a_warm_measurement(small_dataset: Path):
    """The real network: within a generous factor of a warm timing taken here."""
    extractor = get_extractor("cnn")
    items = scan_dataset(small_dataset).items[:16]
    images = list(decode_many([i.path for i in items], min_side=extractor.decode_min_side))
    extractor.extract(images)  # warm
    t0 = time.perf_counter()
    extractor.extract(images)
    warm_ms = 1000 * (time.perf_counter() - t0) / len(images)
    measured = feature_ms_per_image(items, extractor)
    assert warm_ms / 3 < measured < 3 * warm_ms


def test_feature_ms_per_image_skips_unreadable_images(tmp_path, small_dataset: Path):
    items = scan_dataset(small_dataset).items[:4]
    broken = dataclasses.replace(items[0], path=tmp_path / "empty.jpg")
    broken.path.write_bytes(b"")
    fake = slow_start(get_extractor("cnn"))
    assert feature_ms_per_image([broken, *items[1:]], fake) >= PER_IMAGE_MS
    assert feature_ms_per_image([broken], fake) == 0.0
