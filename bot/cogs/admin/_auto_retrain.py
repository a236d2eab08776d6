"""Optional auto-retrain per server: after N new taught images (``/settings auto_retrain:N``).

It listens on the store (``Store.taught_listeners``), so every way an image is taught
(``/teach``, approved corrections...) counts. A retrain it starts takes the same path as
/retrain (``bot.core.retraining``): the server's lock, its retrains-per-hour quota (past it the
auto-retrain is refused, logged and shown in ``/settings``) and the backend's retrain
queue. The count is of images taught since the last retrain started (a retrain that
fails gives its count back); a refused or failed auto-retrain is tried again at the next
taught image.

Once after start it also retrains every server whose current model this version cannot
use (:meth:`AutoRetrainCog.retrain_stale_models`): an upgrade that changes the features
would otherwise leave those servers on the default model until someone ran /retrain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from discord.ext import commands

from bot.cogs.admin._server_model import RetrainRunning, run_retrain
from bot.core.client import ClassifierBot
from bot.core.errors import explain
from bot.db import QuotaExceeded
from golem_backend import model_incompatibility

log = logging.getLogger(__name__)

#: ``retrains.user_id`` of a retrain the bot started by itself.
AUTO_RETRAIN_USER = 0


@dataclass(frozen=True, slots=True)
class AutoRetrainOutcome:
    at: float  # time.time()
    ok: bool
    detail: str  # the model id, or why it did not run / failed


class AutoRetrainCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.again: set[int] = set()
        self.outcomes: dict[int, AutoRetrainOutcome] = {}
        self.upgrade: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self.bot.store.taught_listeners.append(self.taught)

    async def cog_unload(self) -> None:
        with contextlib.suppress(ValueError):
            self.bot.store.taught_listeners.remove(self.taught)
        tasks = [*self.tasks.values(), *([self.upgrade] if self.upgrade else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def taught(self, scope_id: int) -> None:
        """A new taught image was recorded in ``scope_id`` (called by the store)."""
        if scope_id == 0 or self.bot.is_closing:
            return
        if scope_id in self.tasks:
            self.again.add(scope_id)  # checked again when the running check ends
            return
        self.tasks[scope_id] = asyncio.create_task(
            self._check(scope_id), name=f"auto-retrain-{scope_id}"
        )

    async def _check(self, scope_id: int) -> None:
        try:
            while True:
                self.again.discard(scope_id)
                await self.maybe_retrain(scope_id)
                if scope_id not in self.again:
                    return
        except Exception:
            log.exception("the auto-retrain check of server %s failed", scope_id)
        finally:
            self.tasks.pop(scope_id, None)

    async def maybe_retrain(self, scope_id: int) -> bool:
        """Retrain ``scope_id`` if it has N new taught images; whether it retrained."""
        options = await self.bot.store.guild(scope_id).options()
        due = (
            options.auto_retrain_after
            and options.taught_since_retrain >= options.auto_retrain_after
        )
        if not due:
            return False
        return await self._retrain(
            scope_id, f"after {options.taught_since_retrain} new taught images"
        )

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self.upgrade is None:  # once per start; on_ready repeats after reconnects
            self.upgrade = asyncio.create_task(
                self._retrain_stale_quietly(), name="retrain-stale-models"
            )

    async def _retrain_stale_quietly(self) -> None:
        try:
            await self.retrain_stale_models()
        except Exception:
            log.exception("retraining the models this version cannot use failed")

    async def retrain_stale_models(self) -> int:
        """Retrain, one server at a time, every server of this process whose current model
        this version cannot use (an upgrade changed the features or scikit-learn: the model
        file says so in its header). Until its retrain ends such a server is answered by
        the default model; its taught images are all kept. Runs once after start; returns
        how many were retrained."""
        bot = self.bot
        retrained = 0
        for scope_id in await bot.store.operator.scope_ids():
            if bot.is_closing:
                break
            if scope_id == 0 or bot.get_guild(scope_id) is None:  # not this shard's server
                continue
            model = await bot.store.guild(scope_id).current_model()
            if model is None:
                continue
            why = await asyncio.to_thread(model_incompatibility, model.path)
            if why is not None:
                log.warning("server %s: model %s is unusable: %s", scope_id, model.model_id, why)
                retrained += await self._retrain(scope_id, "after an upgrade")
        return retrained

    async def _retrain(self, scope_id: int, why: str) -> bool:
        """Retrain ``scope_id`` as /retrain does (:func:`run_retrain`: its lock, quota and
        the backend's queue)."""
        scope = self.bot.store.guild(scope_id)

        async def started() -> None:
            # the images taught so far are in this retrain: only one taught from now on
            # makes the check run again (a failure is tried again at the next image)
            self.again.discard(scope_id)
            log.info("server %s: auto-retrain %s", scope_id, why)

        try:
            report, _ = await run_retrain(
                self.bot, scope, user_id=AUTO_RETRAIN_USER, started=started
            )
        except RetrainRunning:  # a retrain is running; the count restarted with it
            return False
        except QuotaExceeded as exc:
            self._note(scope_id, False, f"not started: {exc.message}")
            return False
        except Exception as exc:
            reason = explain(exc)
            if reason is None:
                log.exception("the auto-retrain of server %s failed", scope_id)
                reason = "an internal error (logged)"
            self._note(scope_id, False, f"failed: {reason}")
            return False
        self._note(scope_id, True, f"model {report.model_id} ({why})")
        return True

    def _note(self, scope_id: int, ok: bool, detail: str) -> None:
        self.outcomes[scope_id] = AutoRetrainOutcome(time.time(), ok, detail)
        level = logging.INFO if ok else logging.WARNING
        log.log(level, "server %s: auto-retrain %s", scope_id, detail)

    def describe(self, scope_id: int) -> str | None:
        """The last auto-retrain of ``scope_id`` since the bot started, for /settings."""
        outcome = self.outcomes.get(scope_id)
        if outcome is None:
            return None
        return f"<t:{int(outcome.at)}:R>: {outcome.detail}"
