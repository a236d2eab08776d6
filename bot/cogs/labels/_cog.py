"""/labels (taught images and recall per label), /label rename and /label remove
(``LabelsCog``)."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import escape_markdown

from bot.cogs.labels._overview import label_overview
from bot.cogs.labels._pages import label_pages
from bot.cogs.teach import normalize_label
from bot.core.client import ClassifierBot
from bot.core.confirmation import CONFIRM_TIMEOUT_S, only_the_asker
from bot.core.errors import UserError
from bot.core.paged_views import PageView
from bot.core.permissions import admin_only
from bot.core.tenancy import labels_of, scope_of, server_scope
from bot.db import ScopedData

log = logging.getLogger(__name__)

UNTIL_RETRAIN = "The current model keeps answering with the old labels until the next /retrain."


class ConfirmRemoveLabel(discord.ui.View):
    """Remove / Cancel; only the admin who asked may press them."""

    def __init__(self, scope: ScopedData, label: str, user_id: int) -> None:
        super().__init__(timeout=CONFIRM_TIMEOUT_S)
        self.scope, self.label, self.user_id = scope, label, user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await only_the_asker(interaction, self.user_id)

    @discord.ui.button(label="Remove", style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        out = await asyncio.shield(self.scope.forget_label(self.label))
        had_rule = await self.scope.remove_rule(self.label)
        log.info(
            "server %s: label %s removed by %s",
            self.scope.scope_id,
            self.label,
            interaction.user.id,
        )
        rule = " and its rule" if had_rule else ""
        await interaction.response.edit_message(
            content=(
                f"Removed **{self.label}**: {out.images} taught image(s){rule}. " + UNTIL_RETRAIN
            ),
            view=None,
        )

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, _button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was removed.", view=None)


class LabelsCog(commands.Cog):
    label = app_commands.Group(
        name="label",
        description="Rename or remove this server's labels (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot

    @app_commands.command(name="labels", description="The labels, their taught images and accuracy")
    async def labels(self, interaction: discord.Interaction) -> None:
        overview = await label_overview(self.bot, scope_of(self.bot, interaction))
        pages = label_pages(overview.lines, overview.model_id)
        if len(pages) == 1:
            await interaction.response.send_message(embed=pages[0], ephemeral=True)
            return
        view = PageView(pages, interaction.user.id, command="/labels")
        await interaction.response.send_message(embed=pages[0], view=view, ephemeral=True)

    async def _taught_label(self, scope: ScopedData, raw: str) -> tuple[str, int]:
        label = normalize_label(raw)
        count = (await scope.label_counts()).get(label, 0)
        if not count:
            raise UserError(
                f"This server has no taught images labelled **{label}**; /labels lists them."
            )
        return label, count

    @label.command(name="rename", description="Rename a label; its taught images follow")
    @app_commands.describe(old="The label to rename", new="Its new name")
    @admin_only()
    async def rename(
        self,
        interaction: discord.Interaction,
        old: app_commands.Range[str, 1, 32],
        new: app_commands.Range[str, 1, 32],
    ) -> None:
        scope = server_scope(self.bot, interaction)
        old, _ = await self._taught_label(scope, old)
        new = normalize_label(new)
        if new == old:
            raise UserError(f"**{old}** already has that name.")
        model_labels, _ = await labels_of(self.bot, scope)
        if new in model_labels or new in await scope.label_counts():
            raise UserError(
                f"**{new}** is already a label of this server (taught, or known to its "
                "model): pick another name, or /label remove one of them first."
            )
        try:
            moved = await asyncio.shield(scope.rename_label(old, new))
        except ValueError:  # taught meanwhile
            raise UserError(f"**{new}** already has taught images: pick another name.") from None
        log.info("server %s: label %s renamed %s", scope.scope_id, old, new)
        await interaction.response.send_message(
            f"Renamed **{old}** to **{new}** ({moved} taught image(s), and its rule if it had "
            f"one). {UNTIL_RETRAIN}",
            ephemeral=True,
        )

    @label.command(name="remove", description="Remove a label and its taught images")
    @app_commands.describe(label="The label to remove")
    @admin_only()
    async def remove(
        self, interaction: discord.Interaction, label: app_commands.Range[str, 1, 32]
    ) -> None:
        scope = server_scope(self.bot, interaction)
        label, count = await self._taught_label(scope, label)
        view = ConfirmRemoveLabel(scope, label, interaction.user.id)
        await interaction.response.send_message(
            f"This deletes the {count} taught image(s) of **{escape_markdown(label)}** and its "
            "rule. It cannot be undone.",
            view=view,
            ephemeral=True,
        )
