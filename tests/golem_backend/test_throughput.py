"""The throughput meter on a hand-moved clock: busy time, overlapping batches, priors,
forgetting, units coming and going."""

from __future__ import annotations

import math

import pytest

from golem_backend.throughput import MEMORY_S, PRIOR_WEIGHT_S, ThroughputMeter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batch(meter: ThroughputMeter, clock: Clock, unit: str, images: int, seconds: float) -> None:
    meter.started(unit)
    clock.now += seconds
    meter.finished(unit, images)


def test_before_any_work_the_rate_is_the_prior_per_serving_unit():
    meter = ThroughputMeter(30.0, Clock())
    assert meter.images_per_s(["w1", "w2"]) == (60.0, False)
    assert meter.images_per_s([]) == (0.0, False)
    assert meter.rate_of("w1") == 30.0


def test_a_measured_rate_replaces_the_prior_as_work_comes_in():
    clock = Clock()
    meter = ThroughputMeter(30.0, clock)
    batch(meter, clock, "w", 8, 0.08)  # 100 images/s
    first, measured = meter.images_per_s(["w"])
    keep = math.exp(-0.08 / MEMORY_S)  # the prior stands for 0.25 s of work, fading
    prior = 30.0 * PRIOR_WEIGHT_S * keep
    assert measured and first == pytest.approx((prior + 8) / (PRIOR_WEIGHT_S * keep + 0.08))
    assert 30.0 < first < 100.0
    for _ in range(100):  # 8 s of busy time at 100 images/s
        batch(meter, clock, "w", 8, 0.08)
    assert meter.rate_of("w") == pytest.approx(100.0, rel=0.01)


def test_idle_time_between_batches_is_not_counted():
    clock = Clock()
    meter = ThroughputMeter(30.0, clock)
    for _ in range(300):
        batch(meter, clock, "w", 4, 0.04)
        clock.now += 5.0  # idle: nobody asked
    assert meter.rate_of("w") == pytest.approx(100.0, rel=0.01)


def test_overlapping_batches_on_one_unit_share_its_busy_time():
    """Two batches in flight at once (a Golem instance pipelines them): 16 images in 0.2 s
    of busy time is 80 images/s, not 2 x 8 / 0.2."""
    clock = Clock()
    meter = ThroughputMeter(1.0, clock)
    for _ in range(200):
        meter.started("i")
        meter.started("i")
        clock.now += 0.1
        meter.finished("i", 8)
        clock.now += 0.1
        meter.finished("i", 8)
    assert meter.rate_of("i") == pytest.approx(80.0, rel=0.01)


def test_a_batch_on_lent_cores_counts_once_per_share():
    """A lone image ran on both workers' cores for 0.01 s: per worker that is 50 images/s."""
    clock = Clock()
    meter = ThroughputMeter(1.0, clock)
    for _ in range(500):
        meter.started("w")
        clock.now += 0.01
        meter.finished("w", 1, share=2.0)
    assert meter.rate_of("w") == pytest.approx(50.0, rel=0.01)


def test_failed_and_dropped_batches_count_nothing():
    clock = Clock()
    meter = ThroughputMeter(30.0, clock)
    for _ in range(50):
        batch(meter, clock, "w", 8, 0.1)
    before = meter.rate_of("w")
    meter.started("w")
    clock.now += 30.0  # a poison image held the worker until it was killed
    meter.abandoned("w")
    assert meter.rate_of("w") == before
    meter.started("w")
    meter.started("w")
    clock.now += 0.5
    meter.abandoned("w")  # the first of two overlapping batches was dropped unrun
    clock.now += 0.1
    meter.finished("w", 8)  # the second counts from the moment the first ended
    assert meter.rate_of("w") == pytest.approx(80.0, rel=0.01)


def test_a_change_of_speed_shows_within_a_few_busy_seconds():
    clock = Clock()
    meter = ThroughputMeter(30.0, clock)
    for _ in range(200):
        batch(meter, clock, "w", 8, 0.08)  # 100 images/s
    busy = 0.0
    while busy < 2 * MEMORY_S:
        batch(meter, clock, "w", 8, 0.16)  # the machine got loaded: 50 images/s
        busy += 0.16
    assert meter.rate_of("w") == pytest.approx(50.0, rel=0.15)
    for _ in range(100):
        batch(meter, clock, "w", 8, 0.16)
    assert meter.rate_of("w") == pytest.approx(50.0, rel=0.01)


def test_a_new_unit_starts_at_the_mean_of_the_measured_ones_and_gone_ones_leave():
    clock = Clock()
    meter = ThroughputMeter(10.0, clock)
    for _ in range(100):
        batch(meter, clock, "a", 8, 0.2)  # 40 images/s
        batch(meter, clock, "b", 8, 0.4)  # 20 images/s
    a, b = meter.rate_of("a"), meter.rate_of("b")
    assert a == pytest.approx(40, rel=0.01) and b == pytest.approx(20, rel=0.01)
    total, _ = meter.images_per_s(["a", "b", "c"])  # c started: the mean of a and b
    assert total == pytest.approx(a + b + (a + b) / 2)
    assert meter.images_per_s(["b"]) == (pytest.approx(b), True)  # a retired
    meter.retain(["b", "c"])
    assert meter.rate_of("a") == pytest.approx(b)  # forgotten: a newcomer's prior now
    meter.retain([])
    assert meter.images_per_s(["x"]) == (10.0, False)
