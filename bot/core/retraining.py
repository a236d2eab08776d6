"""Training a scope's model from its database records: shared by /retrain and the
auto-retrain, so both take the same path, lock and quota.

One retrain per scope at a time in this process (:meth:`Retrainer.lock`); the backend
queues retrains of different servers fairly and enforces its own per-tenant limit.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from bot.core.settings import Settings
from bot.core.training_sets import build_default_dataset, server_training_set
from bot.db import ScopedData
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
        (The report, the number of taught images it used.)"""
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
        report = await self.backend.retrain(
            progress=progress, training_set=training_set, tenant=target.tenant
        )
        path = Path(str(report.extra["model_path"]))
        await asyncio.shield(
            target.register_model(report.model_id, path, report.labels, model_metrics(report))
        )
        return report, len(records)
