"""Classifier: predictions from bytes and paths, typed errors in place, top-k, the
scaler-inside-the-pipeline guarantee, and ``unknown`` for images unlike the training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from provider.cache import FeatureCache
from provider.dataset import file_digest
from provider.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    image_error_from_json,
)
from provider.imageio import decode_image
from provider.model import Classifier
from provider.results import UNKNOWN, LabelScore, Prediction
from tests.provider.conftest import LABELS, SHARED_ANIMALS, require_shared


def _truth(paths: list[Path]) -> list[str]:
    return [p.parent.name for p in paths]


def _assert_same_prediction(a: Prediction, b: Prediction) -> None:
    assert a.label == b.label
    assert [s.label for s in a.top] == [s.label for s in b.top]
    np.testing.assert_allclose(
        [s.confidence for s in a.top], [s.confidence for s in b.top], atol=1e-5
    )
    assert a.ood_score == pytest.approx(b.ood_score, abs=1e-4)


# ---------------------------------------------------------------- basics


def test_classifier_exposes_labels_id_and_metadata(classifier, small_model):
    assert classifier.labels == LABELS
    assert classifier.model_id == small_model.result.model_id
    assert classifier.metadata["classifier"] == "lr"
    assert classifier.metadata["extractor"]["name"] == "cnn"
    assert classifier.accuracy == pytest.approx(small_model.result.accuracy)
    assert classifier.extractor.name == "cnn"


def test_held_out_images_are_classified_correctly(classifier, held_out, held_out_features):
    preds = classifier.predict_features(held_out_features)
    assert all(isinstance(p, Prediction) for p in preds)
    assert [p.label for p in preds] == _truth(held_out)
    assert all(p.model_id == classifier.model_id for p in preds)
    assert all(0.5 < p.confidence <= 1.0 for p in preds)


def test_bytes_paths_and_arrays_give_the_same_predictions(classifier, held_out):
    sources = held_out[:: len(held_out) // 2]  # one bluebell, one sunflower
    data = [p.read_bytes() for p in sources]
    by_path = classifier.classify_sources(sources)
    for other in (
        classifier.classify_sources(data),
        classifier.classify_sources([str(p) for p in sources]),
        classifier.classify_sources([bytearray(d) for d in data]),
        classifier.classify_sources([memoryview(d) for d in data]),
        classifier.predict([decode_image(p) for p in sources]),  # 256 px: no JPEG draft
    ):
        assert len(other) == len(by_path)
        for a, b in zip(by_path, other, strict=True):
            _assert_same_prediction(a, b)


# ---------------------------------------------------------------- bad inputs in a batch


def test_batch_mixing_good_and_bad_inputs_keeps_positions(classifier, held_out, tmp_path):
    jpeg = held_out[0].read_bytes()
    sources = [
        held_out[0],
        b"",
        b"GIF89a but then nothing an image needs",
        b"plain text, not an image",
        jpeg[: len(jpeg) // 2],
        held_out[-1].read_bytes(),
        tmp_path / "missing.jpg",
        tmp_path,  # a directory
    ]
    results = classifier.classify_sources(sources)
    assert len(results) == len(sources)
    assert isinstance(results[0], Prediction) and results[0].label == held_out[0].parent.name
    assert isinstance(results[1], EmptyImage)
    assert isinstance(results[2], CorruptImage)
    assert isinstance(results[3], NotAnImage)
    assert isinstance(results[4], CorruptImage)
    assert isinstance(results[5], Prediction) and results[5].label == held_out[-1].parent.name
    assert isinstance(results[6], NotAnImage) and isinstance(results[7], NotAnImage)
    for err in results[1:5] + results[6:]:
        assert err.message and err.to_json() == {"code": err.code, "message": err.message}
    alone = classifier.classify_sources([held_out[-1]])[0]
    _assert_same_prediction(results[5], alone)


def test_batch_of_only_bad_inputs_and_empty_batch(classifier):
    results = classifier.classify_sources([b"", b"nope"])
    assert [type(r) for r in results] == [EmptyImage, NotAnImage]
    assert classifier.classify_sources([]) == []
    assert classifier.predict([]) == []
    assert classifier.predict_features(np.zeros((0, classifier.extractor.dim), np.float32)) == []


def test_pixel_limit_is_applied_per_call(classifier, held_out):
    (res,) = classifier.classify_sources([held_out[0]], max_pixels=10_000)
    assert isinstance(res, ImageTooLarge)
    assert "megapixels" in res.message


def test_more_images_than_one_batch(classifier, held_out, monkeypatch):
    import provider.model

    sources = held_out[::3]  # 6 images
    monkeypatch.setattr(provider.model, "BATCH_SIZE", 4)  # two batches: 4 + 2
    preds = classifier.classify_sources(sources)
    assert [p.label for p in preds] == _truth(sources)


# ---------------------------------------------------------------- top-k and probabilities


@pytest.mark.parametrize(("top_k", "expected"), [(0, 1), (-3, 1), (1, 1), (2, 2), (4, 4), (50, 4)])
def test_top_k_is_clamped_to_the_labels(classifier, held_out_features, top_k, expected):
    preds = classifier.predict_features(held_out_features[:3], top_k=top_k)
    for pred in preds:
        assert len(pred.top) == expected
        assert pred.confidence == pred.top[0].confidence


def test_probabilities_are_sorted_and_sum_to_at_most_one(classifier, held_out_features):
    full = classifier.predict_features(held_out_features, top_k=len(LABELS))
    part = classifier.predict_features(held_out_features, top_k=2)
    for f, p in zip(full, part, strict=True):
        confs = [s.confidence for s in f.top]
        assert confs == sorted(confs, reverse=True)
        assert all(0.0 <= c <= 1.0 for c in confs)
        assert sum(confs) == pytest.approx(1.0, abs=1e-6)
        assert sum(s.confidence for s in p.top) <= 1.0 + 1e-9
        assert p.top == f.top[:2]
        assert len({s.label for s in f.top}) == len(LABELS)


# ---------------------------------------------------------------- the original bug


def test_single_images_are_scaled_by_the_trained_scaler(classifier, held_out):
    """The original service refit its scaler on each image, so every single image got the
    same label. One image at a time, different flowers must get different (right) labels,
    with the same probabilities as in a batch."""
    one_per_label = held_out[:: len(held_out) // len(LABELS)]
    assert _truth(one_per_label) == list(LABELS)
    batch = classifier.classify_sources(one_per_label)
    singles = [classifier.classify_sources([p])[0] for p in one_per_label]
    assert [p.label for p in singles] == list(LABELS)
    for one, many in zip(singles, batch, strict=True):
        _assert_same_prediction(one, many)


def test_single_feature_rows_are_not_rescaled(classifier, held_out_features):
    rows = [classifier.predict_features(held_out_features[i : i + 1])[0] for i in (0, 4, 8, 12)]
    assert [r.label for r in rows] == list(LABELS)


# ---------------------------------------------------------------- unknown


def test_synthetic_non_photos_are_unknown(classifier):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400]
    images = [
        rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8),  # noise
        np.full((300, 400, 3), 128, np.uint8),  # flat gray
        np.stack([x * 255 // 400, y * 255 // 300, np.full_like(x, 60)], -1).astype(np.uint8),
        (((x // 25 + y // 25) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2),
    ]
    preds = classifier.predict(images)
    for pred in preds:
        assert pred.label == UNKNOWN and pred.is_unknown
        assert pred.ood_score > 1.0  # distance / the nearest label's threshold
        assert pred.top[0].label in LABELS  # the closest known label is still reported
        assert pred.confidence == pred.top[0].confidence


def test_training_images_are_not_unknown(classifier, small_model):
    """Their features come from the training cache (no extraction needed)."""
    paths = sorted(small_model.dataset.glob("*/*.jpg"))
    ext = classifier.extractor
    cache = FeatureCache(small_model.cache, ext.cache_key, ext.dim)
    features = np.stack([cache.get(file_digest(p)) for p in paths])
    preds = classifier.predict_features(features)
    assert [p.label for p in preds] == _truth(paths)
    assert all(p.ood_score <= 1.0 for p in preds)


def test_animal_photos_are_unknown_to_a_flowers_model(shared_flowers_model):
    """Issue target: >= 90% of photos of other subjects are answered ``unknown`` while
    <= 3% of held-out flowers are wrongly rejected."""
    animals = sorted(require_shared(SHARED_ANIMALS).glob("*/*.jpg"))
    assert len(animals) >= 30
    clf = Classifier.load(shared_flowers_model.path)
    preds = clf.classify_sources(animals)
    rejected = [p for p in preds if isinstance(p, Prediction) and p.is_unknown]
    assert len(rejected) >= 0.9 * len(animals), (
        f"only {len(rejected)}/{len(animals)} animal photos were answered 'unknown'"
    )
    flowers = clf.classify_sources(shared_flowers_model.test_images)
    wrongly = [p for p in flowers if p.is_unknown]
    assert len(wrongly) <= 0.03 * len(flowers), f"{len(wrongly)} held-out flowers rejected"


# ---------------------------------------------------------------- result and error types


def test_prediction_to_json():
    pred = Prediction(
        label="daisy",
        confidence=0.912345678,
        top=(LabelScore("daisy", 0.912345678), LabelScore("tulip", 0.05)),
        model_id="abc123",
        ood_score=0.25,
    )
    assert pred.to_json() == {
        "label": "daisy",
        "confidence": 0.912346,
        "top": [{"label": "daisy", "confidence": 0.912346}, {"label": "tulip", "confidence": 0.05}],
        "model_id": "abc123",
        "ood_score": 0.25,
    }
    assert not pred.is_unknown


@pytest.mark.parametrize("cls", [EmptyImage, NotAnImage, CorruptImage, ImageTooLarge, ImageError])
def test_image_errors_round_trip_through_json(cls):
    err = cls("That image is not good.")
    back = image_error_from_json(err.to_json())
    assert type(back) is cls and back.message == err.message and str(back) == err.message


def test_unknown_error_code_becomes_a_generic_image_error():
    back = image_error_from_json({"code": "brand_new", "message": ""})
    assert type(back) is ImageError and back.message


def test_real_decoder_errors_carry_user_messages(held_out):
    for data in (b"", b"text", held_out[0].read_bytes()[:200]):
        with pytest.raises(ImageError) as info:
            decode_image(data)
        assert info.value.message.startswith("That ")


def test_the_stream_gives_every_result_in_order_across_its_batches(classifier, held_out):
    """``classify_stream`` (what ``imageclassifier predict`` prints from) flushes every
    ``STREAM_BATCH`` rows: errors before, between and after the batches keep their place."""
    from provider.model import STREAM_BATCH

    good = [held_out[i % len(held_out)] for i in range(2 * STREAM_BATCH + 3)]
    sources: list[object] = list(good)
    for position in (0, STREAM_BATCH + 1, len(sources)):
        sources.insert(position, b"plain text, not an image")
    stream = classifier.classify_stream(sources)
    first = next(stream)
    assert isinstance(first, NotAnImage)
    results = [first, *stream]
    assert len(results) == len(sources)
    for source, result in zip(sources, results, strict=True):
        if isinstance(source, bytes):
            assert isinstance(result, NotAnImage)
        else:
            assert isinstance(result, Prediction) and result.label == source.parent.name
