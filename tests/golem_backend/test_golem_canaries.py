"""Canaries: mixed in at random positions, answers compared with the requestor's."""

from __future__ import annotations

from golem_backend.golem.canaries import (
    CONFIDENCE_TOLERANCE,
    SHIPPED_DATASET,
    Canary,
    CanarySet,
    candidate_images,
    choose,
    mismatch,
)
from golem_backend.golem.health import HealthConfig, HealthMonitor
from provider.errors import CorruptImage
from provider.results import LabelScore, Prediction


def _prediction(label: str, confidence: float, second: float = 0.1, model: str = "m1"):
    top = (LabelScore(label, confidence), LabelScore("other", second))
    return Prediction(label, confidence, top, model_id=model)


def test_canaries_ship_with_the_package_and_look_like_photos():
    images = candidate_images()
    assert SHIPPED_DATASET.is_dir() and len(images) >= 6
    assert all(img[:3] == b"\xff\xd8\xff" and 1_000 < len(img) < 100_000 for img in images)
    assert candidate_images() == images  # the same ones at every start


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
        "m1", tuple(Canary(f"canary{i}".encode(), _prediction("rose", 0.8)) for i in range(4))
    )
    health = HealthMonitor(HealthConfig(canary_rate=1.0), lambda: canaries)
    users = [f"user{i}".encode() for i in range(5)]
    heads = ["h"] * 5
    positions = set()
    for _ in range(200):
        key = _Instance()  # a fresh instance: its first batch carries two canaries
        mixed = health.mix(key, users, list(heads))
        assert len(mixed.images) == 7 and len(mixed.canaries) == 2
        assert all(mixed.images[p] == c.image for p, c in mixed.canaries.items())
        assert all(mixed.heads[p] is None for p in mixed.canaries)  # the default model
        assert mixed.users_outcomes(mixed.images) == users  # order kept
        positions.update(mixed.canaries)
    assert positions == set(range(7))  # anywhere in the batch
