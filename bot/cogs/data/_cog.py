"""A server's data lifecycle: /forget, and the retention purge (``DataCog``).

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

from bot.cogs.teach import normalize_label
from bot.core.client import ClassifierBot
from bot.core.confirmation import CONFIRM_TIMEOUT_S, only_the_asker
from bot.core.errors import UserError
from bot.core.permissions import admin_only
from bot.core.tenancy import server_scope
from bot.db import ScopedData

log = logging.getLogger(__name__)


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

    @forget.command(
        name="mine", description="Forget the images you taught or posted on this server"
    )
    async def forget_mine(self, interaction: discord.Interaction) -> None:
        """What the member taught, asked, voted and sent for review, and every taught
        image, answer and correction of an image the member posted, whoever taught,
        classified or corrected it."""
        scope = server_scope(self.bot, interaction)
        out = await asyncio.shield(scope.forget_user(interaction.user.id))
        queued = (
            f" and {out.reviews} correction(s) you sent for review or others sent of your images"
            if out.reviews
            else ""
        )
        text = (
            f"Forgot the {out.images} image(s) you taught or posted on this server{queued}, "
            "and your answers and votes. Models trained before keep what they learned from "
            "them until the next /retrain."
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
        """Purge the servers left long enough ago, prune answers past the feedback window,
        and finish the removals a forget recorded but could not do yet (a backup held them
        back and was killed; the feature cache was busy): they need not wait for the next
        forget or start. How many servers were purged."""
        days = self.bot.settings.guild_data_retention_days
        purged = await self.bot.store.operator.purge_departed(dt.timedelta(days=days))
        for scope_id in await self.bot.store.operator.scope_ids():
            if scope_id:  # answers past the feedback window, and their kept images
                await self.bot.store.guild(scope_id).prune_feedback()
        await self.bot.store.removals.finish_held_back()
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
