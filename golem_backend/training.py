"""Training for the local backend, in a child process, watched from the event loop.

``TrainingRun`` starts ``child.train_in_process`` in a child process, relays its
progress messages (sent through a pipe) to an async or plain callback on the event loop,
and on success moves the validated artifact over the model path with ``os.replace``, so
the model file is always either the old model or the new one, never half of either.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import uuid
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from golem_backend import child
from golem_backend.base import BackendUnavailable, ProgressCallback, TrainReport
from golem_backend.processes import WorkerContext
from golem_backend.settings import BackendSettings

log = logging.getLogger(__name__)

_POLL_S = 0.05
_LOG_EVERY_S = 5.0
_JOIN_S = 5.0


class TrainingFailed(Exception):
    """Training did not produce a model; ``str(error)`` says why, for the user."""


def default_dataset_dir(settings: BackendSettings) -> Path:
    """The retrain dataset: ``settings.dataset_dir``, else the copy the package ships."""
    if settings.dataset_dir is not None:
        return settings.dataset_dir
    from provider.train import default_dataset  # imports numpy & co.: only when needed

    return Path(default_dataset())


def training_failure(
    exc: TrainingFailed, *, serving: bool, shutting_down: str | None
) -> BackendUnavailable:
    """The user-facing error for a failed run: shutting down, retrain, or first model."""
    if shutting_down is not None:
        return BackendUnavailable(shutting_down)
    reason = str(exc).rstrip(".")
    if serving:
        return BackendUnavailable(
            f"Retraining failed: {reason}. The current model is still in use."
        )
    return BackendUnavailable(f"Could not train the first model: {reason}.")


def report_from_summary(summary: dict[str, Any], **extra: object) -> TrainReport:
    """The :class:`TrainReport` for a finished run's summary, plus backend-specific extras."""
    return TrainReport(
        model_id=summary["model_id"],
        labels=tuple(summary["labels"]),
        n_images=summary["n_images"],
        accuracy=summary["accuracy"],
        accuracy_std=summary["accuracy_std"],
        duration_s=summary["duration_s"],
        skipped=tuple(summary["skipped"]),
        warnings=tuple(summary["warnings"]),
        confusion_png=summary["confusion_png"],
        extra={"dataset": str(summary["dataset"]), **extra},
    )


class TrainingRun:
    """One training in a child process; ``run()`` once, ``kill()`` from anywhere."""

    def __init__(
        self,
        ctx: WorkerContext,
        dataset: Path,
        model_path: Path,
        cache_path: Path | None,
        *,
        threads: int | None,
        niceness: int,
    ) -> None:
        self._ctx = ctx
        self._dataset = dataset
        self._model_path = model_path
        self._cache_path = cache_path
        self._threads = threads
        self._niceness = niceness
        self._process: BaseProcess | None = None
        self._killed = False
        self._stage = ""
        self._last_log = 0.0

    async def run(self, progress: ProgressCallback | None) -> dict[str, Any]:
        """Train, then replace the model file; returns the summary from the training process.

        Raises :class:`TrainingFailed` (dataset unusable, training crashed, or ``kill()``).
        """
        self._model_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._model_path.with_name(
            f".training-{uuid.uuid4().hex[:8]}-{self._model_path.name}"
        )
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=child.train_in_process,
            args=(
                sender,
                str(self._dataset),
                str(tmp),
                str(self._cache_path) if self._cache_path else None,
                self._threads,
                self._niceness,
            ),
            name="classifier-training",
        )
        process.start()
        sender.close()
        log.info("training a model from %s (pid %s)", self._dataset, process.pid)
        self._process = process
        produced: Path | None = None
        try:
            summary = await self._collect(process, receiver, progress)
            produced = Path(summary["model_path"])
            await asyncio.to_thread(process.join, _JOIN_S)
            if self._killed:
                raise TrainingFailed("the classifier is shutting down")
            os.replace(produced, self._model_path)
            summary["model_path"] = str(self._model_path)
            log.info(
                "trained model %s on %d images in %.1f s (accuracy %s)",
                summary["model_id"],
                summary["n_images"],
                summary["duration_s"],
                summary["accuracy"],
            )
            return summary
        finally:
            receiver.close()
            await self._stop_process(process)
            for leftover in (tmp, produced):
                if leftover is not None and leftover != self._model_path:
                    leftover.unlink(missing_ok=True)

    async def kill(self) -> None:
        """Abort the training (shutdown); ``run()`` then raises :class:`TrainingFailed`."""
        self._killed = True
        if self._process is not None:
            await self._stop_process(self._process)

    @staticmethod
    async def _stop_process(process: BaseProcess) -> None:
        if process.is_alive():
            process.terminate()
            await asyncio.to_thread(process.join, _JOIN_S)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)

    async def _collect(
        self, process: BaseProcess, receiver: Connection, progress: ProgressCallback | None
    ) -> dict[str, Any]:
        """Poll the pipe from the event loop until the training process reports its end."""
        while True:
            alive = process.is_alive()
            messages, closed = _drain(receiver)
            for index, message in enumerate(messages):
                kind = message[0]
                if kind == "done":
                    return dict(message[1])
                if kind == "error":
                    raise TrainingFailed(str(message[2]))
                following = messages[index + 1] if index + 1 < len(messages) else None
                if following is None or following[0] != "progress" or following[1] != message[1]:
                    await self._report(progress, message[1], message[2], message[3])
            if self._killed:
                raise TrainingFailed("the classifier is shutting down")
            if closed or not alive:
                raise TrainingFailed(
                    f"the training process stopped unexpectedly (exit code {process.exitcode})"
                )
            await asyncio.sleep(_POLL_S)

    async def _report(
        self, progress: ProgressCallback | None, stage: str, done: int, total: int
    ) -> None:
        """Log progress (each stage, then every few seconds) and pass it to the callback."""
        now = time.monotonic()
        if stage != self._stage or done >= total or now - self._last_log >= _LOG_EVERY_S:
            log.info("training: %s %d/%d", stage, done, total)
            self._stage, self._last_log = stage, now
        if progress is None:
            return
        try:
            result = progress(stage, done, total)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.warning("the training progress callback failed", exc_info=True)


def _drain(receiver: Connection) -> tuple[list[tuple[Any, ...]], bool]:
    """Every message already in the pipe, and whether the other end has closed it."""
    messages: list[tuple[Any, ...]] = []
    try:
        while receiver.poll():
            messages.append(receiver.recv())
    except (EOFError, OSError):
        return messages, True
    return messages, False
