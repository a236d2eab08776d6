"""The admission's Prometheus metrics: waits per path in millisecond buckets, refusals by
path and reason, and the queue read at scrape time."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.core.admission import Admission, QueueFull
from bot.core.admission_metrics import LATENCY_BUCKETS, WAIT_BUCKETS, AdmissionMetrics
from golem_backend import Capacity


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_waits_refusals_and_the_queue_are_exported():
    now = [0.0]
    capacity = Capacity(10.0, 0, 1, 1, measured=True)
    admission = Admission(lambda: capacity, max_wait_s=0.25, clock=lambda: now[0])
    registry = CollectorRegistry()
    AdmissionMetrics(registry, admission)

    finish = asyncio.Event()

    async def hold(server: int, path: str) -> None:
        async with admission.enter(server_id=server, member_id=1, path=path, images=1):
            await finish.wait()

    first = asyncio.create_task(hold(1, "classify"))
    second = asyncio.create_task(hold(2, "menu"))
    await asyncio.sleep(0)
    refused = asyncio.create_task(hold(3, "auto_reply"))  # 1 + 1 + 1 images at 10/s: 0.3 s
    await asyncio.sleep(0)
    assert isinstance(refused.exception(), QueueFull)

    got = samples(registry)
    assert got[("classifier_bot_admission_queued_requests", ())] == 1
    assert got[("classifier_bot_admission_released_images", ())] == 1
    assert got[("classifier_bot_admission_backend_images_per_second", ())] == 10.0
    assert got[("classifier_bot_admission_backlog_seconds", ())] == 0.2
    key = (
        "classifier_bot_admission_refusals_total",
        (("path", "auto_reply"), ("reason", "queue_full")),
    )
    assert got[key] == 1
    bucket = "classifier_bot_admission_wait_seconds_bucket"
    assert got[(bucket, (("le", "0.001"), ("path", "classify")))] == 1  # no wait at all

    now[0] += 0.004  # the first is answered 4 ms later: the second waited 4 ms
    finish.set()
    await asyncio.gather(first, second)
    got = samples(registry)
    assert got[(bucket, (("le", "0.0025"), ("path", "menu")))] == 0
    assert got[(bucket, (("le", "0.005"), ("path", "menu")))] == 1
    assert got[("classifier_bot_admission_queued_requests", ())] == 0


async def test_nothing_serving_leaves_the_waits_out_instead_of_infinity():
    admission = Admission(lambda: Capacity(0.0, 0, 0, 0, measured=False), max_wait_s=10)
    registry = CollectorRegistry()
    AdmissionMetrics(registry, admission)
    got = samples(registry)
    assert ("classifier_bot_admission_expected_wait_seconds", ()) not in got
    assert got[("classifier_bot_admission_backend_rate_measured", ())] == 0


def test_buckets_resolve_milliseconds():
    assert WAIT_BUCKETS[0] == 0.001 and list(WAIT_BUCKETS) == sorted(WAIT_BUCKETS)
    around_median = [b for b in LATENCY_BUCKETS if 0.005 <= b <= 0.02]
    assert len(around_median) >= 5 and list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
