"""A server's data lifecycle: /forget, /model rollback, /settings, and the retention purge.

When the bot leaves a server its data is kept for ``GUILD_DATA_RETENTION_DAYS`` (a
re-join keeps it), then a background task forgets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.checks import admin_only
from bot.client import ClassifierBot
from bot.db import ScopedData
from bot.errors import UserError
from bot.server_settings import check_auto_retrain, parse_low_confidence, settings_text
from bot.teaching import normalize_label

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT_S = 60.0


def server_scope(bot: ClassifierBot, interaction: discord.Interaction) -> ScopedData:
    if interaction.guild_id is None or not interaction.is_guild_integration():
        raise UserError("This command only works in a server where the bot is installed.")
    return bot.store.guild(interaction.guild_id)


async def only_the_asker(interaction: discord.Interaction, user_id: int) -> bool:
    """A confirmation view's check: only the administrator who asked may press it."""
    if interaction.user.id != user_id:
        await interaction.response.send_message(
            "Only the administrator who asked can confirm this.", ephemeral=True
        )
        return False
    return True


class ConfirmForgetAll(discord.ui.View):
    """Two buttons; only the admin who asked may press them."""

    def __init__(self, scope: ScopedData, user_id: int) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.scope, self.user_id = scope, user_id
        self.done = asyncio.Event()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await only_the_asker(interaction, self.user_id)

    @discord.ui.button(label="Forget everything", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        out = await asyncio.shield(self.scope.forget_all())
        log.info("server %s: forget all by %s", self.scope.scope_id, interaction.user.id)
        await interaction.response.edit_message(
            content=(
                f"Forgotten: {out.images} taught image(s), {out.models} model(s), this "
                "server's settings and watched channels. The server now uses the default model."
            ),
            view=None,
        )
        self.done.set()

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was forgotten.", view=None)
        self.done.set()


class DataCog(commands.Cog):
    forget = app_commands.Group(
        name="forget", description="Remove taught images and models", guild_only=True
    )
    model = app_commands.Group(
        name="model",
        description="This server's model (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot
        self.purger: asyncio.Task[None] | None = None

    async def cog_load(self) -> None:
        self.purger = asyncio.create_task(self._purge_forever(), name="retention-purge")

    async def cog_unload(self) -> None:
        if self.purger is not None:
            self.purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.purger

    # --- /forget ------------------------------------------------------------------------
    @forget.command(name="label", description="Forget every taught image of a label (admins)")
    @app_commands.describe(label="The label to forget")
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def forget_label(
        self, interaction: discord.Interaction, label: app_commands.Range[str, 1, 32]
    ) -> None:
        scope = server_scope(self.bot, interaction)
        label = normalize_label(label)
        out = await asyncio.shield(scope.forget_label(label))
        if not out.images and not out.reviews:
            raise UserError(f"This server has no taught images labelled **{label}**.")
        queued = f" and {out.reviews} waiting correction(s)" if out.reviews else ""
        await interaction.response.send_message(
            f"Forgot {out.images} taught image(s){queued} of **{label}**. The current model "
            "still knows the label until the next /retrain.",
            ephemeral=True,
        )

    @forget.command(name="mine", description="Forget the images you taught on this server")
    async def forget_mine(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        out = await asyncio.shield(scope.forget_user(interaction.user.id))
        queued = f" and {out.reviews} correction(s) you sent for review" if out.reviews else ""
        text = (
            f"Forgot the {out.images} image(s) you taught on this server{queued}, and your "
            "answers and votes. Models trained before keep what they learned from them until "
            "the next /retrain."
            if out.images or out.reviews
            else "You have no taught images on this server."
        )
        await interaction.response.send_message(text, ephemeral=True)

    @forget.command(
        name="all", description="Forget this server's taught images, models and settings (admins)"
    )
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def forget_all(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        usage = await scope.usage()
        view = ConfirmForgetAll(scope, interaction.user.id)
        await interaction.response.send_message(
            f"This deletes this server's {usage.images} taught image(s), its models, settings "
            "and watched channels. It cannot be undone.",
            view=view,
            ephemeral=True,
        )

    # --- /model rollback ------------------------------------------------------------------
    @model.command(name="rollback", description="Go back to this server's previous model")
    @admin_only()
    async def rollback(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        previous = await asyncio.shield(scope.rollback())
        text = (
            f"Rolled back: this server now uses model {previous.model_id}."
            if previous
            else "Rolled back: this server now uses the default model."
        )
        log.info("server %s: model rollback by %s", scope.scope_id, interaction.user.id)
        await interaction.response.send_message(text, ephemeral=True)

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
        if trainer_role is not None and no_trainer_role:
            raise UserError("Choose either `trainer_role` or `no_trainer_role`, not both.")
        if trainer_role is not None and trainer_role.is_default():
            raise UserError(
                "@everyone can't be the trainer role: every member's correction would be "
                "taught without review."
            )
        threshold = parse_low_confidence(low_confidence) if low_confidence is not None else None
        after = check_auto_retrain(auto_retrain) if auto_retrain is not None else None
        if include_default is not None:
            await scope.set_include_default(include_default)
        if trainer_role is not None:
            await scope.set_trainer_role(trainer_role.id)
        elif no_trainer_role:
            await scope.set_trainer_role(None)
        if low_confidence is not None:
            await scope.set_low_confidence(threshold)
        if after is not None:
            await scope.set_auto_retrain(after)
        auto_cog = self.bot.get_cog("AutoRetrainCog")
        text = settings_text(
            await scope.settings(),
            await scope.options(),
            default_low_confidence=self.bot.settings.low_confidence,
            last_auto_retrain=auto_cog.describe(scope.scope_id) if auto_cog else None,  # type: ignore[attr-defined]
        )
        if include_default is not None:
            text += "\nThe training set changes at the next /retrain."
        await interaction.response.send_message(text, ephemeral=True)

    # --- joining, leaving, retention -------------------------------------------------------
    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.bot.store.guild(guild.id).mark_left()
        days = self.bot.settings.guild_data_retention_days
        log.info(
            "left server %s: its data is purged in %.0f days unless it re-joins", guild.id, days
        )

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self.bot.store.guild(guild.id).mark_present()

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.bot.store.guild(guild.id).mark_present()

    async def purge_once(self) -> int:
        days = self.bot.settings.guild_data_retention_days
        purged = await self.bot.store.operator.purge_departed(dt.timedelta(days=days))
        for scope_id in await self.bot.store.operator.scope_ids():
            if scope_id:  # answers past the feedback window, and their kept images
                await self.bot.store.guild(scope_id).prune_feedback()
        return len(purged)

    async def mark_absent_servers(self) -> int:
        """Servers with data that the bot is no longer in (it left while offline)."""
        present = {g.id for g in self.bot.guilds}
        n = 0
        for scope_id in await self.bot.store.operator.scope_ids():
            if scope_id and scope_id not in present:
                scope = self.bot.store.guild(scope_id)
                if await scope.left_at() is None:
                    await scope.mark_left()
                    n += 1
        return n

    async def _purge_forever(self) -> None:
        interval = self.bot.settings.retention_check_interval_s
        await self.bot.wait_until_ready()
        try:
            await self.mark_absent_servers()
        except Exception:
            log.exception("could not check which servers the bot left while offline")
        while True:
            try:
                await self.purge_once()
            except Exception:
                log.exception("the retention purge failed; retrying in %.0f s", interval)
            await asyncio.sleep(interval)


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(DataCog(bot))
