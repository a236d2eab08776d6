"""Running the action of a persistent component: a button or select (a discord.py dynamic
item) or a modal answered from its custom id. Components work in a server that installed
the bot; any error becomes a private message to the member."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot.core.errors import APOLOGY, UserError, explain, reply_error
from bot.core.tenancy import in_server

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)


async def run_component_action(
    interaction: discord.Interaction,
    action: str,
    handler: Callable[..., Awaitable[None]],
    **kw: Any,
) -> None:
    """``await handler(bot, interaction, **kw)``; ``action`` names it in the log."""
    bot: ClassifierBot = interaction.client  # type: ignore[assignment]
    try:
        if not in_server(interaction):
            raise UserError("Feedback only works in a server where the bot is installed.")
        await handler(bot, interaction, **kw)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            log.error("feedback action %s failed", action, exc_info=exc)
            message = APOLOGY
        else:
            log.info("feedback action %s by %s: %s", action, interaction.user.id, message)
        await reply_error(interaction, message)
