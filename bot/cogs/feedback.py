"""/review, and the modal submits of the feedback loop (answered from their custom id, so
a modal opened before a restart still works). The buttons and selects themselves are
dynamic items (``bot.feedback_ui``) registered in ``ClassifierBot.setup_hook``."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import ClassifierBot
from bot.errors import UserError
from bot.feedback_flow import handle, modal_value
from bot.feedback_ui import NEW_LABEL_MODAL
from bot.review_flow import review_page
from bot.tenancy import in_server, scope_of
from bot.trainers import require_trainer

log = logging.getLogger(__name__)


class FeedbackCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="review", description="Work through members' corrections (admins, trainers)"
    )
    @app_commands.guild_only()
    async def review(self, interaction: discord.Interaction) -> None:
        if not in_server(interaction):
            raise UserError("This command only works in a server where the bot is installed.")
        await require_trainer(self.bot, interaction)
        content, embed, file, view = await review_page(scope_of(self.bot, interaction))
        kwargs: dict[str, object] = {"ephemeral": True}
        if embed is not None and file is not None and view is not None:
            kwargs.update(embed=embed, file=file, view=view)
        await interaction.response.send_message(content or None, **kwargs)  # type: ignore[arg-type]

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data = interaction.data or {}
        match = NEW_LABEL_MODAL.fullmatch(str(data.get("custom_id", "")))
        if match is None:
            return
        await handle(interaction, "modal", target=match["target"], raw=modal_value(dict(data)))


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(FeedbackCog(bot))
