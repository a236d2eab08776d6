"""A text channel as a slash command option, taken as Discord resolved it.

Whether the channel is one of the server's, and what the member and the bot may do in it,
is checked by the command with a message saying what is wrong, not refused by discord.py
with a generic error.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.core.errors import UserError


class TextChannelOption(app_commands.Transformer):
    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return [discord.ChannelType.text]

    async def transform(
        self, interaction: discord.Interaction, value: object, /
    ) -> app_commands.AppCommandChannel:
        if not isinstance(value, app_commands.AppCommandChannel):
            raise UserError("Pick a text channel of this server.")
        return value
