"""The local backend: the classifier runs in warm worker processes on this machine.

:class:`LocalBackend` is the ``Backend`` the bot talks to: its lifecycle (start trains a
default model when there is none or it is unusable, then boots every worker on it; stop
fails what is queued and stops everything once), ``classify`` (a request on the bounded
:class:`~golem_backend.local.queue.RequestQueue`, answered within ``request_timeout_s``),
``retrain`` and ``status``. The workers, micro-batching, crashes and stuck batches are the
:class:`~golem_backend.local.pool.WorkerPool`'s.

* **Swap.** ``retrain`` trains in its own process (:mod:`golem_backend.training`),
  ``os.replace`` s the validated artifact and switches the current model id; the pool's
  batches from then on carry the new id, those already running finish on the old model.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_backend.base import (
    Backend,
    BackendStatus,
    BackendTimeout,
    BackendUnavailable,
    ModelRef,
    Outcome,
    ProgressCallback,
    TrainingSet,
    TrainReport,
)
from golem_backend.heads import check_head_file
from golem_backend.lifecycle import Lifecycle
from golem_backend.local.pool import PRIOR_IMAGES_PER_S, WorkerPool
from golem_backend.local.queue import RequestQueue
from golem_backend.processes import worker_context
from golem_backend.settings import BackendSettings
from golem_backend.throughput import Capacity
from golem_backend.trainer import Trainer
from golem_backend.training import report_from_summary
from provider.errors import ModelError

log = logging.getLogger(__name__)

_SHUTTING_DOWN = "The classifier is shutting down."
_STOPPED_WHILE_STARTING = "The classifier was stopped while it was starting."
_SERVING = ("idle", "busy", "loading")  # worker states that count towards capacity()

__all__ = ["PRIOR_IMAGES_PER_S", "LocalBackend"]


@dataclass(frozen=True, slots=True)
class _Model:
    model_id: str
    labels: tuple[str, ...]
    accuracy: float | None


class LocalBackend(Backend):
    """Classifies in worker processes on this machine; see the module docstring.

    ``progress`` receives the training progress when ``start()`` has to train a model.
    """

    kind = "local"

    def __init__(self, settings: BackendSettings, progress: ProgressCallback | None = None) -> None:
        self._settings = settings
        self._progress = progress
        self._ctx = worker_context()
        self._queue = RequestQueue(
            settings.queue_size, settings.local_batch_size, settings.max_image_bytes
        )
        self._pool = WorkerPool(settings, self._queue, self._ctx)
        self._model: _Model | None = None
        self._life = Lifecycle()
        # While serving, trainings use one thread at a lower priority so requests stay fast.
        self._trainer = Trainer(
            self._ctx, settings, serving_threads=1, shutting_down=self._shutting_down
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._life.state == "stopped":
            raise BackendUnavailable("The classifier was stopped; create a new backend.")
        if self._life.state != "new":
            return
        info = await self._life.start(self._boot(), self._release, _STOPPED_WHILE_STARTING)
        self._model = _Model(info["model_id"], tuple(info["labels"]), info["accuracy"])
        self._pool.serve(self._model.model_id)
        self._life.state = "ready"
        workers, model_id = len(self._pool.workers), self._model.model_id
        threads = self._pool.threads
        log.info("ready: model %s, %d worker(s) x %d thread(s)", model_id, workers, threads)

    async def _boot(self) -> dict[str, Any]:
        """Train a model if there is none (or it is unusable), start every worker on it."""
        path = self._settings.model_path
        if not path.exists():
            log.info("no model at %s; training the default model first", path)
            await self._train(None, self._progress, serving=False)
        info = await self._pool.boot(None)
        if isinstance(info, ModelError):
            log.error("the model file %s is unusable (%s); training a new one", path, info)
            summary = await self._train(None, self._progress, serving=False)
            info = await self._pool.boot(summary["model_id"])
            if isinstance(info, ModelError):
                raise BackendUnavailable(f"The newly trained model is unusable: {info}")
        return info

    async def stop(self) -> None:
        await self._life.stop(self._release)

    async def _release(self) -> None:
        """Fail every request, stop every task, the training and the workers (once)."""
        self._queue.fail_all(_SHUTTING_DOWN)
        await self._pool.halt(_SHUTTING_DOWN)
        await self._trainer.kill_all()
        await self._pool.shutdown()
        log.info("local backend stopped")

    # --- serving ------------------------------------------------------------------------------

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        self._check_serving()
        if not images:
            return []
        head = None
        if model is not None:
            check_head_file(model)
            head = (model.model_id, str(model.path))
        request = self._queue.submit(images, top_k, head=head, tenant=tenant)
        self._pool.wakeup.set()
        timeout = self._settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await request.future
        except TimeoutError:
            self._queue.drop(request)
            self._queue.errors += 1
            raise BackendTimeout(
                f"The classifier did not answer within {timeout:g} s; try again."
            ) from None
        except asyncio.CancelledError:
            self._queue.drop(request)
            raise

    def _shutting_down(self) -> str | None:
        return _SHUTTING_DOWN if self._life.state == "stopped" else None

    def _check_serving(self) -> None:
        if self._life.state == "ready":
            if not self._pool.up:
                raise BackendUnavailable("The classifier workers are down; try again later.")
            return
        raise BackendUnavailable(
            {
                "new": "The classifier is not started.",
                "starting": "The classifier is starting; try again in a moment.",
            }.get(self._life.state, _SHUTTING_DOWN)
        )

    # --- training -----------------------------------------------------------------------------

    async def retrain(
        self,
        dataset: Path | None = None,
        progress: ProgressCallback | None = None,
        *,
        training_set: TrainingSet | None = None,
        tenant: str | None = None,
    ) -> TrainReport:
        self._check_serving()
        if training_set is not None:
            head = training_set
            return await self._trainer.queued(tenant, lambda: self._train_head(head, progress))
        return await self._trainer.queued(tenant, lambda: self._retrain_default(dataset, progress))

    async def _retrain_default(
        self, dataset: Path | None, progress: ProgressCallback | None
    ) -> TrainReport:
        self._check_serving()  # it may have stopped while this retrain waited its turn
        previous = self._model.model_id if self._model else None
        summary = await self._train(dataset, progress, serving=True)
        self._pool.wakeup.set()  # idle workers load the new model now
        log.info("model %s replaced by %s", previous, summary["model_id"])
        return report_from_summary(summary, previous_model_id=previous)

    async def _train_head(
        self, training_set: TrainingSet, progress: ProgressCallback | None
    ) -> TrainReport:
        self._check_serving()
        return await self._trainer.train_head(training_set, progress)

    async def _train(
        self, dataset: Path | None, progress: ProgressCallback | None, *, serving: bool
    ) -> dict[str, Any]:
        """Train in a child process, replace the model file, make it the current model."""
        summary = await self._trainer.train_default(dataset, progress, serving=serving)
        # The file was replaced just now, without an await since: from here every batch
        # dispatched carries the new id, and batches already running finish on the old model.
        self._model = _Model(summary["model_id"], tuple(summary["labels"]), summary["accuracy"])
        self._pool.model_id = self._model.model_id
        return summary

    # --- status and test hooks ----------------------------------------------------------------

    def capacity(self) -> Capacity:
        """Rates measured from the workers' answered batches; slots for a batch on every
        serving worker and one ready behind it, within one server's share of the queue."""
        pool = self._pool
        serving = [w.name for w in pool.workers if w.state in _SERVING]
        if self._life.state != "ready":
            serving = []
        rate, measured = pool.meter.images_per_s(serving)
        slots = min(2 * self._settings.local_batch_size * len(serving), self._queue.tenant_share)
        in_flight = len(self._queue) + sum(len(w.batch) for w in pool.workers)
        return Capacity(rate, in_flight, slots, len(serving), measured)

    async def status(self) -> BackendStatus:
        model, pool = self._model, self._pool
        return BackendStatus(
            kind=self.kind,
            ready=self._life.state == "ready" and pool.up,
            model_id=model.model_id if model else None,
            labels=model.labels if model else (),
            accuracy=model.accuracy if model else None,
            queue_depth=len(self._queue),
            requests_served=self._queue.served,
            errors=self._queue.errors,
            instances=pool.instances(),
            detail=(
                f"{len(pool.workers)} worker(s) x {pool.threads} thread(s); "
                f"{pool.in_flight} image(s) in flight; {pool.batches} batch(es) run; "
                f"{self._queue.refused} request(s) refused as busy" + self._trainer.describe()
            ),
            worker_restarts=pool.restarts,
        )

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the running workers (for operators and tests)."""
        return self._pool.pids

    async def head_cache_stats(self) -> list[dict[str, int]]:
        """Each running worker's head cache (heads, bytes, max_bytes, hits, loads, evictions).

        Runs on the workers between batches; for operators, benchmarks and tests.
        """
        return await self._pool.head_cache_stats()

    @property
    def batches_dispatched(self) -> int:
        """Batches sent to workers so far (fewer than requests when batching pays off)."""
        return self._pool.batches

    def batch_deadline_s(self, images: int) -> float:
        """Seconds a batch of ``images`` may run in a frozen worker before it is killed as
        stuck (a working one may take longer: :mod:`golem_backend.local.stuck`)."""
        return self._pool.batch_deadline_s(images)

    def _inject_worker_crashes_for_tests(self, batches: int) -> None:
        """Test hook: the worker running each of the next ``batches`` batches exits abruptly."""
        self._pool.inject_crashes_for_tests(batches)
