"""Which scope an interaction or message belongs to, and which model serves it.

In a server where the bot is installed, the server's own scope; in DMs and user-installed
contexts, the default scope (the default model). A server without a model of its own is
served by the default model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.core.errors import UserError
from bot.db import ScopedData
from golem_backend import ModelRef

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)


def in_server(interaction: discord.Interaction) -> bool:
    """True in a server that installed the bot (not a DM, not a user install)."""
    return interaction.guild_id is not None and interaction.is_guild_integration()


def scope_of(bot: ClassifierBot, interaction: discord.Interaction) -> ScopedData:
    if in_server(interaction):
        assert interaction.guild_id is not None
        return bot.store.guild(interaction.guild_id)
    return bot.store.default_scope()


def server_scope(bot: ClassifierBot, interaction: discord.Interaction) -> ScopedData:
    """The server's scope, or :class:`UserError` outside a server that installed the bot
    (for the commands that only make sense there)."""
    if interaction.guild_id is None or not interaction.is_guild_integration():
        raise UserError("This command only works in a server where the bot is installed.")
    return bot.store.guild(interaction.guild_id)


def server_of(interaction: discord.Interaction) -> int | None:
    """The server an interaction's request counts for at the door (``bot.core.admission``):
    its server where the bot is installed, else ``None`` (then each member is fair
    on their own), as :func:`tenant_of`."""
    return interaction.guild_id if in_server(interaction) else None


def tenant_of(interaction: discord.Interaction) -> str:
    """The fairness key: the server, or the user outside servers."""
    if in_server(interaction):
        return f"guild:{interaction.guild_id}"
    return f"user:{interaction.user.id}"


async def model_of(scope: ScopedData) -> ModelRef | None:
    """The scope's current model, ``None`` for the default model."""
    if scope.scope_id == 0:
        return None
    record = (await scope.serving()).model
    return ModelRef(record.model_id, record.path) if record else None


async def labels_of(bot: ClassifierBot, scope: ScopedData) -> tuple[tuple[str, ...], str | None]:
    """The labels the scope's model knows, and that model's id."""
    if scope.scope_id != 0:
        record = await scope.current_model()
        if record is not None:
            return record.labels, record.model_id
    status = await bot.backend.status()
    return status.labels, status.model_id
