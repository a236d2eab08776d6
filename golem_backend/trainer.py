"""Retraining as both backends do it: in child processes on this machine, queued fairly.

A :class:`Trainer` runs the default model's trainings (which replace
``settings.model_path``) and servers' head trainings (which write
``<out_dir>/<model_id>.model`` and change nothing else), keeps track of the running ones so
a shutdown can stop them, and puts every retrain through the shared
:class:`~golem_backend.retrain_queue.RetrainQueue` (one per tenant, ``RETRAIN_CONCURRENCY``
at once, ``RETRAIN_TIMEOUT_S``). The first model, trained at start, skips the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from golem_backend.base import ProgressCallback, TrainingSet, TrainReport
from golem_backend.processes import WorkerContext
from golem_backend.retrain_queue import RetrainQueue
from golem_backend.settings import BackendSettings
from golem_backend.training import (
    TrainingFailed,
    TrainingRun,
    default_dataset_dir,
    head_training_run,
    report_from_summary,
    training_failure,
)

T = TypeVar("T")


class Trainer:
    """Trainings in child processes; see the module docstring.

    ``serving_threads``: native threads of a training while the backend serves (1 for the
    local backend, whose workers need the cores; None for Golem, which classifies elsewhere).
    ``shutting_down()`` says whether the backend is stopping, and then with what message.
    """

    def __init__(
        self,
        ctx: WorkerContext,
        settings: BackendSettings,
        *,
        serving_threads: int | None,
        shutting_down: Callable[[], str | None],
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._serving_threads = serving_threads
        self._shutting_down = shutting_down
        self._runs: set[TrainingRun] = set()
        self.queue = RetrainQueue(settings.retrain_concurrency, settings.retrain_timeout_s)

    @property
    def active(self) -> bool:
        return bool(self._runs)

    def describe(self) -> str:
        """``"; 1 retrain(s) running, 2 waiting"``, or "" when idle (for ``/status``)."""
        running, waiting = self.queue.running, self.queue.waiting
        if not running and not waiting:
            return ""
        return f"; {running} retrain(s) running" + (f", {waiting} waiting" if waiting else "")

    async def queued(self, tenant: str | None, retrain: Callable[[], Awaitable[T]]) -> T:
        """Run ``retrain()`` through the fair queue (see :class:`RetrainQueue`)."""
        return await self.queue.run(tenant, retrain)

    async def train_default(
        self, dataset: Path | None, progress: ProgressCallback | None, *, serving: bool
    ) -> dict[str, Any]:
        """Train the default model and replace ``settings.model_path``; the run's summary."""
        source = Path(dataset) if dataset else default_dataset_dir(self._settings)
        run = TrainingRun(
            self._ctx,
            source,
            self._settings.model_path,
            self._settings.cache_path,
            # While serving, train at a lower priority (and maybe fewer threads).
            threads=self._serving_threads if serving else None,
            niceness=5 if serving else 0,
        )
        summary = await self._run(run, progress, serving=serving)
        summary["dataset"] = source
        return summary

    async def train_head(
        self, training_set: TrainingSet, progress: ProgressCallback | None
    ) -> TrainReport:
        """Train a server's head into ``training_set.out_dir``; the default model stays."""
        run = head_training_run(
            self._ctx, self._settings, training_set, threads=self._serving_threads, niceness=5
        )
        summary = await self._run(run, progress, serving=True)
        summary["dataset"] = f"{len(training_set.examples)} taught image(s)" + (
            " + the default dataset" if training_set.include_default else ""
        )
        return report_from_summary(summary)

    async def _run(
        self, run: TrainingRun, progress: ProgressCallback | None, *, serving: bool
    ) -> dict[str, Any]:
        self._runs.add(run)
        try:
            return await run.run(progress)
        except TrainingFailed as exc:
            raise training_failure(
                exc, serving=serving, shutting_down=self._shutting_down()
            ) from None
        finally:
            self._runs.discard(run)

    async def kill_all(self) -> None:
        """Stop every running training (shutdown); their callers get the shutdown error."""
        await asyncio.gather(*(run.kill() for run in list(self._runs)))
