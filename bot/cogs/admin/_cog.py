"""Admin commands, each on the caller's server only (``AdminCog``): /retrain, /status,
/settings and /model rollback."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.admin._auto_retrain import AutoRetrainCog
from bot.cogs.admin._retrain_message import ProgressMessage, RetrainMessage, report_embed
from bot.cogs.admin._server_model import (
    failure_reason,
    rollback_model,
    rollback_text,
    run_retrain,
)
from bot.cogs.admin._server_settings import SettingsChange, change_settings, settings_text
from bot.cogs.admin._status import server_status_embed, status_embed
from bot.core.client import ClassifierBot
from bot.core.errors import UserError
from bot.core.permissions import OPERATORS_ONLY, admin_only, is_operator
from bot.core.tenancy import in_server, scope_of, server_scope
from bot.db import ScopedData

log = logging.getLogger(__name__)


class AdminCog(commands.Cog):
    model = app_commands.Group(
        name="model",
        description="This server's model (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: ClassifierBot, auto_retrain: AutoRetrainCog) -> None:
        self.bot = bot
        self.auto_retrain = auto_retrain  # /settings shows its last outcome

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
        message = RetrainMessage(interaction)
        progress: ProgressMessage | None = None
        shower: asyncio.Task[None] | None = None

        async def started() -> None:
            nonlocal progress, shower
            await interaction.response.send_message("Retraining: preparing the dataset…")
            interaction.extras["answered"] = True
            progress = ProgressMessage(message, bot.settings.progress_interval_s)
            shower = asyncio.create_task(progress.run())

        def update(stage: str, done: int, total: int) -> None:  # any thread
            if progress is not None:
                progress.update(stage, done, total)

        try:
            report, taught = await run_retrain(
                bot, target, user_id=interaction.user.id, progress=update, started=started
            )
        except BaseException as exc:
            if shower is not None:
                shower.cancel()
                failed = f"❌ Retraining failed: {failure_reason(exc)}"
                if await self._show_quietly(message, failed):
                    interaction.extras["error_shown"] = True  # on_error only logs it
            raise
        finally:
            if shower is not None:
                shower.cancel()
        await message.show(
            None, embed=report_embed(report, taught=taught), png=report.confusion_png
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

    # --- /model rollback ------------------------------------------------------------------
    @model.command(name="rollback", description="Go back to this server's previous model")
    @admin_only()
    async def rollback(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        previous = await rollback_model(scope, interaction.user.id)
        await interaction.response.send_message(rollback_text(previous), ephemeral=True)

    # --- /settings ------------------------------------------------------------------------
    @app_commands.command(name="settings", description="This server's classifier settings")
    @app_commands.describe(
        include_default="Train on the default dataset's labels too (on by default)",
        trainer_role="Members with this role may teach, correct answers and /review",
        no_trainer_role="True: remove the trainer role (only admins teach)",
        low_confidence="Answers below this confidence (percent, 0-100) say 'not sure'; "
        "'default' for the bot's default",
        auto_retrain="Retrain after this many new taught images (0: off, the default)",
    )
    @app_commands.guild_only()
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def settings(
        self,
        interaction: discord.Interaction,
        include_default: bool | None = None,
        trainer_role: discord.Role | None = None,
        no_trainer_role: bool | None = None,
        low_confidence: app_commands.Range[str, 1, 20] | None = None,
        auto_retrain: int | None = None,
    ) -> None:
        scope = server_scope(self.bot, interaction)
        guild = interaction.guild
        assert guild is not None  # server_scope: a server with the bot installed
        change = SettingsChange(
            include_default=include_default,
            trainer_role_id=trainer_role.id if trainer_role is not None else None,
            clear_trainer_role=bool(no_trainer_role),
            low_confidence=low_confidence,
            auto_retrain=auto_retrain,
        )
        await change_settings(scope, guild, change, user_id=interaction.user.id)
        text = settings_text(
            await scope.settings(),
            await scope.options(),
            default_low_confidence=self.bot.settings.low_confidence,
            last_auto_retrain=self.auto_retrain.describe(scope.scope_id),
        )
        if include_default is not None:
            text += "\nThe training set changes at the next /retrain."
        await interaction.response.send_message(text, ephemeral=True)
