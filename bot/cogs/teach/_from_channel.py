"""``/teach from-channel``: teach the images posted in a channel's history as one label.

Only a text channel of this server that both the member and the bot can read (View Channel
and Read Message History: the member's permissions there as Discord resolved them with
the command, the bot's from its own view of the server). The history is read newest first,
at most ``TEACH_CHANNEL_MAX_MESSAGES`` messages, until ``limit`` image attachments are
found; each chunk of images is downloaded in its turn at the door when it is taught
(attachment links expire, so none is kept for later; the path ``teach_channel``), as
posted by the message's author (their ``/forget mine`` reaches it), and a quota stops the
rest. Progress is shown in the command's
one response, edited as it goes; the final report names what was learned, the duplicates,
the files that were not images and what was over the quota.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.cogs.teach._bulk import BulkItem, teach_many
from bot.cogs.teach._bulk_replies import ProgressReply, report_reply
from bot.core.download import looks_like_image
from bot.core.errors import UserError
from bot.db import ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

READ = discord.Permissions(view_channel=True, read_message_history=True)
#: ``limit`` when none is given.
DEFAULT_LIMIT = 100


class ChannelRefused(UserError):
    """A channel the command will not read; the message says why."""


def readable_channel(
    bot: ClassifierBot, interaction: discord.Interaction, picked: app_commands.AppCommandChannel
) -> discord.TextChannel:
    """The server's text channel ``picked``, if the member and the bot may read its
    history; :class:`ChannelRefused` saying who may not, otherwise."""
    guild = interaction.guild
    channel = guild.get_channel(picked.id) if guild is not None else None
    if guild is None or not isinstance(channel, discord.TextChannel):
        raise ChannelRefused("Pick a text channel of this server.")
    if not READ.is_subset(picked.permissions):
        raise ChannelRefused(
            f"You can't read the history of {channel.mention}, so I won't teach from it."
        )
    me = guild.me
    if me is None or not READ.is_subset(channel.permissions_for(me)):
        raise ChannelRefused(
            f"I can't read the history of {channel.mention}: I need View Channel and Read "
            "Message History there."
        )
    return channel


async def channel_images(
    bot: ClassifierBot,
    channel: discord.TextChannel,
    label: str,
    limit: int,
    progress: ProgressReply,
) -> list[BulkItem]:
    """Up to ``limit`` image attachments of the channel's history, newest first."""
    found: list[BulkItem] = []
    read = 0
    try:
        async for message in channel.history(limit=bot.settings.teach_channel_max_messages):
            read += 1
            for attachment in message.attachments:
                if looks_like_image(attachment) and len(found) < limit:
                    name = f"{attachment.filename} (message {message.id})"
                    found.append(BulkItem(label, name, attachment, message.author.id))
            if len(found) >= limit:
                break
            if read % 100 == 0:
                await progress.show(
                    f"Reading {channel.mention}: {read} message(s), {len(found)} image(s) so far…"
                )
    except discord.Forbidden:
        raise ChannelRefused(f"Discord did not let me read {channel.mention}'s history.") from None
    return found


async def teach_from_channel(
    bot: ClassifierBot,
    interaction: discord.Interaction,
    scope: ScopedData,
    picked: app_commands.AppCommandChannel,
    label: str,
    limit: int,
) -> None:
    channel = readable_channel(bot, interaction, picked)
    await interaction.response.defer(ephemeral=True, thinking=True)
    progress = ProgressReply(
        interaction,
        bot.settings.progress_interval_s,
        f"Teaching **{label}** from {channel.mention}",
    )
    items = await channel_images(bot, channel, label, limit, progress)
    if not items:
        scanned = bot.settings.teach_channel_max_messages
        raise UserError(
            f"I found no images in the last {scanned} messages of {channel.mention} that I "
            "can read."
        )
    user = interaction.user
    report = await teach_many(
        bot,
        scope,
        items,
        path="teach_channel",
        member_id=user.id,
        user_id=user.id,
        user_name=str(user),
        progress=progress,
    )
    head = f"From {channel.mention}, newest first, as **{label}**:"
    content, files = report_reply(report, head)
    await interaction.edit_original_response(content=content, attachments=files)
