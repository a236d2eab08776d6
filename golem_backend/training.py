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
from golem_backend.base import BackendUnavailable, ProgressCallback, TrainingSet, TrainReport
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


def head_training_run(
    ctx: WorkerContext,
    settings: BackendSettings,
    training_set: TrainingSet,
    *,
    threads: int | None,
    niceness: int,
) -> TrainingRun:
    """The run that trains a server's head into ``training_set.out_dir/<model_id>.model``
    from its taught images (plus the default dataset when it says so), features cached."""
    dataset = default_dataset_dir(settings) if training_set.include_default else None
    examples = tuple((str(e.path), str(e.label)) for e in training_set.examples)
    return TrainingRun(
        ctx,
        dataset,
        Path(training_set.out_dir) / "head.model",  # renamed to <model_id>.model when done
        settings.cache_path,
        threads=threads,
        niceness=niceness,
        examples=examples,
        by_model_id=True,
    )


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
        extra={
            "dataset": str(summary["dataset"]),
            "model_path": str(summary["model_path"]),
            "per_label_recall": dict(summary.get("per_label_recall") or {}),
            "label_counts": dict(summary.get("label_counts") or {}),
            "confusion": summary.get("confusion"),  # rows = true, columns = predicted
            "confusion_labels": tuple(summary.get("confusion_labels") or ()),
            "quality": dict(summary.get("quality") or {}),
            **extra,
        },
    )


class TrainingRun:
    """One training in a child process; ``run()`` once, ``kill()`` from anywhere.

    The artifact replaces ``model_path`` (the default model), or with ``by_model_id`` goes
    to ``model_path.parent / "<model_id>.model"`` (a server's head, content-addressed).
    ``dataset`` (or None) and ``examples`` ((path, label) pairs) are trained on together.
    """

    def __init__(
        self,
        ctx: WorkerContext,
        dataset: Path | None,
        model_path: Path,
        cache_path: Path | None,
        *,
        threads: int | None,
        niceness: int,
        examples: tuple[tuple[str, str], ...] = (),
        by_model_id: bool = False,
    ) -> None:
        self._ctx = ctx
        self._dataset = dataset
        self._examples = examples
        self._by_model_id = by_model_id
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
        try:
            self._model_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            folder = self._model_path.parent
            raise TrainingFailed(
                f"the model folder {folder} cannot be created ({exc.strerror or exc})"
            ) from exc
        tmp = self._model_path.with_name(
            f".training-{uuid.uuid4().hex[:8]}-{self._model_path.name}"
        )
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=child.train_in_process,
            args=(
                sender,
                str(self._dataset) if self._dataset is not None else None,
                str(tmp),
                str(self._cache_path) if self._cache_path else None,
                self._threads,
                self._niceness,
                self._examples,
            ),
            name="classifier-training",
        )
        process.start()
        sender.close()
        source = self._dataset if self._dataset is not None else "taught images"
        taught = len(self._examples) if self._dataset is not None else 0
        plus = f" + {taught} taught images" if taught else ""
        log.info("training a model from %s%s (pid %s)", source, plus, process.pid)
        self._process = process
        produced: Path | None = None
        final: Path | None = None
        try:
            summary = await self._collect(process, receiver, progress)
            produced = Path(summary["model_path"])
            await asyncio.to_thread(process.join, _JOIN_S)
            if self._killed:
                raise TrainingFailed("the classifier is shutting down")
            final = self._model_path
            if self._by_model_id:
                final = self._model_path.parent / f"{summary['model_id']}.model"
            os.replace(produced, final)
            summary["model_path"] = str(final)
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
                if leftover is not None and leftover != final:
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
