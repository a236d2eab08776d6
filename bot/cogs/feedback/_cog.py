"""/review: an admin's or trainer's way through the server's waiting corrections. The
buttons under answers and review items are dynamic items registered by this feature's
``setup``."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.feedback._review import review_page
from bot.core.client import ClassifierBot
from bot.core.errors import UserError
from bot.core.permissions import require_trainer
from bot.core.tenancy import in_server, scope_of

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
        content, embed, file, view = await review_page(scope_of(self.bot, interaction), interaction)
        kwargs: dict[str, object] = {"ephemeral": True}
        if embed is not None and file is not None and view is not None:
            kwargs.update(embed=embed, file=file, view=view)
        await interaction.response.send_message(content or None, **kwargs)  # type: ignore[arg-type]
