"""Heads on a shared backbone: the memory-bounded LRU and per-image heads in one batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from provider.dataset import DatasetItem
from provider.errors import ModelError, NotAnImage
from provider.heads import HeadCache, HeadKey, classify_with_heads, head_footprint
from provider.model import Classifier
from provider.results import Prediction
from provider.train import train_model
from tests.provider.conftest import packaged_images

GROUPS = (
    ("bluebell", "daisy"),
    ("sunflower", "tigerlily"),
    ("crocus", "iris"),
    ("pansy", "tulip"),
)


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> list[HeadKey]:
    root = tmp_path_factory.mktemp("heads")
    cache = root / "features.h5"
    keys = []
    for labels in GROUPS:
        examples = [DatasetItem(p, lb) for lb in labels for p in packaged_images(lb, 0, 6)]
        result = train_model(None, root / f"{labels[0]}.model", examples=examples, cache=cache)
        keys.append(HeadKey(result.model_id, str(result.model_path)))
    return keys


def test_footprint_counts_the_payload_and_the_working_bank(heads):
    model = Classifier.load(heads[0].path)
    size = head_footprint(model)
    payload = int(model.metadata["payload_size"])
    bank = model.artifact.ood.bank_
    assert bank.dtype == np.float16 and bank.shape == (2 * 6, 2984)
    assert size == payload + bank.size * 2  # float16 in the file, float32 once in use
    model.predict_features(np.zeros((1, 2984), np.float32))
    assert model.artifact.ood.bank_ is None  # replaced by the working copy, not beside it
    assert head_footprint(model) == size
    assert Path(heads[0].path).stat().st_size > payload  # the file adds only its header


def test_the_least_recently_used_head_goes_first_once_the_budget_is_spent(heads):
    sizes = [head_footprint(Classifier.load(k.path)) for k in heads]
    cache = HeadCache(max_bytes=sizes[0] + sizes[1] + sizes[2] // 2)  # room for two
    a, b, c, d = heads
    cache.get(a)
    cache.get(b)
    assert (len(cache), cache.evictions) == (2, 0)
    cache.get(a)  # a is now the most recent: b goes when c comes
    cache.get(c)
    assert a.model_id in cache and c.model_id in cache and b.model_id not in cache
    assert cache.evictions == 1 and cache.bytes <= cache.max_bytes
    assert cache.bytes == sizes[0] + sizes[2]
    cache.get(d)
    assert a.model_id not in cache and c.model_id in cache and d.model_id in cache
    assert cache.stats() == {
        "heads": 2,
        "bytes": sizes[2] + sizes[3],
        "max_bytes": cache.max_bytes,
        "hits": 1,
        "loads": 4,
        "evictions": 2,
    }


def test_a_head_larger_than_the_budget_is_still_served_alone(heads):
    cache = HeadCache(max_bytes=1)
    first = cache.get(heads[0])
    assert first.model_id == heads[0].model_id and len(cache) == 1
    cache.get(heads[1])
    assert len(cache) == 1 and heads[1].model_id in cache


def test_a_reloaded_head_after_eviction_is_verified_again(heads, tmp_path):
    path = tmp_path / "head.model"
    shutil.copy(heads[0].path, path)
    key = HeadKey(heads[0].model_id, str(path))
    cache = HeadCache(max_bytes=1)
    cache.get(key)
    cache.get(heads[1])  # evicts key
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        cache.get(key)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No model file"),
        (b"", "not a model file"),
        (b"IMGCLF\x00\x01\xff\xff\xff\xff", "corrupted header"),
    ],
)
def test_a_missing_or_broken_head_file_is_a_model_error(tmp_path, content, message):
    path = tmp_path / "x.model"
    if content is not None:
        path.write_bytes(content)
    cache = HeadCache(max_bytes=2**20)
    with pytest.raises(ModelError, match=message):
        cache.get(HeadKey("abcdefabcdef", str(path)))
    assert len(cache) == 0


def test_each_image_is_answered_by_its_own_head(heads):
    backbone = Classifier.load(heads[0].path)
    models = [Classifier.load(k.path) for k in heads]
    sources = [packaged_images(labels[1], 10, 11)[0].read_bytes() for labels in GROUPS]
    sources.append(b"definitely not an image")
    chosen = [*models, models[0]]
    outcomes = classify_with_heads(backbone, sources, chosen, top_k=2)
    for outcome, model, labels in zip(outcomes, models, GROUPS, strict=False):
        assert isinstance(outcome, Prediction)
        assert outcome.model_id == model.model_id
        assert {s.label for s in outcome.top} == set(labels)
    assert isinstance(outcomes[-1], NotAnImage)
    # The same answers as each head classifying its image alone.
    for source, model, outcome in zip(sources, models, outcomes, strict=False):
        [alone] = model.classify_sources([source], top_k=2)
        assert isinstance(alone, Prediction) and isinstance(outcome, Prediction)
        assert alone.label == outcome.label
        assert alone.confidence == pytest.approx(outcome.confidence, abs=1e-5)


def test_an_unloadable_head_answers_only_its_images(heads):
    backbone = Classifier.load(heads[0].path)
    error = ModelError("x.model is truncated or corrupted (checksum mismatch).")
    image = packaged_images("daisy", 10, 11)[0].read_bytes()
    outcomes = classify_with_heads(backbone, [image, image], [error, None])
    assert outcomes[0] is error
    assert isinstance(outcomes[1], Prediction) and outcomes[1].model_id == backbone.model_id


def test_heads_and_images_must_pair_up(heads):
    backbone = Classifier.load(heads[0].path)
    with pytest.raises(ValueError, match="2 heads for 1 images"):
        classify_with_heads(backbone, [b"x"], [None, None])
