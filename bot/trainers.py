"""Who may teach: a server's administrators, the bot's operators, and the members with
the server's trainer role (``/settings trainer_role:``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.checks import is_admin
from bot.errors import NotAdmin, UserError

if TYPE_CHECKING:
    from bot.client import ClassifierBot


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
