"""The explicit admin check behind every admin command.

``default_permissions(administrator=True)`` only sets what a server sees by default; its
admins can open a command to everyone. This check runs on every call regardless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import discord
from discord import app_commands

from bot.errors import NotAdmin

T = TypeVar("T")


def is_operator(interaction: discord.Interaction) -> bool:
    """One of the bot's operators (``ADMIN_USER_IDS``)."""
    settings = interaction.client.settings  # type: ignore[attr-defined]
    return interaction.user.id in settings.admin_user_ids


def is_admin(interaction: discord.Interaction) -> bool:
    """Bot owners (``ADMIN_USER_IDS``) anywhere; server administrators in their server."""
    settings = interaction.client.settings  # type: ignore[attr-defined]
    if interaction.user.id in settings.admin_user_ids:
        return True
    return interaction.guild is not None and interaction.permissions.administrator


def admin_only() -> Callable[[T], T]:
    def predicate(interaction: discord.Interaction[Any]) -> bool:
        if not is_admin(interaction):
            raise NotAdmin("administrator only")
        return True

    return app_commands.check(predicate)
