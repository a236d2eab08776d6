"""Admin commands: /retrain, /teach and /status."""

from __future__ import annotations

import asyncio
import logging
import time

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.classifying import fetch, precheck
from bot.client import ClassifierBot
from bot.embeds import percent, report_embed, status_embed
from bot.errors import APOLOGY, UserError, explain
from bot.retrain_message import ProgressMessage, RetrainMessage
from bot.teaching import build_training_dataset, normalize_label, save_taught_image
from golem_backend import BackendError, ImageError

log = logging.getLogger(__name__)


class AdminCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot

    @app_commands.command(name="retrain", description="Retrain the model (admins)")
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def retrain(self, interaction: discord.Interaction) -> None:
        bot = self.bot
        if bot.retrain_lock.locked():
            raise UserError("A retrain is already running; its message shows the progress.")
        async with bot.retrain_lock, bot.gate.slot(exclusive_ok=True):
            message = RetrainMessage(interaction)
            await interaction.response.send_message("Retraining: preparing the dataset…")
            interaction.extras["answered"] = True
            progress = ProgressMessage(message, bot.settings.progress_interval_s)
            shower = asyncio.create_task(progress.run())
            try:
                dataset = await asyncio.to_thread(build_training_dataset, bot.settings)
                report = await bot.backend.retrain(dataset=dataset, progress=progress.update)
            except BaseException as exc:
                reason = explain(exc) if isinstance(exc, Exception) else None
                if isinstance(exc, asyncio.CancelledError):
                    reason = "the bot is shutting down"
                if reason is None:
                    reason = APOLOGY
                shower.cancel()
                if await self._show_quietly(message, f"❌ Retraining failed: {reason}"):
                    interaction.extras["error_shown"] = True  # on_error only logs it
                raise
            finally:
                shower.cancel()
            taught = len(bot.store.taught)
            await message.show(
                None, embed=report_embed(report, taught=taught), png=report.confusion_png
            )
            log.info(
                "retrained: model %s accuracy %s by %s",
                report.model_id,
                report.accuracy,
                interaction.user.id,
            )

    @staticmethod
    async def _show_quietly(message: RetrainMessage, text: str) -> bool:
        try:
            await message.show(text)
        except (discord.HTTPException, discord.ClientException) as exc:
            log.warning("could not report the failed retrain: %s", exc)
            return False
        return True

    @app_commands.command(
        name="teach", description="Add a labelled example for the next retrain (admins)"
    )
    @app_commands.describe(
        label="The label (lowercase letters, digits, _ or -)", image="An image of that label"
    )
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def teach(
        self,
        interaction: discord.Interaction,
        label: app_commands.Range[str, 1, 32],
        image: discord.Attachment,
    ) -> None:
        bot = self.bot
        async with bot.gate.slot():  # refused during shutdown; shutdown waits for it
            label = normalize_label(label)
            precheck(bot, image)
            await interaction.response.defer(ephemeral=True, thinking=True)
            data = await fetch(bot, image)
            try:  # the backend decodes it: a corrupt or unreadable image is refused here
                [outcome] = await bot.backend.classify([data], top_k=1)
            except BackendError as exc:
                outcome = None
                log.info("could not verify a taught image (%s); storing it anyway", exc)
            if isinstance(outcome, ImageError):
                raise outcome
            # the image file and its record are written together, even if shutdown
            # cancels this command meanwhile
            added = await asyncio.shield(self._record(interaction, label, data))
            count = sum(1 for t in bot.store.taught if t.label == label)
            known = label in (await bot.backend.status()).labels
            lines = [
                f"Learned **{label}** from `{image.filename}`. {count} taught image(s) for "
                "this label; they're used by the next /retrain."
                if added
                else f"I already had this image as **{label}**."
            ]
            if not known:
                lines.append(f"**{label}** is a new label: give it 5+ images before retraining.")
            if outcome is not None:
                guess = f"{outcome.label} ({percent(outcome.confidence)})"
                lines.append(f"The current model says: {guess}.")
            await interaction.followup.send("\n".join(lines), ephemeral=True)

    async def _record(self, interaction: discord.Interaction, label: str, data: bytes) -> bool:
        """Store a taught image and its record; ``False`` if it was already taught."""
        record = await asyncio.to_thread(
            save_taught_image,
            self.bot.settings,
            label,
            data,
            user_id=interaction.user.id,
            user_name=str(interaction.user),
            guild_id=interaction.guild_id,
        )
        return await self.bot.store.add_taught(record)

    @app_commands.command(name="status", description="Backend, model and queue status (admins)")
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def status(self, interaction: discord.Interaction) -> None:
        bot = self.bot
        status = await bot.backend.status()
        embed = status_embed(
            status,
            uptime_s=time.monotonic() - bot.started_at,
            watched=len(bot.watched_channels()),
            latency_ms=bot.latency * 1000 if bot.latency != float("inf") else -1,
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(AdminCog(bot))
