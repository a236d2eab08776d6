"""A server's models: the current one's metrics (accuracy, per-label recall and images,
the confusion matrix), the earlier ones kept for rollback; Roll back, and Retrain with live
progress (administrators, as the commands).

A retrain runs in the background through the admin feature's :func:`run_retrain` (the
server's lock, the hourly quota, the shared retrainer: the path /retrain and the
auto-retrain take). The page shows it from ``retrain/status``, a small JSON document the
script ``static/retrain.js`` polls; without the script the page refreshes itself while a
retrain runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web

from bot.cogs.admin import RetrainRunning, rollback_model, rollback_text, run_retrain
from bot.core.errors import APOLOGY, UserError, explain
from bot.core.model_quality import quality_of
from bot.dashboard.views import bot_of, done, open_server, render, require_session, server_url
from bot.db import ModelRecord

log = logging.getLogger(__name__)

STARTED_WITHIN_S = 10.0  # how long the action waits to say "started" or why not
STATUS_TIMEOUT_S = 5.0


class RetrainTasks:
    """The retrains the dashboard started, by server (cancelled if the dashboard stops
    first; the bot's shutdown drains them like any admin job)."""

    def __init__(self) -> None:
        self.tasks: dict[int, asyncio.Task[None]] = {}

    async def start(self, request: web.Request, guild_id: int, user_id: int) -> None:
        """Start a retrain; return once it started. :class:`UserError` (the hourly quota,
        a retrain already running...) when it could not."""
        bot = bot_of(request)
        scope = bot.store.guild(guild_id)
        started = asyncio.Event()
        refused: list[BaseException] = []

        async def on_start() -> None:
            started.set()

        async def run() -> None:
            try:
                await run_retrain(bot, scope, user_id=user_id, started=on_start)
            except Exception as exc:  # a failure once started is recorded by run_retrain
                if not started.is_set():
                    refused.append(exc)
                elif explain(exc) is None:
                    log.exception("the dashboard's retrain of server %s failed", guild_id)
            finally:
                if self.tasks.get(guild_id) is asyncio.current_task():
                    del self.tasks[guild_id]

        if bot.retrainer.lock(guild_id).locked():
            raise RetrainRunning()
        task = asyncio.create_task(run(), name=f"dashboard-retrain-{guild_id}")
        self.tasks[guild_id] = task
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, timeout=STARTED_WITHIN_S, return_when="FIRST_COMPLETED")
        waiter.cancel()
        if refused:
            raise UserError(explain(refused[0]) or APOLOGY)

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def model_view(record: ModelRecord) -> dict[str, Any]:
    """What the page shows of a model's metrics (missing ones are ``None``)."""
    metrics = record.metrics
    recall = metrics.get("per_label_recall") or {}
    counts = metrics.get("label_counts") or {}
    confusion = metrics.get("confusion")
    rows = []
    for label in record.labels:
        r = recall.get(label)
        rows.append(
            {
                "label": label,
                "recall": float(r) if isinstance(r, int | float) else None,
                "images": counts.get(label),
            }
        )
    return {
        "record": record,
        "quality": quality_of(metrics.get("quality")),
        "accuracy": metrics.get("accuracy"),
        "accuracy_std": metrics.get("accuracy_std"),
        "n_images": metrics.get("n_images"),
        "labels": rows,
        "confusion": confusion if isinstance(confusion, dict) else None,
    }


async def models(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    records = await scope.models()
    current = next((m for m in records if m.is_current), None)
    return render(
        request,
        "models.html",
        {
            "server": access,
            "current": model_view(current) if current else None,
            "earlier": [m for m in records if not m.is_current],
            "status": await retrain_state(request, access.guild_id),
            "default_model_id": await default_model_id(request),
        },
    )


async def default_model_id(request: web.Request) -> str | None:
    """The default model's id, if the backend can say (the page is shown either way)."""
    try:
        async with asyncio.timeout(STATUS_TIMEOUT_S):
            return (await bot_of(request).backend.status()).model_id
    except Exception as exc:
        log.warning("the backend's status failed for the models page: %s", exc)
        return None


async def retrain_state(request: web.Request, guild_id: int) -> dict[str, Any]:
    bot = bot_of(request)
    running = bot.retrainer.lock(guild_id).locked()
    progress = bot.retrainer.progress(guild_id)
    last = await bot.store.guild(guild_id).last_retrain()
    current = await bot.store.guild(guild_id).current_model()
    state: dict[str, Any] = {
        "running": running,
        "stage": progress.stage if progress else ("starting" if running else None),
        "done": progress.done if progress else 0,
        "total": progress.total if progress else 0,
        "fraction": progress.fraction if progress else None,
        "elapsed_s": round(time.time() - progress.started_at, 1) if progress else None,
        "model_id": current.model_id if current else None,
        "last": None,
    }
    if last is not None:
        state["last"] = {
            "outcome": last.outcome,
            "detail": last.detail,
            "started_at": last.started_at.isoformat(timespec="seconds"),
        }
    return state


async def retrain_status(request: web.Request) -> web.StreamResponse:
    access, _ = await open_server(request)
    return web.json_response(await retrain_state(request, access.guild_id))


async def retrain(request: web.Request) -> web.StreamResponse:
    access, _ = await open_server(request, admin=True)
    session = require_session(request)
    back = server_url(request, "models", access)
    try:
        await request.app[RETRAINS].start(request, access.guild_id, session.user_id)
    except UserError as exc:
        raise done(request, back, exc.message.replace("**", ""), ok=False) from None
    raise done(request, back, "Retraining started: this page shows its progress.")


async def rollback(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request, admin=True)
    session = require_session(request)
    back = server_url(request, "models", access)
    try:
        previous = await rollback_model(scope, session.user_id)
    except UserError as exc:
        raise done(request, back, exc.message, ok=False) from None
    raise done(request, back, rollback_text(previous))


RETRAINS: web.AppKey[RetrainTasks] = web.AppKey("dashboard_retrains", RetrainTasks)
