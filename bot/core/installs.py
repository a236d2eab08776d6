"""User installs: /classify and "Classify image" also work where the bot is not a member.

A user who adds the app to their account (Discord's "user install") can use these
commands in DMs, group DMs and any server, including servers that never invited the bot.
There the default model answers (``bot.core.tenancy.scope_of``), and a server
that does not let its members use external apps gets only ephemeral replies: Discord would
force that anyway; asking for it keeps the "thinking" message private too.
"""

from __future__ import annotations

import discord
from discord import app_commands

#: where the user-installable commands may be installed and used
EVERYWHERE_INSTALLS = app_commands.AppInstallationType(guild=True, user=True)
EVERYWHERE_CONTEXTS = app_commands.AppCommandContext(
    guild=True, dm_channel=True, private_channel=True
)


def replies_must_be_private(interaction: discord.Interaction) -> bool:
    """True in a server that runs the app only through a member's user install and does
    not allow its members to use external apps (Discord shows such replies to the user
    only)."""
    if interaction.guild_id is None or interaction.is_guild_integration():
        return False
    return not interaction.permissions.use_external_apps
