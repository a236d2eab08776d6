"""Who may do what: the bot's operators, a server's administrators, and its trainers.

``default_permissions(administrator=True)`` only sets what a server sees by default; its
admins can open a command to everyone. :func:`admin_only` runs on every call regardless.
Trainers are a server's administrators, the bot's operators, and the members with the
server's trainer role (``/settings trainer_role:``): they may teach and review.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from bot.core.errors import NotAdmin, UserError

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

T = TypeVar("T")

OPERATORS_ONLY = "Only the bot's operators (ADMIN_USER_IDS) can change the default model."


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


class NotTrainer(UserError):
    """Neither an admin nor a member with the server's trainer role."""


async def trainer_role_id(bot: ClassifierBot, interaction: discord.Interaction) -> int | None:
    if interaction.guild_id is None:
        return None
    return (await bot.store.guild(interaction.guild_id).settings()).trainer_role_id


async def can_train(bot: ClassifierBot, interaction: discord.Interaction) -> bool:
    """An admin, an operator, or a member holding the server's trainer role right now."""
    if is_admin(interaction):
        return True
    role_id = await trainer_role_id(bot, interaction)
    member = interaction.user
    return (
        role_id is not None
        and isinstance(member, discord.Member)
        and member.get_role(role_id) is not None
    )


async def require_trainer(bot: ClassifierBot, interaction: discord.Interaction) -> None:
    """:class:`NotAdmin` (no trainer role set) or :class:`NotTrainer`."""
    if await can_train(bot, interaction):
        return
    role_id = await trainer_role_id(bot, interaction)
    if role_id is None:
        raise NotAdmin("administrator only")
    raise NotTrainer(
        f"This is for server administrators and members with the trainer role <@&{role_id}>."
    )
