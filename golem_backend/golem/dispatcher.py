"""The dispatcher: requests -> micro-batches -> instances (the instances live in ``pool``).

* A bounded request queue (``BackendBusy`` when full); retried requests jump the queue and
  are never refused.
* Micro-batching: a free instance gets up to ``batch_size`` images at once, or whatever has
  waited ``batch_wait_s``; batches go to the running, least-busy instance, with at most
  ``max_batches_per_instance`` outstanding each (so batches grow while all are busy).
* Every request ends with outcomes or a typed error: a batch whose instance fails is
  re-sent to another one, ``max_retries`` times at most (then ``BackendUnavailable``); a
  per-request timeout gives ``BackendTimeout``; shutdown fails queued requests with
  ``BackendUnavailable``.
* A batch the provider's daemon refused (:class:`BatchRefused`: a request error, the
  instance stays) is split: each of its requests is retried alone, so a "poison" request
  fails by itself (``BackendUnavailable`` with the daemon's reason) and the requests batched
  with it are answered. A request refused alone is not retried.
* A batch whose requests have all ended (timed out, cancelled) before the instance runs it
  is cancelled, and the instance skips it.
* A batch that times out on a provider blames nobody yet: its images are retried apart,
  each alone (a request of several images is split, its answers gathered again), and the
  instance is put on probation (:mod:`.health`): it gets canaries alone. If it answers them
  right, an image that timed out alone is the culprit and is answered ``too_complex`` (the
  requestor's message) without costing anyone a replacement; if not, the instance is
  replaced and the image retried elsewhere.
* Every answer is judged first (:mod:`.health`): a batch that fails a canary is dropped and
  re-run elsewhere, and its instance replaced; per-instance rates of refused batches and
  of images called broken that the requestor's decoder reads replace an instance past a
  threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from golem_backend.base import BackendBusy, BackendTimeout, BackendUnavailable, Outcome
from golem_backend.golem.batch import ClassifyBatch
from golem_backend.golem.health import HealthConfig, HealthMonitor, MixedBatch
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.golem.pool import (
    ClusterLike,
    DispatcherConfig,
    InstancePool,
    OpenCluster,
    Worker,
)
from golem_backend.golem.requests import Request
from golem_backend.golem.service import ClassifierService
from golem_backend.golem.settlement import SHUTTING_DOWN, Settlement
from golem_backend.throughput import Capacity, ThroughputMeter

logger = logging.getLogger(__name__)

__all__ = ["ClusterLike", "Dispatcher", "DispatcherConfig", "OpenCluster"]

_DISPATCH_FAILED = "The Golem backend could not send the request to a provider; try again."
_SENT = 0.0  # _dispatch() sent a batch
#: Images per second one instance is assumed to answer before any was measured (the
#: provider-side work alone is about 45 per second in batches of 8; transfers add to it).
PRIOR_IMAGES_PER_S = 10.0


class Dispatcher:
    """Routes requests to instances; see the module docstring."""

    def __init__(
        self,
        open_cluster: OpenCluster,
        instance_params: Callable[[], dict[str, Any]],
        config: DispatcherConfig,
        health: HealthMonitor | None = None,
    ) -> None:
        self.config = config
        self._wakeup = asyncio.Event()
        self.pool = InstancePool(open_cluster, instance_params, config, self._wakeup.set)
        self.health = health or HealthMonitor(HealthConfig())
        self._queue: deque[Request] = deque()
        self._loop_task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False
        self.settlement = Settlement(
            self._queue,
            self.pool,
            self.health,
            config,
            wakeup=self._wakeup.set,
            closing=lambda: self._closing,
            spawn=self._spawn,
        )
        self.errors = 0
        # --- elastic scaling and costs (issue 13) ---
        self.queue_waits: deque[float] = deque(maxlen=4096)  # s from submit to a batch
        self.meter = ThroughputMeter(PRIOR_IMAGES_PER_S)  # per instance, from answered batches
        self._demand = False  # a request went elsewhere (the fallback) while none served

    def note_demand(self) -> None:
        """A request was answered elsewhere because no instance served (scale from zero)."""
        self._demand = True

    def take_demand(self) -> bool:
        """Whether :meth:`note_demand` was called since the last look (and forget it)."""
        demand, self._demand = self._demand, False
        return demand

    @property
    def requests_served(self) -> int:
        return self.settlement.requests_served

    @property
    def images_served(self) -> int:
        """Images answered (for the cost per 1000 images)."""
        return self.settlement.images_served

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a watcher (``stop()`` waits for them)."""
        task = asyncio.create_task(work)
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    # --- public -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.pool.start()
        if not self._closing:  # stop() may have run while the pool was starting
            self._loop_task = asyncio.create_task(self._dispatch_loop())

    async def submit(
        self,
        images: list[bytes],
        top_k: int,
        timeout_s: float,
        head: ModelArtifact | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        """Classify ``images`` (with a server's ``head``, or the uploaded model); one outcome
        per image, or a typed error for the request."""
        if self._closing:
            raise BackendUnavailable(SHUTTING_DOWN)
        waiting = self.queue_depth
        if waiting >= self.config.queue_size:
            raise BackendBusy(
                f"The Golem backend already has {waiting} requests waiting; try again in a moment."
            )
        share = max(1, self.config.queue_size // 2)
        if tenant is not None and self._queued_for(tenant) >= share:
            raise BackendBusy(
                "This server is sending too many requests at once "
                f"(at most {share} waiting per server); try again in a moment."
            )
        loop = asyncio.get_running_loop()
        req = Request(
            list(images), top_k, loop.create_future(), time.monotonic(), head=head, tenant=tenant
        )
        self._queue.append(req)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(req.future), timeout_s)
        except TimeoutError:
            self.errors += 1
            raise BackendTimeout(self._timeout_message(timeout_s)) from None
        except BackendUnavailable:
            self.errors += 1
            raise
        finally:
            if not req.future.done():
                req.future.cancel()  # dropped from the queue, or its late result ignored

    async def sync_model(self, timeout_s: float) -> int:
        """Bring every serving instance to the current model; returns how many confirmed."""
        loop = asyncio.get_running_loop()
        futures = []
        for worker in self.pool.serving():
            batch = ClassifyBatch(_batch_id(), [], 1, loop.create_future())
            self._send(worker, batch, [])
            futures.append(batch.future)
        if not futures:
            return 0
        done, _ = await asyncio.wait(futures, timeout=timeout_s)
        return sum(1 for f in done if not f.cancelled() and f.exception() is None)

    def _queued_for(self, tenant: str) -> int:
        return sum(1 for r in self._queue if r.tenant == tenant and not r.future.done())

    @property
    def queue_depth(self) -> int:
        return sum(1 for r in self._queue if not r.future.done())

    def fail_waiting(self, message: str) -> None:
        """Fail every request still waiting for an instance (e.g. the budget is spent)."""
        while self._queue:
            req = self._queue.popleft()
            if not req.future.done():
                req.future.set_exception(BackendUnavailable(message))

    def oldest_wait_s(self) -> float:
        """How long the oldest request still waiting for an instance has waited."""
        oldest = next((r.enqueued_at for r in self._queue if not r.future.done()), None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    @property
    def in_flight(self) -> int:
        """Batches on instances now."""
        return sum(len(w.in_flight) for w in self.pool.workers)

    @property
    def ready(self) -> bool:
        return bool(self.pool.serving())

    def capacity(self, *, from_zero: bool = False) -> Capacity:
        """The serving instances' measured rates; slots for ``max_batches_per_instance``
        full batches on each, within one server's share of the queue. ``from_zero``: no
        instance serves by policy (scaled to zero) and a request is what starts one, so
        the first instance counts at its prior rate (its start-up does not)."""
        serving = self.pool.serving()
        self.meter.retain(w.service.id for w in self.pool.workers)
        rate, measured = self.meter.images_per_s(w.service.id for w in serving)
        instances = len(serving)
        if from_zero and not serving:
            rate, instances = self.meter.rate_of("the first instance"), 1
        per_instance = self.config.batch_size * self.config.max_batches_per_instance
        slots = min(per_instance * instances, max(1, self.config.queue_size // 2))
        queued = sum(len(r.images) for r in self._queue if not r.future.done())
        in_flight = queued + sum(w.busy_images for w in self.pool.workers)
        return Capacity(rate, in_flight, slots, len(serving), measured)

    @property
    def instance_failures(self) -> int:
        return self.pool.failures

    def instances(self) -> list[tuple[ClassifierService, str, int]]:
        """(service, state label, requests served) of every live instance."""
        return [(w.service, w.label, w.served) for w in self.pool.workers]

    async def stop(self) -> None:
        """Fail queued requests, give in-flight batches a short grace, stop the pool."""
        if self._closing:
            return
        self._closing = True
        while self._queue:
            req = self._queue.popleft()
            if not req.future.done():
                req.future.set_exception(BackendUnavailable(SHUTTING_DOWN))
        pending = [b.future for w in self.pool.workers for b in w.in_flight.values()]
        if pending:
            await asyncio.wait(pending, timeout=self.config.stop_grace_s)
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self.pool.stop()  # fails what is still in flight
        if self._watchers:  # they fail those requests with BackendUnavailable
            await asyncio.wait(set(self._watchers), timeout=5)

    # --- dispatching ------------------------------------------------------------------

    def _pick_worker(self) -> Worker | None:
        """The least busy instance free for a batch that some queued request may go to."""
        limit = self.config.max_batches_per_instance
        avoided = [r.avoid for r in self._queue if r.avoid and not r.future.done()]
        free = [
            w
            for w in self.pool.serving()
            if len(w.in_flight) < limit
            and not self.health.of(w.service).on_probation
            and (len(avoided) < self.queue_depth or any(w.service.id not in a for a in avoided))
        ]
        return min(free, key=lambda w: (w.busy_images, w.retiring), default=None)

    async def _dispatch_loop(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                timeout = self._dispatch()
            except Exception:  # never let the dispatcher die silently
                logger.exception("Golem dispatcher error")
                timeout = None
            if timeout == _SENT:
                continue  # look again at once: more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _dispatch(self) -> float | None:
        """Send one batch if one is due (returns ``_SENT``), else how long to hold it open."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        worker = self._pick_worker() if self._queue else None
        if worker is None:
            return None
        queued = sum(len(r.images) for r in self._queue if not r.future.done())
        wait = self._queue[0].enqueued_at + self.config.batch_wait_s - time.monotonic()
        if queued < self.config.batch_size and wait > 0:
            return wait
        reqs = self._take_batch(worker.service.id)
        if not reqs:
            return None
        try:
            self._send_requests(worker, reqs)
        except Exception:
            for req in reqs:  # taken off the queue: fail them rather than lose them
                if not req.future.done():
                    req.future.set_exception(BackendUnavailable(_DISPATCH_FAILED))
            raise
        return _SENT

    def _take_batch(self, instance: str) -> list[Request]:
        """The queue's first requests for ``instance`` (passing those that avoid it)."""
        taken: list[Request] = []
        passed: list[Request] = []
        size = 0
        while self._queue:
            req = self._queue[0]
            if req.future.done():
                self._queue.popleft()
                continue
            if instance in req.avoid:
                passed.append(self._queue.popleft())
                continue
            if taken and (req.alone or size + len(req.images) > self.config.batch_size):
                break
            taken.append(self._queue.popleft())
            size += len(req.images)
            if req.alone:
                break
        self._queue.extendleft(reversed(passed))
        return taken

    def _send_requests(self, worker: Worker, reqs: list[Request]) -> None:
        images = [img for r in reqs for img in r.images]
        heads = [r.head for r in reqs for _ in r.images] if any(r.head for r in reqs) else []
        mixed = self.health.mix(worker.service, images, list(heads))
        top_k = max(r.top_k for r in reqs)
        now = time.monotonic()
        self.queue_waits.extend(now - r.enqueued_at for r in reqs if not r.attempts)
        future = asyncio.get_running_loop().create_future()
        batch = ClassifyBatch(_batch_id(), mixed.images, top_k, future, mixed.heads)
        self._send(worker, batch, reqs, mixed)

    def _send(
        self,
        worker: Worker,
        batch: ClassifyBatch,
        reqs: list[Request],
        mixed: MixedBatch | None = None,
    ) -> None:
        worker.in_flight[batch.batch_id] = batch
        try:
            worker.service.send_message_nowait(batch)
        except BaseException:
            del worker.in_flight[batch.batch_id]
            raise
        self._spawn(self.settlement.watch(worker, batch, reqs, mixed))
        if reqs:  # not a model sync: measured, and dropped once nobody waits for it
            self._measure(worker.service.id, batch, sum(len(r.images) for r in reqs))

            def abandon(_: object) -> None:
                if not batch.future.done() and all(r.future.done() for r in reqs):
                    batch.future.cancel()  # the instance skips it if it has not started it

            for req in reqs:
                req.future.add_done_callback(abandon)

    def _measure(self, instance: str, batch: ClassifyBatch, images: int) -> None:
        """Count the batch's busy time and ``images`` towards ``instance``'s rate once it
        is answered (a failed or dropped batch counts nothing: :mod:`golem_backend.throughput`)."""
        self.meter.started(instance)

        def ended(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.meter.abandoned(instance)
            else:
                self.meter.finished(instance, images)

        batch.future.add_done_callback(ended)

    def _timeout_message(self, timeout_s: float) -> str:
        if self.ready:
            return f"The Golem backend did not answer within {timeout_s:.0f} s; try again."
        return (
            f"No Golem provider is running the classifier yet (waited {timeout_s:.0f} s); "
            "try again in a minute."
        )


def _batch_id() -> str:
    return f"batch-{uuid.uuid4().hex[:12]}"
