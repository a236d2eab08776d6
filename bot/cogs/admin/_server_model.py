"""A server's model: retraining it and rolling it back, whoever asks (/retrain, the
auto-retrain, ``/model rollback``, the dashboard). The caller has checked who may.

:func:`run_retrain` is the one way a retrain runs: the scope's lock (one at a time; a
second is refused with :class:`RetrainRunning`), tracked by the admission
(``bot.admission.tracked()``: never refused for load, refused while shutting down, given
the shutdown's grace to finish), the retrains-per-hour quota (``QuotaExceeded`` before
anything starts), the shared :class:`~bot.core.retraining.Retrainer` (a server that forgot
anything while it trained registers nothing: :class:`~bot.db.scope_models.ScopeForgotten`, whose
message is the reason recorded and shown), and the outcome recorded either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.core.errors import APOLOGY, UserError, explain
from bot.db import ModelRecord, ScopedData
from golem_backend import ProgressCallback, TrainReport

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)


class RetrainRunning(UserError):
    def __init__(self) -> None:
        super().__init__("A retrain of this model is already running; wait for it to finish.")


def failure_reason(exc: BaseException) -> str:
    """What to tell people about a failed retrain."""
    if isinstance(exc, asyncio.CancelledError):
        return "the bot is shutting down"
    reason = explain(exc) if isinstance(exc, Exception) else None
    return reason or APOLOGY


async def run_retrain(
    bot: ClassifierBot,
    target: ScopedData,
    *,
    user_id: int,
    progress: ProgressCallback | None = None,
    started: Callable[[], Awaitable[None]] | None = None,
) -> tuple[TrainReport, int]:
    """Retrain ``target``'s model; ``started()`` once the quota let it start. (The report,
    the number of taught images it used.) A failure is recorded with its reason and
    raised."""
    lock = bot.retrainer.lock(target.scope_id)
    if lock.locked():
        raise RetrainRunning()
    async with lock, bot.admission.tracked():
        retrain_id = await target.start_retrain(user_id)  # the hourly quota
        if started is not None:
            await started()
        try:
            report, taught = await bot.retrainer.train(target, progress)
        except BaseException as exc:
            reason = failure_reason(exc)
            await asyncio.shield(target.finish_retrain(retrain_id, "failed", reason))
            raise
        await target.finish_retrain(retrain_id, "ok", report.model_id)
        log.info(
            "retrained %s: model %s accuracy %s by %s",
            target.tenant,
            report.model_id,
            report.accuracy,
            user_id or "the auto-retrain",
        )
        return report, taught


async def rollback_model(scope: ScopedData, user_id: int) -> ModelRecord | None:
    """Drop the server's current model: its previous one (or the default model, ``None``)
    answers from now on. :class:`UserError` when the server has no model of its own."""
    previous = await asyncio.shield(scope.rollback())
    log.info("server %s: model rollback by %s", scope.scope_id, user_id)
    return previous


def rollback_text(previous: ModelRecord | None) -> str:
    if previous is None:
        return "Rolled back: this server now uses the default model."
    return f"Rolled back: this server now uses model {previous.model_id}."
