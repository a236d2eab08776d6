"""The local backend: the classifier runs in warm worker processes on this machine.

* **Workers** (:mod:`golem_backend.processes`): ``settings.local_workers`` processes
  (forkserver/spawn, never fork), each loading the model once and capping its native
  threads so N workers on N cores do not oversubscribe.
* **Micro-batching.** ``classify`` puts one job per image on a bounded queue (counted in
  images) and waits; a dispatcher task hands queued jobs to idle workers in batches of up
  to ``local_batch_size`` (while a batch runs, holding a small batch open at most
  ``local_batch_wait_ms``; with every worker idle a request goes at once), so concurrent
  callers share one forward pass through the CNN. While all workers are busy the
  queue grows, so batches grow with the load.
* **Swap.** ``retrain`` trains in its own process (:mod:`golem_backend.training`),
  ``os.replace`` s the validated artifact and switches the current model id. Each batch
  carries the model id it was dispatched with and a worker reloads when it changes, so
  batches already running finish on the old model and every later one uses the new model.
* **Crashes.** A worker that dies (``BrokenExecutor``) is replaced by a fresh process and its
  images are retried once, each alone (a poison image cannot take others down twice); a
  second crash fails that request with ``BackendUnavailable``. Every request has a deadline,
  and a worker still busy with a batch after every caller's deadline is killed and replaced.
* **Stuck batches.** Each image's decode is bounded in the worker (scan bombs are rejected
  from the markers, every decode has a CPU budget: :mod:`provider.jpeg_markers`,
  :mod:`provider.decode_deadline`). A C decoder that never returns is only stopped by
  killing its process, so a batch also has a budget of its own, ``_BATCH_BASE_S`` plus
  ``_BATCH_PER_IMAGE_S`` per image, counted in the worker's CPU seconds (a loaded machine
  slows a batch without making it stuck) and in wall time for a worker that does not
  progress at all (:mod:`golem_backend.local.stuck`), never past the request deadline:
  past it the worker is killed and replaced and the batch's images are retried one at a
  time, so innocent images are still answered in time; an image that is stuck alone is
  answered ``ImageTooComplex``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_backend.base import (
    Backend,
    BackendStatus,
    BackendTimeout,
    BackendUnavailable,
    InstanceInfo,
    ModelRef,
    Outcome,
    ProgressCallback,
    TrainingSet,
    TrainReport,
)
from golem_backend.heads import check_head_file, unusable_head
from golem_backend.lifecycle import Lifecycle
from golem_backend.local.queue import Job, RequestQueue
from golem_backend.local.stuck import run_unless_stuck
from golem_backend.processes import Worker, worker_context, worker_threads
from golem_backend.settings import BackendSettings
from golem_backend.throughput import Capacity, ThroughputMeter
from golem_backend.trainer import Trainer
from golem_backend.training import report_from_summary
from provider.errors import ImageTooComplex, ModelError

log = logging.getLogger(__name__)

_MAX_ATTEMPTS = 2  # an image whose worker crashes is retried once
_STUCK_GRACE_S = 1.0  # a batch running this long past the request timeout means a stuck worker
# A batch's own deadline: decoding is bounded to 1.5 s of CPU per image inside the worker and
# the network takes ~0.1 s per image, so this is several times what a healthy batch needs.
_BATCH_BASE_S = 5.0
_BATCH_PER_IMAGE_S = 2.0
_TOO_SLOW = "That image took too long to classify."
_CRASHED = "The classifier worker crashed; try again."
_SHUTTING_DOWN = "The classifier is shutting down."
_STOPPED_WHILE_STARTING = "The classifier was stopped while it was starting."
#: Images per second one worker is assumed to answer before any was measured (two workers
#: of the 2-core reference machine answer about 150 together under load).
PRIOR_IMAGES_PER_S = 30.0
_SERVING = ("idle", "busy", "loading")  # worker states that count towards capacity()


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
        self._threads = worker_threads(settings.local_workers, settings.local_worker_threads)
        self._workers = [
            Worker(
                f"worker-{i + 1}",
                self._ctx,
                settings.model_path,
                self._threads,
                settings.head_cache_bytes,
            )
            for i in range(settings.local_workers)
        ]
        self._queue = RequestQueue(
            settings.queue_size, settings.local_batch_size, settings.max_image_bytes
        )
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._model: _Model | None = None
        self._life = Lifecycle()
        # While serving, trainings use one thread at a lower priority so requests stay fast.
        self._trainer = Trainer(
            self._ctx, settings, serving_threads=1, shutting_down=self._shutting_down
        )
        self._batches = 0
        self._restarts = 0
        self._meter = ThroughputMeter(PRIOR_IMAGES_PER_S)
        self._crashes_for_tests = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._life.state == "stopped":
            raise BackendUnavailable("The classifier was stopped; create a new backend.")
        if self._life.state != "new":
            return
        info = await self._life.start(self._boot(), self._release, _STOPPED_WHILE_STARTING)
        self._model = _Model(info["model_id"], tuple(info["labels"]), info["accuracy"])
        self._spawn(self._dispatch_loop())
        self._life.state = "ready"
        workers, model_id = len(self._workers), self._model.model_id
        log.info("ready: model %s, %d worker(s) x %d thread(s)", model_id, workers, self._threads)

    async def _boot(self) -> dict[str, Any]:
        """Train a model if there is none (or it is unusable), start every worker on it."""
        path = self._settings.model_path
        if not path.exists():
            log.info("no model at %s; training the default model first", path)
            await self._train(None, self._progress, serving=False)
        info = await self._boot_all(None)
        if isinstance(info, ModelError):
            log.error("the model file %s is unusable (%s); training a new one", path, info)
            summary = await self._train(None, self._progress, serving=False)
            info = await self._boot_all(summary["model_id"])
            if isinstance(info, ModelError):
                raise BackendUnavailable(f"The newly trained model is unusable: {info}")
        return info

    async def _boot_all(self, model_id: str | None) -> dict[str, Any] | ModelError:
        """Start every worker on ``model_id``; the first worker's info, or the model's error."""
        results = await asyncio.gather(
            *(w.boot(model_id) for w in self._workers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, ModelError):
                return result
            if isinstance(result, BaseException):
                raise BackendUnavailable(
                    f"The classifier workers could not start: {result or type(result).__name__}"
                ) from result
        return results[0]  # type: ignore[return-value]

    async def stop(self) -> None:
        await self._life.stop(self._release)

    async def _release(self) -> None:
        """Fail every request, stop every task, the training and the workers (once)."""
        self._queue.fail_all(_SHUTTING_DOWN)
        for job in (job for worker in self._workers for job in worker.batch):
            self._queue.fail(job.request, BackendUnavailable(_SHUTTING_DOWN))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._trainer.kill_all()
        await asyncio.gather(*(w.shutdown() for w in self._workers))
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
        self._wakeup.set()
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
            if not any(w.state != "failed" for w in self._workers):
                raise BackendUnavailable("The classifier workers are down; try again later.")
            return
        raise BackendUnavailable(
            {
                "new": "The classifier is not started.",
                "starting": "The classifier is starting; try again in a moment.",
            }.get(self._life.state, _SHUTTING_DOWN)
        )

    async def _dispatch_loop(self) -> None:
        wait_s = self._settings.local_batch_wait_ms / 1000
        while True:
            self._wakeup.clear()
            delay = None
            try:
                delay = self._dispatch(wait_s)
            except Exception:  # never let the dispatcher die silently
                log.exception("dispatcher error")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wakeup.wait()

    def _dispatch(self, wait_s: float) -> float | None:
        """Send batches to idle workers; returns how long to hold a small batch open, if so."""
        assert self._model is not None
        current = self._model.model_id
        idle = sorted(
            (w for w in self._workers if w.state == "idle"), key=lambda w: w.model_id != current
        )  # workers that have the current model loaded first
        # Holding a small batch open only pays while a batch runs (more images are coming
        # and no core is free); a lone request to idle workers goes at once.
        running = any(w.state == "busy" for w in self._workers)
        while self._queue and idle:
            hold = self._queue.hold_for(wait_s) if running else 0.0
            if hold > 0:
                return hold
            worker = idle.pop(0)
            worker.state, worker.batch = "busy", self._queue.take_batch(len(idle) + 1)
            self._batches += 1
            cores = self._lendable_cores(worker)
            self._spawn(self._run_batch(worker, worker.batch, current, cores))
        for worker in idle:  # nothing queued: load a swapped-in model ahead of the next batch
            if worker.model_id != current and worker.refreshed != current:
                worker.refreshed = current
                self._spawn(self._refresh(worker, current))
        return None

    def _lendable_cores(self, worker: Worker) -> int:
        """Cores a lone image on ``worker`` may use: every worker's share while the other
        workers are idle and nothing waits, else the worker's own share."""
        alone = len(worker.batch) == 1 and not self._queue
        if alone and all(w is worker or w.state == "idle" for w in self._workers):
            return self._threads * len(self._workers)
        return self._threads

    async def _run_batch(
        self, worker: Worker, batch: list[Job], model_id: str, cores: int = 1
    ) -> None:
        # Past its budget the worker is stuck (in a C decoder, or frozen): kill it.
        budget_s = _BATCH_BASE_S + _BATCH_PER_IMAGE_S * len(batch)
        limit_s = self._settings.request_timeout_s + _STUCK_GRACE_S
        started = time.monotonic()
        answered = False
        self._meter.started(worker.name)
        try:
            if self._crashes_for_tests > 0:
                self._crashes_for_tests -= 1
                await worker.exit_for_tests()
            heads = [job.request.head for job in batch]
            work = worker.classify(
                model_id,
                [job.data for job in batch],
                max(job.request.top_k for job in batch),
                self._settings.max_image_pixels,
                heads if any(heads) else None,
                cores,
            )
            outcomes = await run_unless_stuck(work, worker.pid, budget_s, limit_s)
        except TimeoutError:
            log.error(
                "%s is stuck (no answer in %.0f s, CPU budget %.0f s); killing it",
                worker.name,
                time.monotonic() - started,
                budget_s,
            )
            worker.kill()
            self._on_stuck(worker, batch)
            return
        except BrokenExecutor:
            self._on_crash(worker, batch)
            return
        except Exception:
            log.exception("%s failed on a batch of %d image(s)", worker.name, len(batch))
            for job in batch:
                self._queue.fail(
                    job.request, BackendUnavailable("The classifier failed; try again.")
                )
        else:
            answered = True
            for job, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, ModelError):  # this request's head is unusable
                    log.error("model %s is unusable: %s", job.request.head, outcome)
                    self._queue.fail(job.request, unusable_head(job.request.head, outcome))
                else:
                    self._queue.deliver(job, outcome)
        finally:
            if answered:
                self._meter.finished(worker.name, len(batch), share=cores / self._threads)
            else:
                self._meter.abandoned(worker.name)
            worker.batch = []
            self._wakeup.set()
        worker.state = "idle"

    # --- worker failures ----------------------------------------------------------------------

    def _on_crash(self, worker: Worker, batch: list[Job]) -> None:
        name, pid = worker.name, worker.pid
        log.warning("%s (pid %s) died, %d image(s) in flight; replacing it", name, pid, len(batch))
        worker.state = "restarting"
        self._restarts += 1
        for job in batch:
            job.attempts += 1
            if job.attempts >= _MAX_ATTEMPTS:
                self._queue.fail(job.request, BackendUnavailable(_CRASHED))
        self._queue.retry_first(job for job in batch if job.attempts < _MAX_ATTEMPTS)
        self._spawn(self._replace(worker))

    def _on_stuck(self, worker: Worker, batch: list[Job]) -> None:
        """A killed stuck worker: its images are retried alone; an image stuck alone is the
        culprit and is answered as too complex (never retried: it would cost another worker)."""
        worker.state = "restarting"
        if len(batch) == 1:
            log.warning(
                "an image of %d bytes stuck %s alone; answering it", len(batch[0].data), worker.name
            )
            self._queue.deliver(batch[0], ImageTooComplex(_TOO_SLOW))
        else:
            for job in batch:
                job.attempts = max(job.attempts, 1)  # a job with attempts travels alone
            self._queue.retry_first(batch)
        self._spawn(self._replace(worker))

    def batch_deadline_s(self, images: int) -> float:
        """Seconds a batch of ``images`` may run in a frozen worker before it is killed as
        stuck (a working one may take longer: :mod:`golem_backend.local.stuck`)."""
        own = _BATCH_BASE_S + _BATCH_PER_IMAGE_S * images
        return min(own, self._settings.request_timeout_s + _STUCK_GRACE_S)

    async def _replace(self, worker: Worker) -> None:
        """Start a fresh process for ``worker``; retry with back-off while that fails."""
        attempt = 0
        while True:
            await worker.shutdown(state="restarting")
            assert self._model is not None
            try:
                await worker.boot(self._model.model_id)
                break
            except Exception as exc:
                worker.state = "failed"
                delay = min(30.0, 2.0**attempt)
                attempt += 1
                log.error("%s could not restart (%r); retrying in %.0f s", worker.name, exc, delay)
                if all(w.state == "failed" for w in self._workers):
                    self._queue.fail_all(_CRASHED)
                await asyncio.sleep(delay)
        self._wakeup.set()

    async def _refresh(self, worker: Worker, model_id: str) -> None:
        try:
            await worker.refresh(model_id)
        except TimeoutError:
            timeout = worker.load_timeout_s
            log.error(
                "%s did not load model %s in %.0f s; killing it", worker.name, model_id, timeout
            )
            worker.kill()
            self._on_crash(worker, [])
            return
        except BrokenExecutor:
            self._on_crash(worker, [])
            return
        except Exception:
            log.exception("%s could not load model %s", worker.name, model_id)
            worker.state = "idle"
        finally:
            self._wakeup.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self._wakeup.set()  # idle workers load the new model now
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
        return summary

    # --- status and test hooks ----------------------------------------------------------------

    def capacity(self) -> Capacity:
        """Rates measured from the workers' answered batches; slots for a batch on every
        serving worker and one ready behind it, within one server's share of the queue."""
        serving = [w.name for w in self._workers if w.state in _SERVING]
        if self._life.state != "ready":
            serving = []
        rate, measured = self._meter.images_per_s(serving)
        slots = min(2 * self._settings.local_batch_size * len(serving), self._queue.tenant_share)
        in_flight = len(self._queue) + sum(len(w.batch) for w in self._workers)
        return Capacity(rate, in_flight, slots, len(serving), measured)

    async def status(self) -> BackendStatus:
        model = self._model
        in_flight = sum(len(w.batch) for w in self._workers)
        return BackendStatus(
            kind=self.kind,
            ready=self._life.state == "ready" and any(w.state != "failed" for w in self._workers),
            model_id=model.model_id if model else None,
            labels=model.labels if model else (),
            accuracy=model.accuracy if model else None,
            queue_depth=len(self._queue),
            requests_served=self._queue.served,
            errors=self._queue.errors,
            instances=tuple(
                InstanceInfo(name=w.name, state=w.state, requests_served=w.served)
                for w in self._workers
            ),
            detail=(
                f"{len(self._workers)} worker(s) x {self._threads} thread(s); "
                f"{in_flight} image(s) in flight; {self._batches} batch(es) run; "
                f"{self._queue.refused} request(s) refused as busy" + self._trainer.describe()
            ),
            worker_restarts=self._restarts,
        )

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the running workers (for operators and tests)."""
        serving = ("idle", "busy", "loading")
        return tuple(w.pid for w in self._workers if w.pid is not None and w.state in serving)

    async def head_cache_stats(self) -> list[dict[str, int]]:
        """Each running worker's head cache (heads, bytes, max_bytes, hits, loads, evictions).

        Runs on the workers between batches; for operators, benchmarks and tests.
        """
        serving = [w for w in self._workers if w.alive and w.state in ("idle", "busy")]
        return list(await asyncio.gather(*(w.head_cache_stats() for w in serving)))

    @property
    def batches_dispatched(self) -> int:
        """Batches sent to workers so far (fewer than requests when batching pays off)."""
        return self._batches

    def _inject_worker_crashes_for_tests(self, batches: int) -> None:
        """Test hook: the worker running each of the next ``batches`` batches exits abruptly."""
        self._crashes_for_tests = batches
