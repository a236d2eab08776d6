"""Canaries: mixed in at random positions, answers compared with the requestor's."""

from __future__ import annotations

import random

import numpy as np

from golem_backend.golem.canaries import (
    CONFIDENCE_TOLERANCE,
    SHIPPED_DATASET,
    Canary,
    CanarySet,
    candidate_images,
    choose,
    disguise,
    mismatch,
)
from golem_backend.golem.health import HealthConfig, HealthMonitor
from provider.errors import CorruptImage
from provider.imageio import decode_image
from provider.jpeg_markers import check_jpeg_markers
from provider.results import LabelScore, Prediction


def _prediction(label: str, confidence: float, second: float = 0.1, model: str = "m1"):
    top = (LabelScore(label, confidence), LabelScore("other", second))
    return Prediction(label, confidence, top, model_id=model)


def test_canaries_ship_with_the_package_and_are_drawn_anew_each_start():
    images = candidate_images()
    assert SHIPPED_DATASET.is_dir() and len(images) == 16
    assert all(img[:3] == b"\xff\xd8\xff" and 1_000 < len(img) < 100_000 for img in images)
    assert candidate_images() != images  # 16 of 1361: another draw
    assert candidate_images(rng=random.Random(1)) == candidate_images(rng=random.Random(1))


def test_a_disguised_canary_has_the_size_asked_and_the_same_pixels_and_answer(tiny_model):
    from provider.model import Classifier

    rng = random.Random(7)
    canary = candidate_images(count=1, rng=rng)[0]
    disguised = [disguise(canary, size, rng) for size in (len(canary) + 5, 200_000, 3_000_000)]
    assert [len(d) for d in disguised] == [len(canary) + 5, 200_000, 3_000_000]
    assert len({d[-1000:] for d in disguised}) == 1 and len(set(disguised)) == 3
    assert disguise(canary, len(canary) - 10, rng) == canary  # never cut
    for image in disguised:
        check_jpeg_markers(image)  # within the decoder's limits on metadata blocks
        assert np.array_equal(decode_image(image), decode_image(canary))
    want, *got = Classifier.load(tiny_model.path).classify_sources([canary, *disguised])
    assert all(g == want for g in got)


def test_only_clear_answers_become_canaries_known_labels_first():
    images = [b"a", b"b", b"c", b"d"]
    outcomes = [
        _prediction("rose", 0.50, second=0.45),  # too close to call: never a canary
        _prediction("unknown", 0.9, second=0.05),
        _prediction("tulip", 0.7, second=0.2),
        CorruptImage("x"),
    ]
    chosen = choose(images, outcomes, "m1")
    assert [c.image for c in chosen.canaries] == [b"c", b"b"]


def test_a_wrong_label_or_a_far_confidence_is_a_mismatch():
    want = _prediction("rose", 0.8)
    assert mismatch(_prediction("rose", 0.8 + CONFIDENCE_TOLERANCE / 2), want, "m1") is None
    assert "label" in (mismatch(_prediction("tulip", 0.8), want, "m1") or "")
    assert "confidence" in (mismatch(_prediction("rose", 0.6), want, "m1") or "")
    assert "error" in (mismatch(CorruptImage("x"), want, "m1") or "")
    assert mismatch(_prediction("tulip", 0.8, model="m2"), want, "m1") is None  # retrained


class _Instance:
    """Stands in for a ClassifierService (the monitor only keys on it)."""


def test_canaries_are_mixed_at_random_positions_and_removed_from_the_answers():
    canaries = CanarySet(
        "m1", tuple(Canary(b"\xff\xd8canary%d" % i, _prediction("rose", 0.8)) for i in range(4))
    )
    health = HealthMonitor(HealthConfig(canary_rate=1.0), lambda: canaries)
    users = [b"user%d" % i * 20_000 * (i + 1) for i in range(5)]  # larger than the canaries
    heads = ["h"] * 5
    positions = set()
    for _ in range(200):
        key = _Instance()  # a fresh instance: its first batch carries two canaries
        mixed = health.mix(key, users, list(heads))
        assert len(mixed.images) == 7 and len(mixed.canaries) == 2
        for p, canary in mixed.canaries.items():  # disguised as one of the users' images
            assert mixed.images[p].endswith(canary.image[2:])
            assert len(mixed.images[p]) in {len(u) for u in users}
        assert all(mixed.heads[p] is None for p in mixed.canaries)  # the default model
        assert mixed.users_outcomes(mixed.images) == users  # order kept
        positions.update(mixed.canaries)
    assert positions == set(range(7))  # anywhere in the batch
