"""Which of a server's channels the interacting member can view: what a member may be
shown of the images posted there (a review item, an answer, a message to teach).

A member's permissions in a channel are computed as discord.py computes them
(:meth:`discord.abc.GuildChannel.permissions_for`: the server's roles, the member's roles,
the channel's overwrites; a thread follows its parent) from the server the bot holds in
its cache. The server's administrators (Discord gives them every permission) and the
bot's operators (``ADMIN_USER_IDS``) see everything, so they alone see what comes from a
channel the bot does not know: deleted, an archived thread not in the cache, or not
recorded (review items from before revision 0004).
"""

from __future__ import annotations

import discord

from bot.core.permissions import is_admin


def can_view_channel(
    interaction: discord.Interaction, channel_id: int | None, *, history: bool = False
) -> bool:
    """Whether the interacting member may see what was posted in ``channel_id`` (of the
    interaction's server; ``None``: unknown); with ``history``, also earlier messages
    (Read Message History)."""
    if is_admin(interaction):
        return True
    channel = _channel(interaction, channel_id)
    member = interaction.user
    if channel is None or not isinstance(member, discord.Member):
        return False
    permissions = channel.permissions_for(member)
    return permissions.view_channel and (permissions.read_message_history or not history)


def visible_channel_ids(interaction: discord.Interaction) -> set[int] | None:
    """The ids of the server's channels and threads the member can view; ``None`` for
    admins and the bot's operators (every channel, and the ones no longer there)."""
    if is_admin(interaction):
        return None
    guild, member = interaction.guild, interaction.user
    if guild is None or not isinstance(member, discord.Member):
        return set()
    channels: list[discord.abc.GuildChannel | discord.Thread] = [*guild.channels, *guild.threads]
    return {c.id for c in channels if c.permissions_for(member).view_channel}


def _channel(
    interaction: discord.Interaction, channel_id: int | None
) -> discord.abc.GuildChannel | discord.Thread | None:
    guild = interaction.guild
    if guild is None or channel_id is None:
        return None
    return guild.get_channel_or_thread(channel_id)
