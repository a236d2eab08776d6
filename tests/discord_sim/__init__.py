"""A small Discord protocol simulator for end-to-end tests of the bot (test infrastructure).

The real discord.py client talks to it through ``DISCORD_API_BASE``/``DISCORD_GATEWAY_URL``;
attachments are served by its CDN on host ``localhost``. See ``simulator.DiscordSimulator``.
"""

from tests.discord_sim.commands import CommandRejected
from tests.discord_sim.model import (
    ADD_REACTIONS,
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    EPHEMERAL,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Application,
    Attachment,
    Channel,
    Emoji,
    Guild,
    Message,
    User,
)
from tests.discord_sim.simulator import CDN_HOST, OTHER_HOST, DiscordSimulator, Interaction

__all__ = [
    "ADD_REACTIONS",
    "ADMINISTRATOR",
    "ALL_PERMISSIONS",
    "ATTACH_FILES",
    "CDN_HOST",
    "EPHEMERAL",
    "MANAGE_GUILD",
    "MANAGE_MESSAGES",
    "OTHER_HOST",
    "READ_MESSAGE_HISTORY",
    "SEND_MESSAGES",
    "VIEW_CHANNEL",
    "Application",
    "Attachment",
    "Channel",
    "CommandRejected",
    "DiscordSimulator",
    "Emoji",
    "Guild",
    "Interaction",
    "Message",
    "User",
]
