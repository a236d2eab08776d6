"""Prometheus metrics of the admission queue (``prometheus-client``), on the bot's registry.

* ``classifier_bot_admission_wait_seconds{path}``: from arrival to release, a histogram
  whose buckets resolve milliseconds (most requests wait none at all);
* ``classifier_bot_admission_refusals_total{path,reason}``: reasons are
  :data:`~bot.core.admission.REASONS`, paths :data:`~bot.core.admission.PATHS`;
* read at scrape time: requests and images waiting, images handed to the backend and not
  answered, servers waiting, the backend's images per second (and whether measured), the
  expected wait of a newcomer and the time to answer everything queued.

:data:`LATENCY_BUCKETS` are the classification latency histogram's
(``classifier_bot_classification_seconds``, :mod:`bot.core.metrics`): one image answers in
11-13 ms at the median, and the buckets resolve milliseconds there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.core.admission import Admission, Turn

__all__ = ["LATENCY_BUCKETS", "WAIT_BUCKETS", "AdmissionMetrics"]

PREFIX: Final = "classifier_bot_admission"
WAIT_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30,
)  # fmt: skip
"""Seconds from arrival to release: none, a batch or two, up to past MAX_QUEUE_WAIT_S."""
LATENCY_BUCKETS: Final = (
    0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5,
    1, 2, 5, 10, 30, 60,
)  # fmt: skip
"""Seconds for one classification: 2.5 ms steps around the 11-13 ms median, then
coarser up to the request timeout."""


class AdmissionMetrics(Collector):
    """Registers on ``registry`` and hooks into ``admission`` (its ``on_admitted`` and
    ``on_refused``)."""

    def __init__(self, registry: CollectorRegistry, admission: Admission) -> None:
        self._admission = admission
        self.wait_seconds = Histogram(
            f"{PREFIX}_wait_seconds",
            "Time a request waited in the admission queue, from arrival to its turn",
            ["path"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            f"{PREFIX}_refusals",
            "Requests refused at the door, by path and reason",
            ["path", "reason"],
            registry=registry,
        )
        admission.on_admitted = self._admitted
        admission.on_refused = self._refused
        registry.register(self)

    def _admitted(self, turn: Turn) -> None:
        if turn.waited_s is not None:
            self.wait_seconds.labels(turn.path).observe(turn.waited_s)

    def _refused(self, path: str, reason: str) -> None:
        self.refusals.labels(path, reason).inc()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._admission.stats()
        gauges = (
            ("queued_requests", "Requests waiting for their turn", stats.queued_requests),
            ("queued_images", "Images of the requests waiting", stats.queued_images),
            (
                "released_images",
                "Images handed to the backend (or downloading) and not answered yet",
                stats.released_images,
            ),
            ("servers_waiting", "Servers (or DM members) with requests waiting",
             stats.servers_waiting),
            ("backend_images_per_second",
             "The backend's images per second the expected waits are computed from",
             stats.images_per_s),
            ("backend_rate_measured", "1 when that rate was measured, 0 for the prior",
             1 if stats.measured else 0),
            ("expected_wait_seconds",
             "Expected wait of a one-image request from a server with nothing waiting",
             stats.expected_wait_s),
            ("backlog_seconds", "Time to answer everything waiting and in flight",
             stats.backlog_s),
        )  # fmt: skip
        for name, doc, value in gauges:
            if math.isfinite(value):  # nothing serves: absent rather than +Inf
                yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # read at scrape time; names are checked then
