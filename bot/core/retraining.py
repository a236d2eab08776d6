"""Training a scope's model from its database records: shared by /retrain and the
auto-retrain, so both take the same path, lock and quota.

One retrain per scope at a time in this process (:meth:`Retrainer.lock`); the backend
queues retrains of different servers fairly and enforces its own per-tenant limit. While a
scope trains, :meth:`Retrainer.progress` says how far it is (whoever started it: /retrain,
the auto-retrain, the dashboard), for anyone who wants to show it.

A server's retrain reads the server's data generation before its images and registers its
model only if it is unchanged: a ``/forget`` (or the retention purge) while it trains
makes it register nothing and raise :class:`ScopeForgotten`, whose message tells the
member who ran it why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bot.core.model_quality import quality_of
from bot.core.settings import Settings
from bot.core.training_sets import build_default_dataset, server_training_set
from bot.db import ScopedData
from bot.db.scope_models import ScopeForgotten
from golem_backend import Backend, ProgressCallback, TrainReport

#: A confusion matrix is kept for at most this many labels (its JSON grows as the square).
CONFUSION_MAX_LABELS = 200


def confusion_of(extra: dict[str, object]) -> dict[str, object] | None:
    """The report's confusion matrix as ``{"labels": [...], "counts": [[...]]}`` (rows =
    true label, columns = predicted), or ``None`` when there is none or it is malformed
    (a Golem provider is not trusted: only a square table of counts is kept)."""
    labels, counts = extra.get("confusion_labels"), extra.get("confusion")
    if not isinstance(labels, list | tuple) or not isinstance(counts, list | tuple):
        return None
    n = len(labels)
    if not 0 < n <= CONFUSION_MAX_LABELS or len(counts) != n:
        return None
    rows = []
    for row in counts:
        if not isinstance(row, list | tuple) or len(row) != n:
            return None
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in row):
            return None
        rows.append([int(c) for c in row])
    return {"labels": [str(label)[:64] for label in labels], "counts": rows}


def model_metrics(report: TrainReport) -> dict[str, object]:
    """What the models table keeps of a training report (JSON-safe)."""
    extra = report.extra
    confusion = confusion_of(extra)
    quality = quality_of(extra.get("quality"))
    return {
        **({"confusion": confusion} if confusion is not None else {}),
        **({"quality": quality.to_json()} if quality is not None else {}),
        "accuracy": report.accuracy,
        "accuracy_std": report.accuracy_std,
        "n_images": report.n_images,
        "duration_s": round(report.duration_s, 3),
        "per_label_recall": {
            str(k): float(v) for k, v in dict(extra.get("per_label_recall") or {}).items()
        },  # type: ignore[call-overload]
        "label_counts": {str(k): int(v) for k, v in dict(extra.get("label_counts") or {}).items()},  # type: ignore[call-overload]
    }


@dataclass(frozen=True, slots=True)
class RetrainProgress:
    """How far a running retrain is, as the backend last reported it."""

    stage: str
    done: int
    total: int
    started_at: float  # time.time()

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total > 0 else None


class Retrainer:
    """Shared by /retrain, the auto-retrain and any other caller: it needs the settings
    (where the default dataset is) and the backend, not the bot."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._progress: dict[int, RetrainProgress] = {}

    def lock(self, scope_id: int) -> asyncio.Lock:
        """Held for the whole of a scope's retrain (command or automatic)."""
        return self._locks[scope_id]

    def progress(self, scope_id: int) -> RetrainProgress | None:
        """The scope's running retrain's progress (``None`` when none runs)."""
        return self._progress.get(scope_id)

    async def train(
        self, target: ScopedData, progress: ProgressCallback | None
    ) -> tuple[TrainReport, int]:
        """Train from the scope's records; a server's model is registered as current.
        (The report, the number of taught images it used.) :class:`ScopeForgotten` if the
        server forgot anything while it trained: nothing is registered."""
        scope_id, started = target.scope_id, time.time()
        self._progress[scope_id] = RetrainProgress("preparing the dataset", 0, 0, started)

        def noted(stage: str, done: int, total: int) -> None:  # any thread
            running = self._progress.get(scope_id)
            if running is not None and running.started_at == started:  # not after the end
                self._progress[scope_id] = RetrainProgress(stage, done, total, started)
            if progress is not None:
                progress(stage, done, total)

        try:
            return await self._train(target, noted)
        finally:
            self._progress.pop(scope_id, None)

    async def _train(
        self, target: ScopedData, progress: ProgressCallback
    ) -> tuple[TrainReport, int]:
        generation = await target.generation() if target.scope_id != 0 else None
        records = await target.taught()
        if target.scope_id == 0:
            dataset = await asyncio.to_thread(build_default_dataset, self.settings, records)
            report = await self.backend.retrain(
                dataset=dataset, progress=progress, tenant=target.tenant
            )
            return report, len(records)
        settings = await target.settings()
        training_set = server_training_set(target.models_dir, records, settings.include_default)
        await asyncio.to_thread(target.models_dir.mkdir, parents=True, exist_ok=True)
        try:
            report = await self.backend.retrain(
                progress=progress, training_set=training_set, tenant=target.tenant
            )
            path = Path(str(report.extra["model_path"]))
            await asyncio.shield(
                target.register_model(
                    report.model_id,
                    path,
                    report.labels,
                    model_metrics(report),
                    generation=generation,
                )
            )
        except Exception as exc:
            # a forget removes the images (and after /forget all the folder) under a
            # running training: whatever failed, that is the reason to give
            if generation is not None and not await target.is_generation(generation):
                await asyncio.to_thread(_remove_if_empty, target.models_dir, target.folder)
                if isinstance(exc, ScopeForgotten):
                    raise
                raise ScopeForgotten() from exc
            raise
        return report, len(records)


def _remove_if_empty(*folders: Path) -> None:
    """The folders a retrain made again after ``/forget all`` removed them (if empty)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()
