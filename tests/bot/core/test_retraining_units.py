"""bot/core/retraining.py: what a model's record keeps of a training report (the confusion
matrix, checked: a Golem provider is not trusted) and the progress of a running retrain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.core.retraining import CONFUSION_MAX_LABELS, Retrainer, confusion_of, model_metrics
from bot.db import Store
from golem_backend import TrainReport
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import png_bytes, settings_from_env


def report(**extra: object) -> TrainReport:
    return TrainReport("m1", ("a", "b"), 4, 0.75, 0.1, 1.0, extra=dict(extra))


def test_a_confusion_matrix_is_kept_with_its_labels():
    metrics = model_metrics(report(confusion=[[3, 1], [0, 4]], confusion_labels=("a", "b")))
    assert metrics["confusion"] == {"labels": ["a", "b"], "counts": [[3, 1], [0, 4]]}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"confusion": [[1, 2], [3, 4]]},  # no labels
        {"confusion": [[1, 2]], "confusion_labels": ["a", "b"]},  # not square
        {"confusion": [[1, 2], [3]], "confusion_labels": ["a", "b"]},
        {"confusion": [[1, -2], [3, 4]], "confusion_labels": ["a", "b"]},
        {"confusion": [[1, 2.5], [3, 4]], "confusion_labels": ["a", "b"]},
        {"confusion": [[True, 2], [3, 4]], "confusion_labels": ["a", "b"]},
        {"confusion": "[[1]]", "confusion_labels": ["a"]},
        {
            "confusion": [[0] * (CONFUSION_MAX_LABELS + 1)] * (CONFUSION_MAX_LABELS + 1),
            "confusion_labels": [str(i) for i in range(CONFUSION_MAX_LABELS + 1)],
        },
    ],
    ids=["none", "no-labels", "not-square", "ragged", "negative", "float", "bool", "str", "huge"],
)
def test_a_malformed_confusion_matrix_is_dropped(extra: dict[str, object]):
    assert confusion_of(extra) is None
    assert "confusion" not in model_metrics(report(**extra))


async def test_a_running_retrain_reports_its_progress_until_it_ends(tmp_path: Path):
    settings = settings_from_env({"DISCORD_TOKEN": "x.y.z", "DATA_DIR": str(tmp_path)})
    backend = ScriptedBackend()
    backend.retrain_steps, backend.retrain_step_s = 3, 0.05
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", tmp_path)
    await store.open()
    try:
        scope = store.guild(42)
        await scope.add_taught("a", png_bytes(), "png", user_id=1, user_name="u")
        retrainer = Retrainer(settings, backend)
        assert retrainer.progress(42) is None
        task = asyncio.create_task(retrainer.train(scope, None))
        seen = []
        while not task.done():
            running = retrainer.progress(42)
            if running is not None:
                seen.append((running.stage, running.done, running.total))
            await asyncio.sleep(0.01)
        await task
        assert ("training", 0, 3) in seen and ("training", 2, 3) in seen
        assert retrainer.progress(42) is None
        assert retrainer.progress(43) is None  # another server: nothing
    finally:
        await store.close()
