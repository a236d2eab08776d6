""" "Teach as..." once its label is picked: the message's images are fetched again (the
menu's attachments may have expired meanwhile) and taught through the teaching path, as
taught by the trainer and posted by the message's author.

The target names a channel and a message (``m<channel id>-<message id>``) and comes back
from the member's client (the "Something else..." form's custom id can be forged), so
before anything is fetched, taught or listed: both ids must be Discord ids, the channel
one of this server's, and the member must be able to view it and read its history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.cogs.teach._teach_images import (
    MAX_TEACH_IMAGES,
    attachment_sources,
    teach_images,
    teach_report,
)
from bot.core.channel_access import can_view_channel
from bot.core.custom_ids import snowflake
from bot.core.download import looks_like_image
from bot.core.errors import UserError
from bot.core.permissions import require_trainer
from bot.core.tenancy import server_scope

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

NOT_HERE = "That message is not in a channel of this server I can see."
HIDDEN = (
    "You can't read that channel's messages, so you can't teach its images. Use "
    '"Teach as..." on a message you can see.'
)


def message_target(message: discord.Message) -> str:
    """The label picker's target for teaching the images of ``message``."""
    return f"m{message.channel.id}-{message.id}"


async def teach_picked(
    bot: ClassifierBot, interaction: discord.Interaction, ids: str, label: str
) -> None:
    """The label picker's answer for a ``m<channel id>-<message id>`` target."""
    channel_text, _, message_text = ids.partition("-")
    channel_id, message_id = snowflake(channel_text), snowflake(message_text)
    if channel_id is None or message_id is None:
        raise UserError(NOT_HERE)
    await teach_message(bot, interaction, channel_id, message_id, label)


async def teach_message(
    bot: ClassifierBot,
    interaction: discord.Interaction,
    channel_id: int,
    message_id: int,
    label: str,
) -> None:
    await require_trainer(bot, interaction)
    guild = interaction.guild
    channel = guild.get_channel_or_thread(channel_id) if guild else None
    if channel is None or not isinstance(channel, discord.abc.Messageable):
        raise UserError(NOT_HERE)
    if not can_view_channel(interaction, channel_id, history=True):
        raise UserError(HIDDEN)
    await interaction.response.defer()
    try:
        message = await channel.fetch_message(message_id)
    except discord.NotFound:
        raise UserError("That message was deleted, so there is nothing to teach.") from None
    except discord.Forbidden:
        raise UserError("I can't read that channel's messages any more.") from None
    images = [a for a in message.attachments if looks_like_image(a)][:MAX_TEACH_IMAGES]
    if not images:
        raise UserError("That message has no images I can see.")
    scope = server_scope(bot, interaction)
    user = interaction.user
    results = await teach_images(
        bot,
        scope,
        label,
        attachment_sources(images),
        path="teach_as",
        member_id=user.id,
        user_id=user.id,
        user_name=str(user),
        author_id=message.author.id,
    )
    report = await teach_report(bot, scope, label, results)
    await interaction.edit_original_response(content=report, view=None)
