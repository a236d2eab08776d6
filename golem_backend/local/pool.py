"""The local backend's worker pool: warm worker processes, the batches they run, and what
happens when one crashes or gets stuck.

* **Workers** (:mod:`golem_backend.processes`): ``settings.local_workers`` processes
  (forkserver/spawn, never fork), each loading the model once and capping its native
  threads so N workers on N cores do not oversubscribe.
* **Micro-batching.** ``classify`` puts one job per image on the bounded
  :class:`~golem_backend.local.queue.RequestQueue` and wakes the dispatcher, a task that
  hands queued jobs to idle workers in batches of up to ``local_batch_size`` (while a batch
  runs, holding a small batch open at most ``local_batch_wait_ms``; with every worker idle
  a request goes at once), so concurrent callers share one forward pass through the CNN.
  While all workers are busy the queue grows, so batches grow with the load.
* **Swap.** Each batch carries the model id it was dispatched with (:attr:`WorkerPool.
  model_id` when it left) and a worker reloads when it changes, so batches already running
  finish on the old model and every later one uses the new model; idle workers load a new
  model ahead of the next batch.
* **Crashes.** A worker that dies (``BrokenExecutor``) is replaced by a fresh process and its
  images are retried once, each alone (a poison image cannot take others down twice); a
  second crash fails that request with ``BackendUnavailable``.
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
from typing import Any

from golem_backend.base import BackendUnavailable, InstanceInfo
from golem_backend.heads import unusable_head
from golem_backend.local.queue import Job, RequestQueue
from golem_backend.local.stuck import run_unless_stuck
from golem_backend.processes import Worker, WorkerContext, worker_threads
from golem_backend.settings import BackendSettings
from golem_backend.throughput import ThroughputMeter
from provider.errors import ImageTooComplex, ModelError

log = logging.getLogger(__name__)

#: Images per second one worker is assumed to answer before any was measured (two workers
#: of the 2-core reference machine answer about 150 together under load).
PRIOR_IMAGES_PER_S = 30.0

_MAX_ATTEMPTS = 2  # an image whose worker crashes is retried once
_STUCK_GRACE_S = 1.0  # a batch running this long past the request timeout means a stuck worker
# A batch's own deadline: decoding is bounded to 1.5 s of CPU per image inside the worker and
# the network takes ~0.1 s per image, so this is several times what a healthy batch needs.
_BATCH_BASE_S = 5.0
_BATCH_PER_IMAGE_S = 2.0
_TOO_SLOW = "That image took too long to classify."
CRASHED = "The classifier worker crashed; try again."


class WorkerPool:
    """``settings.local_workers`` workers fed from ``queue``; see the module docstring."""

    def __init__(self, settings: BackendSettings, queue: RequestQueue, ctx: WorkerContext) -> None:
        self._settings = settings
        self._queue = queue
        self.threads = worker_threads(settings.local_workers, settings.local_worker_threads)
        self.workers = [
            Worker(
                f"worker-{i + 1}",
                ctx,
                settings.model_path,
                self.threads,
                settings.head_cache_bytes,
            )
            for i in range(settings.local_workers)
        ]
        #: The current model: every batch dispatched from now on carries it.
        self.model_id: str | None = None
        self.wakeup = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.restarts = 0
        self.meter = ThroughputMeter(PRIOR_IMAGES_PER_S)  # per worker, from answered batches
        self._crashes_for_tests = 0

    # --- start and stop -----------------------------------------------------------------------

    async def boot(self, model_id: str | None) -> dict[str, Any] | ModelError:
        """Start every worker on ``model_id``; the first worker's info, or the model's error."""
        results = await asyncio.gather(
            *(w.boot(model_id) for w in self.workers), return_exceptions=True
        )
        for result in results:
            if isinstance(result, ModelError):
                return result
            if isinstance(result, BaseException):
                raise BackendUnavailable(
                    f"The classifier workers could not start: {result or type(result).__name__}"
                ) from result
        return results[0]  # type: ignore[return-value]

    def serve(self, model_id: str) -> None:
        """Start dispatching the queue's jobs on ``model_id``."""
        self.model_id = model_id
        self.spawn(self._dispatch_loop())

    async def halt(self, reason: str) -> None:
        """Fail the images in flight with ``reason`` and stop every task (the dispatcher,
        batches, replacements); the workers keep running until :meth:`shutdown`."""
        for job in (job for worker in self.workers for job in worker.batch):
            self._queue.fail(job.request, BackendUnavailable(reason))
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))

    # --- what the backend reports -------------------------------------------------------------

    @property
    def up(self) -> bool:
        """At least one worker can serve (or is being replaced)."""
        return any(w.state != "failed" for w in self.workers)

    @property
    def in_flight(self) -> int:
        return sum(len(w.batch) for w in self.workers)

    def instances(self) -> tuple[InstanceInfo, ...]:
        return tuple(
            InstanceInfo(name=w.name, state=w.state, requests_served=w.served) for w in self.workers
        )

    @property
    def pids(self) -> tuple[int, ...]:
        serving = ("idle", "busy", "loading")
        return tuple(w.pid for w in self.workers if w.pid is not None and w.state in serving)

    async def head_cache_stats(self) -> list[dict[str, int]]:
        serving = [w for w in self.workers if w.alive and w.state in ("idle", "busy")]
        return list(await asyncio.gather(*(w.head_cache_stats() for w in serving)))

    def batch_deadline_s(self, images: int) -> float:
        """Seconds a batch of ``images`` may run in a frozen worker before it is killed as
        stuck (a working one may take longer: :mod:`golem_backend.local.stuck`)."""
        own = _BATCH_BASE_S + _BATCH_PER_IMAGE_S * images
        return min(own, self._settings.request_timeout_s + _STUCK_GRACE_S)

    def inject_crashes_for_tests(self, batches: int) -> None:
        """Test hook: the worker running each of the next ``batches`` batches exits abruptly."""
        self._crashes_for_tests = batches

    # --- dispatch -----------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        wait_s = self._settings.local_batch_wait_ms / 1000
        while True:
            self.wakeup.clear()
            delay = None
            try:
                delay = self._dispatch(wait_s)
            except Exception:  # never let the dispatcher die silently
                log.exception("dispatcher error")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wakeup.wait()

    def _dispatch(self, wait_s: float) -> float | None:
        """Send batches to idle workers; returns how long to hold a small batch open, if so."""
        current = self.model_id
        assert current is not None
        idle = sorted(
            (w for w in self.workers if w.state == "idle"), key=lambda w: w.model_id != current
        )  # workers that have the current model loaded first
        # Holding a small batch open only pays while a batch runs (more images are coming
        # and no core is free); a lone request to idle workers goes at once.
        running = any(w.state == "busy" for w in self.workers)
        while self._queue and idle:
            hold = self._queue.hold_for(wait_s) if running else 0.0
            if hold > 0:
                return hold
            worker = idle.pop(0)
            worker.state, worker.batch = "busy", self._queue.take_batch(len(idle) + 1)
            self.batches += 1
            cores = self._lendable_cores(worker)
            self.spawn(self._run_batch(worker, worker.batch, current, cores))
        for worker in idle:  # nothing queued: load a swapped-in model ahead of the next batch
            if worker.model_id != current and worker.refreshed != current:
                worker.refreshed = current
                self.spawn(self._refresh(worker, current))
        return None

    def _lendable_cores(self, worker: Worker) -> int:
        """Cores a lone image on ``worker`` may use: every worker's share while the other
        workers are idle and nothing waits, else the worker's own share."""
        alone = len(worker.batch) == 1 and not self._queue
        if alone and all(w is worker or w.state == "idle" for w in self.workers):
            return self.threads * len(self.workers)
        return self.threads

    async def _run_batch(
        self, worker: Worker, batch: list[Job], model_id: str, cores: int = 1
    ) -> None:
        # Past its budget the worker is stuck (in a C decoder, or frozen): kill it.
        budget_s = _BATCH_BASE_S + _BATCH_PER_IMAGE_S * len(batch)
        limit_s = self._settings.request_timeout_s + _STUCK_GRACE_S
        started = time.monotonic()
        answered = False
        self.meter.started(worker.name)
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
                self.meter.finished(worker.name, len(batch), share=cores / self.threads)
            else:
                self.meter.abandoned(worker.name)
            worker.batch = []
            self.wakeup.set()
        worker.state = "idle"

    # --- worker failures ----------------------------------------------------------------------

    def _on_crash(self, worker: Worker, batch: list[Job]) -> None:
        name, pid = worker.name, worker.pid
        log.warning("%s (pid %s) died, %d image(s) in flight; replacing it", name, pid, len(batch))
        worker.state = "restarting"
        self.restarts += 1
        for job in batch:
            job.attempts += 1
            if job.attempts >= _MAX_ATTEMPTS:
                self._queue.fail(job.request, BackendUnavailable(CRASHED))
        self._queue.retry_first(job for job in batch if job.attempts < _MAX_ATTEMPTS)
        self.spawn(self._replace(worker))

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
        self.spawn(self._replace(worker))

    async def _replace(self, worker: Worker) -> None:
        """Start a fresh process for ``worker``; retry with back-off while that fails."""
        attempt = 0
        while True:
            await worker.shutdown(state="restarting")
            assert self.model_id is not None
            try:
                await worker.boot(self.model_id)
                break
            except Exception as exc:
                worker.state = "failed"
                delay = min(30.0, 2.0**attempt)
                attempt += 1
                log.error("%s could not restart (%r); retrying in %.0f s", worker.name, exc, delay)
                if all(w.state == "failed" for w in self.workers):
                    self._queue.fail_all(CRASHED)
                await asyncio.sleep(delay)
        self.wakeup.set()

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
            self.wakeup.set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
