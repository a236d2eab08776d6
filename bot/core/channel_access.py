"""Which of a server's channels a member can view: what a member may be shown of the images
posted there (a review item, an answer, a message to teach).

A member's permissions in a channel are computed as discord.py computes them
(:meth:`discord.abc.GuildChannel.permissions_for`: the server's roles, the member's roles,
the channel's overwrites; a thread follows its parent) from the server the bot holds in
its cache. The server's administrators (Discord gives them every permission) and the
bot's operators (``ADMIN_USER_IDS``) see everything, so they alone see what comes from a
channel the bot does not know: deleted, an archived thread not in the cache, or not
recorded (review items from before revision 0004).

A :class:`ChannelViewer` is that decision for one member of one server, whoever asks: a
command builds it from its interaction (:meth:`ChannelViewer.of_interaction`, the member
Discord sent with it), the dashboard from the logged-in member's roles as the bot read
them (:meth:`ChannelViewer.of_member_roles`); both against the same cached server.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import discord

from bot.core.permissions import is_admin


@dataclass(frozen=True, slots=True)
class ChannelViewer:
    """A member looking at a server's channels. ``sees_all``: an administrator or one of
    the bot's operators; ``member``: the member as the permissions need them (``None``:
    unknown, sees nothing); ``guild``: the server as the bot's cache holds it."""

    guild: discord.Guild | None
    member: discord.Member | None
    sees_all: bool = False

    @classmethod
    def of_interaction(cls, interaction: discord.Interaction) -> ChannelViewer:
        user = interaction.user
        member = user if isinstance(user, discord.Member) else None
        return cls(interaction.guild, member, is_admin(interaction))

    @classmethod
    def of_member_roles(
        cls,
        guild: discord.Guild | None,
        user_id: int,
        role_ids: Collection[int],
        *,
        sees_all: bool,
    ) -> ChannelViewer:
        """A member known by id and roles (e.g. from ``GET /guilds/{id}/members/{user}``
        with the bot's token), against the server the bot holds (``None``: the bot does
        not have it, so only ``sees_all`` sees anything)."""
        if sees_all or guild is None:
            return cls(guild, None, sees_all)
        return cls(guild, _member(guild, user_id, role_ids), False)

    def can_view(self, channel_id: int | None, *, history: bool = False) -> bool:
        """Whether the member may see what was posted in ``channel_id`` (of this server;
        ``None``: unknown); with ``history``, also earlier messages (Read Message
        History)."""
        if self.sees_all:
            return True
        guild, member = self.guild, self.member
        if guild is None or member is None or channel_id is None:
            return False
        channel = guild.get_channel_or_thread(channel_id)
        if channel is None:
            return False
        permissions = channel.permissions_for(member)
        return permissions.view_channel and (permissions.read_message_history or not history)

    def visible_channel_ids(self) -> set[int] | None:
        """The ids of the server's channels and threads the member can view; ``None`` for
        those who see all (every channel, and the ones no longer there)."""
        if self.sees_all:
            return None
        guild, member = self.guild, self.member
        if guild is None or member is None:
            return set()
        channels: list[discord.abc.GuildChannel | discord.Thread] = [
            *guild.channels,
            *guild.threads,
        ]
        return {c.id for c in channels if c.permissions_for(member).view_channel}


def _member(guild: discord.Guild, user_id: int, role_ids: Collection[int]) -> discord.Member:
    """The member as the permission computation reads them (their id and roles; no
    timeout, which hides no channel): the member object discord.py builds from Discord's
    member payload, given the part of it the bot read. (Not the cache's member: without
    the privileged members intent the bot caches no member but itself.)"""
    payload = {
        "user": {"id": str(user_id), "username": "", "discriminator": "0", "avatar": None},
        "roles": [str(role_id) for role_id in role_ids],
        "joined_at": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
    }
    return discord.Member(data=payload, guild=guild, state=guild._state)  # type: ignore[arg-type]


def can_view_channel(
    interaction: discord.Interaction, channel_id: int | None, *, history: bool = False
) -> bool:
    """Whether the interacting member may see what was posted in ``channel_id`` (of the
    interaction's server; ``None``: unknown); with ``history``, also earlier messages
    (Read Message History)."""
    return ChannelViewer.of_interaction(interaction).can_view(channel_id, history=history)


def visible_channel_ids(interaction: discord.Interaction) -> set[int] | None:
    """The ids of the server's channels and threads the member can view; ``None`` for
    admins and the bot's operators (every channel, and the ones no longer there)."""
    return ChannelViewer.of_interaction(interaction).visible_channel_ids()
