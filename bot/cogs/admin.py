"""Admin commands: /retrain and /status, each on the caller's server only (/teach: teach.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only, is_operator
from bot.client import ClassifierBot
from bot.db import ScopedData
from bot.embeds import report_embed, status_embed
from bot.errors import APOLOGY, UserError, explain
from bot.retrain_message import ProgressMessage, RetrainMessage
from bot.server_embeds import server_status_embed
from bot.tenancy import in_server, scope_of

log = logging.getLogger(__name__)

OPERATORS_ONLY = "Only the bot's operators (ADMIN_USER_IDS) can change the default model."


class AdminCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot

    def _target(self, interaction: discord.Interaction, scope: str) -> ScopedData:
        if scope == "default" or not in_server(interaction):
            if not is_operator(interaction):
                raise UserError(OPERATORS_ONLY)
            return self.bot.store.default_scope()
        return scope_of(self.bot, interaction)

    @app_commands.command(name="retrain", description="Retrain this server's model (admins)")
    @app_commands.describe(
        scope="server: this server's model; default: the default model (bot operators only)"
    )
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def retrain(
        self, interaction: discord.Interaction, scope: Literal["server", "default"] = "server"
    ) -> None:
        bot = self.bot
        target = self._target(interaction, scope)
        lock = bot.retrainer.lock(target.scope_id)
        if lock.locked():
            raise UserError("A retrain is already running; its message shows the progress.")
        async with lock, bot.gate.slot(exclusive_ok=True):
            retrain_id = await target.start_retrain(interaction.user.id)  # the hourly quota
            message = RetrainMessage(interaction)
            await interaction.response.send_message("Retraining: preparing the dataset…")
            interaction.extras["answered"] = True
            progress = ProgressMessage(message, bot.settings.progress_interval_s)
            shower = asyncio.create_task(progress.run())
            try:
                report, taught = await bot.retrainer.train(target, progress.update)
            except BaseException as exc:
                reason = explain(exc) if isinstance(exc, Exception) else None
                if isinstance(exc, asyncio.CancelledError):
                    reason = "the bot is shutting down"
                if reason is None:
                    reason = APOLOGY
                shower.cancel()
                await asyncio.shield(target.finish_retrain(retrain_id, "failed", reason))
                if await self._show_quietly(message, f"❌ Retraining failed: {reason}"):
                    interaction.extras["error_shown"] = True  # on_error only logs it
                raise
            finally:
                shower.cancel()
            await target.finish_retrain(retrain_id, "ok", report.model_id)
            await message.show(
                None, embed=report_embed(report, taught=taught), png=report.confusion_png
            )
            log.info(
                "retrained %s: model %s accuracy %s by %s",
                target.tenant,
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
        name="status", description="This server's model, data and quotas (admins)"
    )
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def status(self, interaction: discord.Interaction) -> None:
        bot = self.bot
        embeds = []
        if in_server(interaction):
            scope = scope_of(bot, interaction)
            guild = interaction.guild
            embeds.append(
                server_status_embed(
                    server_name=guild.name if guild else str(interaction.guild_id),
                    model=await scope.current_model(),
                    default_model_id=(await bot.backend.status()).model_id,
                    label_counts=await scope.label_counts(),
                    usage=await scope.usage(),
                    quotas=bot.store.quotas,
                    last_retrain=await scope.last_retrain(),
                    settings=await scope.settings(),
                    watched=len(await scope.watched_channels()),
                )
            )
        if is_operator(interaction):
            totals = await bot.store.operator.totals()
            embed = status_embed(
                await bot.backend.status(),
                uptime_s=time.monotonic() - bot.started_at,
                watched=totals["channels"] + len(bot.settings.autoclassify_channel_ids),
                latency_ms=bot.latency * 1000 if bot.latency != float("inf") else -1,
            )
            embed.add_field(
                name="All servers",
                value=(
                    f"{totals['servers']} servers, {totals['images']} taught images, "
                    f"{totals['models']} models"
                ),
                inline=False,
            )
            embeds.append(embed)
        if not embeds:
            raise UserError("/status shows a server's data in a server where the bot is installed.")
        await interaction.response.send_message(embeds=embeds, ephemeral=True)


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(AdminCog(bot))
