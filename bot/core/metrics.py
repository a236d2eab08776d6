"""Prometheus metrics of the bot (``prometheus-client``), served on ``/metrics``.

Each bot owns its registry (several bots in one test process never share counters).
Labels are bounded: commands are the bot's own command names, outcomes, reasons and
states are short fixed vocabularies; there is no per-user or per-server label.

Counting needs few hooks: the backend's ``classify``/``retrain`` are wrapped on the
instance (latency, images, retrains), the command tree reports each interaction's
outcome, the download path its failures; the door's waits and refusals are
``bot.core.admission_metrics``; the rest (queue depth, instances by state, GLM, gateway
latency, guilds) is read at scrape time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.core.admission_metrics import LATENCY_BUCKETS
from golem_backend import Backend, BackendBusy, BackendStatus, Prediction

PREFIX = "classifier_bot"
OUTCOMES = ("ok", "refused", "error")  # refused: a user error with a message (busy, too big...)
OTHER = "other"
RETRAIN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 900, 1800)


class Gateway(Protocol):
    """What a scrape reads of the bot's connection (``ClassifierBot`` is one)."""

    @property
    def latency(self) -> float: ...

    @property
    def guilds(self) -> Sequence[object]: ...


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.interactions = Counter(
            f"{PREFIX}_interactions",
            "Application commands handled, by command and outcome",
            ["command", "outcome"],
            registry=r,
        )
        self.classification_seconds = Histogram(
            f"{PREFIX}_classification_seconds",
            "Time the backend took to answer one classification request",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.images_classified = Counter(
            f"{PREFIX}_images_classified", "Images the backend answered with a label", registry=r
        )
        # The door (admission) refuses before the backend's queue fills: a refusal by the
        # backend is an alarm (the only source left is "backend"; the door's refusals are
        # classifier_bot_admission_refusals_total{path,reason}).
        self.busy_refusals = Counter(
            f"{PREFIX}_busy_refusals",
            "Requests the backend refused as busy (its queue full) after the door let them in",
            ["source"],
            registry=r,
        )
        self.retrains = Counter(
            f"{PREFIX}_retrains", "Retrains by outcome", ["outcome"], registry=r
        )
        self.retrain_seconds = Histogram(
            f"{PREFIX}_retrain_seconds", "Duration of retrains", buckets=RETRAIN_BUCKETS, registry=r
        )
        self.download_failures = Counter(
            f"{PREFIX}_download_failures",
            "Attachments that could not be used, by reason (error type)",
            ["reason"],
            registry=r,
        )
        self.command_syncs = Counter(
            f"{PREFIX}_command_syncs", "Command sync attempts by outcome", ["outcome"], registry=r
        )
        self.discord_request_timeouts = Counter(
            f"{PREFIX}_discord_request_timeouts",
            "Discord REST calls that got no answer within DISCORD_REQUEST_TIMEOUT_S",
            registry=r,
        )
        self.gateway_events_skipped = Counter(
            f"{PREFIX}_gateway_events_skipped",
            "Gateway events skipped because they could not be read, by event",
            ["event"],
            registry=r,
        )
        # read at scrape time
        self.queue_depth = Gauge(
            f"{PREFIX}_backend_queue_depth", "Images waiting in the backend's queue", registry=r
        )
        self.worker_restarts = Gauge(
            f"{PREFIX}_backend_worker_restarts",
            "Workers or instances replaced after a crash since start",
            registry=r,
        )
        self.instances = Gauge(
            f"{PREFIX}_backend_instances",
            "Backend workers (local) or Golem instances, by state",
            ["state"],
            registry=r,
        )
        self.glm_spent = Gauge(f"{PREFIX}_glm_spent", "GLM spent on Golem since start", registry=r)
        self.glm_budget_remaining = Gauge(
            f"{PREFIX}_glm_budget_remaining", "GLM of GOLEM_BUDGET_GLM not spent yet", registry=r
        )
        self.glm_per_1000_images = Gauge(
            f"{PREFIX}_glm_per_1000_images",
            "GLM spent per 1000 images classified on Golem",
            registry=r,
        )
        self.glm_per_hour = Gauge(
            f"{PREFIX}_glm_per_hour", "GLM spent per hour since start", registry=r
        )
        self.glm_projected_per_hour = Gauge(
            f"{PREFIX}_glm_projected_per_hour",
            "GLM per hour the live Golem agreements cost at their agreed prices",
            registry=r,
        )
        self.budget_hours_left = Gauge(
            f"{PREFIX}_glm_budget_hours_left",
            "Hours until the Golem budget runs out at the projected rate (absent: no rate)",
            registry=r,
        )
        self.instances_target = Gauge(
            f"{PREFIX}_golem_instances_target",
            "Golem instances the elastic scaler wants (its last decision)",
            registry=r,
        )
        self.answered_by = Gauge(
            f"{PREFIX}_backend_answered_by",
            "1 for the engine that answered the last request (golem or local)",
            ["engine"],
            registry=r,
        )
        self.backend_ready = Gauge(
            f"{PREFIX}_backend_ready", "1 when the backend can classify", registry=r
        )
        self.gateway_latency = Gauge(
            f"{PREFIX}_gateway_latency_seconds",
            "Discord gateway heartbeat latency",
            registry=r,
        )
        self.guilds = Gauge(f"{PREFIX}_guilds", "Servers the bot is in", registry=r)
        self._instance_states: set[str] = set()

    # --- hooks ------------------------------------------------------------------------
    def interaction(self, command: str | None, outcome: str) -> None:
        """``command``: the qualified name of one of the bot's own commands (a finite
        set; discord.py resolves nothing else), ``None`` for an unknown one."""
        self.interactions.labels(command or OTHER, outcome).inc()

    def download_failed(self, error: BaseException) -> None:
        self.download_failures.labels(type(error).__name__).inc()  # a fixed set of types

    def instrument_backend(self, backend: Backend) -> None:
        """Wrap ``classify`` and ``retrain`` of this backend instance (any signature)."""
        classify, retrain = backend.classify, backend.retrain

        @functools.wraps(classify)
        async def metered_classify(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                outcomes = await classify(*args, **kwargs)
            except BackendBusy:
                self.busy_refusals.labels("backend").inc()
                raise
            self.classification_seconds.observe(time.perf_counter() - started)
            self.images_classified.inc(sum(isinstance(o, Prediction) for o in outcomes))
            return outcomes

        @functools.wraps(retrain)
        async def metered_retrain(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                report = await retrain(*args, **kwargs)
            except BaseException:
                self.retrains.labels("failed").inc()
                raise
            self.retrains.labels("ok").inc()
            self.retrain_seconds.observe(time.perf_counter() - started)
            return report

        backend.classify = metered_classify  # type: ignore[method-assign]
        backend.retrain = metered_retrain  # type: ignore[method-assign]

    # --- scrape -----------------------------------------------------------------------
    def update_from(self, bot: Gateway, status: BackendStatus | None) -> None:
        latency = bot.latency
        if latency == latency and latency != float("inf"):  # NaN/inf before the first beat
            self.gateway_latency.set(latency)
        self.guilds.set(len(bot.guilds))
        if status is None:
            self.backend_ready.set(0)
            return
        self.backend_ready.set(1 if status.ready else 0)
        self.queue_depth.set(status.queue_depth)
        self.worker_restarts.set(status.worker_restarts)
        if status.glm_spent is not None:
            self.glm_spent.set(status.glm_spent)
        self._update_costs(status)
        counts: dict[str, int] = {}
        for instance in status.instances:
            counts[instance.state] = counts.get(instance.state, 0) + 1
        for state in self._instance_states | set(counts):  # states are a short vocabulary
            self.instances.labels(state).set(counts.get(state, 0))
        self._instance_states |= set(counts)

    def _update_costs(self, status: BackendStatus) -> None:
        costs = status.costs
        if costs is not None:
            self.glm_budget_remaining.set(max(0.0, costs.budget_glm - costs.spent_glm))
            self.glm_per_hour.set(costs.glm_per_hour)
            self.glm_projected_per_hour.set(costs.projected_glm_per_hour)
            if costs.glm_per_1000_images is not None:
                self.glm_per_1000_images.set(costs.glm_per_1000_images)
            if costs.hours_left is not None:
                self.budget_hours_left.set(costs.hours_left)
        if status.scaling:
            self.instances_target.set(status.scaling[-1].instances)
        if status.answered_by in ("golem", "local"):  # a two-word vocabulary
            for engine in ("golem", "local"):
                self.answered_by.labels(engine).set(1 if engine == status.answered_by else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
