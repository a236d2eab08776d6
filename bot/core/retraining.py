"""Training a scope's model from its database records: shared by /retrain and the
auto-retrain, so both take the same path, lock and quota.

One retrain per scope at a time in this process (:meth:`Retrainer.lock`); the backend
queues retrains of different servers fairly and enforces its own per-tenant limit.

A server's retrain reads the server's data generation before its images and registers its
model only if it is unchanged: a ``/forget`` (or the retention purge) while it trains
makes it register nothing and raise :class:`ScopeForgotten`, whose message tells the
member who ran it why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from pathlib import Path

from bot.core.settings import Settings
from bot.core.training_sets import build_default_dataset, server_training_set
from bot.db import ScopedData
from bot.db.scope_models import ScopeForgotten
from golem_backend import Backend, ProgressCallback, TrainReport


def model_metrics(report: TrainReport) -> dict[str, object]:
    """What the models table keeps of a training report (JSON-safe)."""
    extra = report.extra
    return {
        "accuracy": report.accuracy,
        "accuracy_std": report.accuracy_std,
        "n_images": report.n_images,
        "duration_s": round(report.duration_s, 3),
        "per_label_recall": {
            str(k): float(v) for k, v in dict(extra.get("per_label_recall") or {}).items()
        },  # type: ignore[call-overload]
        "label_counts": {str(k): int(v) for k, v in dict(extra.get("label_counts") or {}).items()},  # type: ignore[call-overload]
    }


class Retrainer:
    """Shared by /retrain, the auto-retrain and any other caller: it needs the settings
    (where the default dataset is) and the backend, not the bot."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    def lock(self, scope_id: int) -> asyncio.Lock:
        """Held for the whole of a scope's retrain (command or automatic)."""
        return self._locks[scope_id]

    async def train(
        self, target: ScopedData, progress: ProgressCallback | None
    ) -> tuple[TrainReport, int]:
        """Train from the scope's records; a server's model is registered as current.
        (The report, the number of taught images it used.) :class:`ScopeForgotten` if the
        server forgot anything while it trained: nothing is registered."""
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
