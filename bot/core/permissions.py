"""Who may do what: the bot's operators, a server's administrators, and its trainers.

``default_permissions(administrator=True)`` only sets what a server sees by default; its
admins can open a command to everyone. :func:`admin_only` runs on every call regardless.
Trainers are a server's administrators, the bot's operators, and the members with the
server's trainer role (``/settings trainer_role:``): they may teach and review. Who is
which is decided by :func:`bot.core.member_access.server_role`, the rule the dashboard
applies to a logged-in member too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import discord
from discord import app_commands

from bot.core.errors import NotAdmin, UserError
from bot.core.member_access import ServerRole, server_role

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

T = TypeVar("T")

OPERATORS_ONLY = "Only the bot's operators (ADMIN_USER_IDS) can change the default model."


def is_operator(interaction: discord.Interaction) -> bool:
    """One of the bot's operators (``ADMIN_USER_IDS``)."""
    settings = interaction.client.settings  # type: ignore[attr-defined]
    return interaction.user.id in settings.admin_user_ids


def server_role_of(
    interaction: discord.Interaction, trainer_role_id: int | None
) -> ServerRole | None:
    """What the member who sent ``interaction`` may do here, by the rule the dashboard uses
    too (:func:`bot.core.member_access.server_role`): their permissions in the channel
    (Discord computes them, owner and Administrator included), whether they are an
    operator, and their roles against the server's trainer role."""
    user = interaction.user
    guild = interaction.guild
    in_guild = interaction.guild_id is not None
    return server_role(
        owner=guild is not None and guild.owner_id == user.id,
        permissions=interaction.permissions.value if in_guild else 0,
        operator=is_operator(interaction),
        role_ids=[r.id for r in user.roles] if isinstance(user, discord.Member) else (),
        trainer_role_id=trainer_role_id if in_guild else None,
    )


def is_admin(interaction: discord.Interaction) -> bool:
    """Bot owners (``ADMIN_USER_IDS``) anywhere; server administrators in their server."""
    return server_role_of(interaction, None) is ServerRole.ADMIN


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
    return server_role_of(interaction, await trainer_role_id(bot, interaction)) is not None


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
