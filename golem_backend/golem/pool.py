"""The instance pool: keeps ``target`` ClassifierService instances serving.

* ``target`` starts at ``num_instances``; :meth:`InstancePool.resize` changes it (the
  elastic scaler): more are spawned, or the surplus (not yet running first, then the
  least busy) drains and stops.

* A failed instance (left ``running`` without being asked to) is replaced: with
  ``spawn_instances`` in its cluster while that cluster has time left (the market demand is
  reused), else in a new cluster; replacements that keep failing before they run are
  spawned with exponential back-off.
* A cluster's agreements end at its expiration, so ``replace_before_s`` earlier its
  instances are *retired*: successors are spawned in a new cluster, and each old instance
  keeps serving until a successor runs (or its cluster is about to expire), then *drains*
  (gets no new batches, finishes the ones it has) and is stopped.
* An instance whose provider runs other library or extractor versions than this bot (the
  version handshake, :mod:`.handshake`) is retired before anything is uploaded. It is
  replaced like a failed one (a lying provider cannot stop the bot's Golem), but once
  ``MISMATCHES_TO_HALT`` different providers have reported a mismatch the VM image itself
  is wrong: the pool stops starting instances (each start costs GLM) until a restart with
  a rebuilt image. ``version_mismatch`` keeps the error for ``/status``; it clears when an
  instance passes the handshake.
* ``target`` may be 0 (``GOLEM_MIN_INSTANCES=0``): no cluster is opened until the
  autoscaler asks for an instance.
* Batches in flight on an instance that stops for any reason are failed with
  :class:`~golem_backend.golem.batch.InstanceFailed`, so the dispatcher re-sends them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from yapapi.services import ServiceState

from golem_backend.golem.batch import ClassifyBatch, InstanceFailed
from golem_backend.golem.service import ClassifierService

logger = logging.getLogger(__name__)

_LIVE = (ServiceState.pending, ServiceState.starting, ServiceState.running)
#: Different providers reporting a version mismatch before the pool stops starting instances.
MISMATCHES_TO_HALT = 2
#: Retired instances listed in /status (state "version mismatch") while the error stands.
RETIRED_SHOWN = 4


class ClusterLike(Protocol):
    """What the pool uses of :class:`yapapi.services.Cluster` (the harness has one too)."""

    @property
    def instances(self) -> list[Any]: ...

    def spawn_instances(
        self, num_instances: int | None = None, instance_params: Iterable[dict] | None = None
    ) -> None: ...

    def stop_instance(self, service: Any) -> None: ...

    async def terminate(self) -> None: ...


#: ``open_cluster(num_instances, instance_params, expiration)`` -> a running cluster.
OpenCluster = Callable[[int, list[dict[str, Any]], datetime], Awaitable[ClusterLike]]


@dataclasses.dataclass(frozen=True, slots=True)
class DispatcherConfig:
    """Knobs of the dispatcher and its pool (see ``backend.dispatcher_config``)."""

    num_instances: int = 1
    batch_size: int = 8
    batch_wait_s: float = 0.015
    max_retries: int = 2
    queue_size: int = 64
    expiration_s: float = 180 * 60.0
    replace_before_s: float = 20 * 60.0
    max_batches_per_instance: int = 2
    monitor_interval_s: float = 0.1
    drain_timeout_s: float = 60.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    stop_grace_s: float = 5.0
    terminate_timeout_s: float = 60.0  # a cluster's terminate (agreements ended) at most


@dataclasses.dataclass(eq=False)
class Home:
    """One yapapi cluster and the monotonic time its agreements expire."""

    cluster: ClusterLike
    expires_at: float
    rolling: bool = False  # its instances are being replaced before expiration
    terminated: bool = False


@dataclasses.dataclass(eq=False)
class Worker:
    """One instance as the dispatcher sees it."""

    service: ClassifierService
    home: Home
    in_flight: dict[str, ClassifyBatch] = dataclasses.field(default_factory=dict)
    retiring: bool = False  # replaced before expiration; serves until a successor runs
    draining: bool = False  # no new batches; stopped once idle
    drain_since: float = 0.0
    stop_requested: bool = False
    was_running: bool = False
    served: int = 0  # requests answered

    @property
    def busy_images(self) -> int:
        return sum(len(batch.images) for batch in self.in_flight.values())

    @property
    def label(self) -> str:
        state = self.service.state
        if state == ServiceState.running:
            return "draining" if self.draining else "retiring" if self.retiring else "running"
        if state == ServiceState.pending:
            return "waiting for a provider"
        return str(state.value)


class InstancePool:
    """Opens clusters, watches instances, replaces them; see the module docstring."""

    def __init__(
        self,
        open_cluster: OpenCluster,
        instance_params: Callable[[], dict[str, Any]],
        config: DispatcherConfig,
        on_change: Callable[[], None],
    ) -> None:
        self._open_cluster = open_cluster
        self._instance_params = instance_params
        self.config = config
        self._on_change = on_change
        self.workers: list[Worker] = []
        self._homes: list[Home] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._closing = False
        self._start_failures = 0
        self._next_spawn_at = 0.0
        self.failures = 0  # instances that failed (not stopped by us)
        self.target = config.num_instances  # instances wanted (changed by resize)
        self.version_mismatch: str | None = None  # the handshake's last error, until one passes
        self.mismatched: dict[str, str] = {}  # provider id -> instance name, while it stands
        self.halted = False  # the image is wrong: no more instances are started

    async def start(self) -> None:
        if self.config.num_instances > 0:
            await self._open(self.config.num_instances)
        if not self._closing:  # stop() may have run while the cluster was opening
            self._monitor = asyncio.create_task(self._monitor_loop())

    def serving(self) -> list[Worker]:
        """Running instances that may get new batches."""
        return [
            w
            for w in self.workers
            if not w.draining
            and w.service.failure is None  # it failed a batch and is about to stop
            and w.service.state == ServiceState.running
        ]

    def resize(self, target: int) -> None:
        """Keep ``target`` instances from now on: spawn more, or drain the surplus."""
        self.target = max(0, target)
        fresh = [w for w in self.workers if not (w.retiring or w.draining)]
        surplus = len(fresh) - self.target
        if surplus > 0:
            now = time.monotonic()
            # instances still waiting for a provider first, then the least busy running ones
            fresh.sort(key=lambda w: (w.service.state == ServiceState.running, w.busy_images))
            for worker in fresh[:surplus]:
                self._drain(worker, now)
        self._on_change()

    async def stop(self) -> None:
        """Fail what is in flight, stop every cluster (bounded)."""
        self._closing = True
        for worker in self.workers:
            self._fail_in_flight(worker, "the backend is shutting down")
        loops = [t for t in (self._monitor, self._opening) if t is not None]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        for home in self._homes:
            self._terminate_later(home)
        if self._tasks:
            _, pending = await asyncio.wait(
                set(self._tasks), timeout=self.config.terminate_timeout_s
            )
            for task in pending:  # a provider or yagna hangs: do not wait for it
                logger.warning("a Golem cluster did not terminate in time; abandoning it")
                task.cancel()

    # --- monitoring -------------------------------------------------------------------

    async def _monitor_loop(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # never let the monitor die silently
                logger.exception("instance monitor failed")
            await asyncio.sleep(self.config.monitor_interval_s)

    def check(self) -> None:
        """One monitoring step: notice failures, expirations, drained instances, deficits."""
        now = time.monotonic()
        cfg = self.config
        for worker in list(self.workers):
            state = worker.service.state
            if state == ServiceState.running and not worker.was_running:
                worker.was_running = True
                self._start_failures = 0
                self.version_mismatch, self.mismatched = None, {}  # this one passed
                self._on_change()
            drained = not worker.in_flight or now - worker.drain_since > cfg.drain_timeout_s
            if state not in _LIVE:
                self._forget(worker, now)
            elif worker.draining and not worker.stop_requested and drained:
                self._fail_in_flight(worker, "instance drained")
                worker.stop_requested = True
                worker.home.cluster.stop_instance(worker.service)

        for home in self._homes:
            if not home.rolling and now >= home.expires_at - cfg.replace_before_s:
                logger.info("a cluster expires soon: replacing its instances")
                home.rolling = True
                for worker in self.workers:
                    if worker.home is home:
                        worker.retiring = True
        self._drain_retired(now)

        fresh = [w for w in self.workers if not (w.retiring or w.draining)]
        deficit = self.target - len(fresh)
        spawn = deficit > 0 and not self.halted and self._opening is None
        if spawn and now >= self._next_spawn_at:
            self._replace(deficit, now)
        for home in self._homes:
            empty = not any(w.home is home for w in self.workers)
            if empty and (home.rolling or now >= home.expires_at - cfg.replace_before_s):
                self._terminate_later(home)
        self._homes = [h for h in self._homes if not h.terminated]

    def _drain_retired(self, now: float) -> None:
        """Keep just enough retiring instances serving to cover successors not running yet."""
        serving = self.serving()
        running_fresh = sum(1 for w in serving if not w.retiring)
        old = sorted((w for w in serving if w.retiring), key=lambda w: -w.home.expires_at)
        keep = max(0, self.target - running_fresh)
        last_moment = min(60.0, self.config.replace_before_s / 2)
        for i, worker in enumerate(old):
            if i >= keep or now >= worker.home.expires_at - last_moment:
                self._drain(worker, now)
        for worker in self.workers:  # a retiring instance that never ran is of no use
            if worker.retiring and worker.service.state != ServiceState.running:
                self._drain(worker, now)

    def _drain(self, worker: Worker, now: float) -> None:
        if not worker.draining:
            logger.info("draining %s", worker.service.name)
            worker.draining, worker.drain_since = True, now
            self._on_change()

    def _forget(self, worker: Worker, now: float) -> None:
        if worker.stop_requested:
            logger.info("%s stopped", worker.service.name)
            reason = "instance stopped"
        else:
            reason = worker.service.failure or f"instance is {worker.service.state.value}"
            self.failures += 1
            logger.warning("%s failed: %s", worker.service.name, reason)
            if not worker.was_running:
                self._back_off(now)
            if worker.service.version_mismatch is not None:
                self._mismatched(worker.service)
        self._fail_in_flight(worker, reason)
        self.workers.remove(worker)

    def _mismatched(self, service: ClassifierService) -> None:
        self.version_mismatch = service.version_mismatch
        self.mismatched[service.provider_id or service.name] = service.name
        if len(self.mismatched) >= MISMATCHES_TO_HALT and not self.halted:
            self.halted = True
            logger.error(
                "%d providers run other classifier versions: no more Golem instances are "
                "started until the bot restarts with a rebuilt VM image",
                len(self.mismatched),
            )

    def retired(self) -> list[str]:
        """Names of the instances retired by the version handshake (while it stands)."""
        return list(self.mismatched.values())[-RETIRED_SHOWN:]

    async def forget_clusters(self) -> None:
        """End every cluster (bounded): the Golem connection is about to be reopened.
        Called with no instance left (after a budget stop)."""
        for home in self._homes:
            self._terminate_later(home)
        self._homes = []
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.terminate_timeout_s)

    def _back_off(self, now: float) -> None:
        self._start_failures += 1
        delay = self.config.backoff_base_s * 2 ** (self._start_failures - 1)
        self._next_spawn_at = now + min(self.config.backoff_max_s, delay)

    def evict(self, worker: Worker, reason: str) -> None:
        """Stop an instance the dispatcher no longer trusts (a failed canary, too many bad
        batches); its batches in flight are failed and a replacement is spawned."""
        if worker.stop_requested or worker not in self.workers:
            return
        logger.warning("replacing %s: %s", worker.service.name, reason)
        worker.service.failure = reason
        worker.stop_requested = True
        self.failures += 1
        self._fail_in_flight(worker, reason)
        worker.home.cluster.stop_instance(worker.service)
        self._on_change()

    @staticmethod
    def _fail_in_flight(worker: Worker, reason: str) -> None:
        for batch in list(worker.in_flight.values()):
            if not batch.future.done():
                batch.future.set_exception(InstanceFailed(reason))

    # --- clusters ---------------------------------------------------------------------

    def _replace(self, count: int, now: float) -> None:
        margin = 2 * self.config.replace_before_s
        reusable = [h for h in self._homes if not h.rolling and h.expires_at - now > margin]
        if not reusable:
            self._opening = asyncio.create_task(self._open_in_background(count))
            return
        home = max(reusable, key=lambda h: h.expires_at)
        logger.info("spawning %d replacement instance(s)", count)
        known = set(map(id, home.cluster.instances))
        home.cluster.spawn_instances(
            num_instances=count, instance_params=[self._instance_params() for _ in range(count)]
        )
        for service in home.cluster.instances:
            if id(service) not in known:
                self.workers.insert(0, Worker(service, home))

    async def _open_in_background(self, count: int) -> None:
        try:
            await self._open(count)
        except Exception as exc:
            self._back_off(time.monotonic())
            logger.warning("could not open a new Golem cluster: %s", exc)
        finally:
            self._opening = None

    async def _open(self, count: int) -> None:
        expiration = datetime.now(UTC) + timedelta(seconds=self.config.expiration_s)
        started = time.monotonic()
        params = [self._instance_params() for _ in range(count)]
        cluster = await self._open_cluster(count, params, expiration)
        home = Home(cluster, started + self.config.expiration_s)
        self._homes.append(home)
        if self._closing:
            self._terminate_later(home)
            return
        for service in cluster.instances:
            self.workers.insert(0, Worker(service, home))
        logger.info("opened a Golem cluster with %d instance(s)", count)

    def _terminate_later(self, home: Home) -> None:
        if not home.terminated:
            home.terminated = True
            task = asyncio.create_task(self._terminate(home.cluster))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _terminate(self, cluster: ClusterLike) -> None:
        try:
            await asyncio.wait_for(cluster.terminate(), self.config.terminate_timeout_s)
        except Exception as exc:  # already gone, or yagna unreachable
            logger.warning("could not terminate a Golem cluster cleanly: %s", exc)
