"""Interactions through a user install: in DMs, group DMs, or a server without the bot.

What the Discord client does: only global commands whose ``integration_types`` include
1 (user install) and whose ``contexts`` include the one at hand are offered; the
interaction names who installed the app in ``authorizing_integration_owners``
(``{"1": user_id}``); in DMs there is no ``guild_id`` and no ``member``, only ``user``.
In a server that does not let members use external apps, Discord shows the app's replies
to the user only (ephemeral), whatever the app asked; the simulator does so too and
counts each reply it had to make private (``Interaction.forced_private``).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from tests.discord_sim.commands import CommandRejected, build_options
from tests.discord_sim.model import (
    ATTACH_FILES,
    EMBED_LINKS,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    USE_EXTERNAL_APPS,
    VIEW_CHANNEL,
    Application,
    Channel,
    Guild,
    Message,
    User,
    snowflake,
)
from tests.discord_sim.validation import ATTACHMENT_LIMIT

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator, Interaction

GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2
USER_INSTALL = 1
#: what an app may do in a DM or through a user install (Discord's fixed set, roughly)
DM_APP_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY
)


def dm_channel(channel_id: int, user: User, context: int) -> dict[str, Any]:
    if context == BOT_DM:
        return {"id": str(channel_id), "type": 1, "recipients": [user.payload()], "flags": 0}
    return {
        "id": str(channel_id),
        "type": 3,
        "name": "group",
        "recipients": [user.payload()],
        "owner_id": str(user.id),
        "flags": 0,
    }


async def user_install_interaction(
    sim: DiscordSimulator,
    app: Application,
    user: User,
    name: str,
    *,
    context: int,
    options: dict[str, Any] | None = None,
    target: Message | None = None,
    guild: Guild | None = None,
    channel: Channel | None = None,
    dm_channel_id: int | None = None,
) -> Interaction:
    """``/name`` (or the message menu ``name`` on ``target``) through ``user``'s install of
    ``app``: in a DM (``context=BOT_DM``/``PRIVATE_CHANNEL``) or in ``guild``/``channel``
    (``context=GUILD``), a server the bot need not be a member of."""
    from tests.discord_sim.simulator import Interaction

    ctype = 3 if target is not None else 1
    cmd = app.global_commands.get((name, ctype))
    if cmd is None:
        raise CommandRejected(f"no global command {name!r}: user installs see global ones only")
    if USER_INSTALL not in (cmd.data.get("integration_types") or [0]):
        raise CommandRejected(f"{name!r} cannot be used through a user install")
    if context not in (cmd.data.get("contexts") or [GUILD, BOT_DM, PRIVATE_CHANNEL]):
        raise CommandRejected(f"{name!r} is not offered in context {context}")
    data: dict[str, Any] = {"id": str(cmd.id), "name": name, "type": ctype}
    if target is not None:
        data["target_id"] = str(target.id)
        data["resolved"] = {"messages": {str(target.id): target.payload()}}
    else:
        opts, resolved = build_options(cmd, options or {})
        data["options"] = opts
        if resolved:
            data["resolved"] = resolved
    ix_id, token = snowflake(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
    payload: dict[str, Any] = {
        "id": str(ix_id),
        "application_id": str(app.id),
        "type": 2,
        "token": token,
        "version": 1,
        "locale": "en-US",
        "attachment_size_limit": ATTACHMENT_LIMIT,
        "entitlements": [],
        "authorizing_integration_owners": {str(USER_INSTALL): str(user.id)},
        "context": context,
        "data": data,
    }
    ephemeral_only = False
    if context == GUILD:
        assert guild is not None and channel is not None
        perms = guild.channel_permissions(user.id, channel)
        ephemeral_only = not perms & USE_EXTERNAL_APPS
        channel_id = channel.id
        payload.update(
            guild_id=str(guild.id),
            guild_locale="en-US",
            channel_id=str(channel.id),
            channel={**channel.payload(), "permissions": str(perms)},
            member=guild.member_payload(user, channel),
            app_permissions=str(DM_APP_PERMISSIONS),
        )
    else:
        channel_id = dm_channel_id or snowflake()
        payload.update(
            channel_id=str(channel_id),
            channel=dm_channel(channel_id, user, context),
            user=user.payload(),
            app_permissions=str(DM_APP_PERMISSIONS),
        )
    guild_id = guild.id if context == GUILD and guild is not None else None
    ix = Interaction(ix_id, token, app, guild_id, channel_id, user, name, payload)
    ix.ephemeral_only = ephemeral_only
    sim.interactions[ix_id] = ix
    sim.interactions_by_token[token] = ix
    session = sim.session_for(app, guild_id)
    if session is None:
        raise RuntimeError(f"{app.user.name} is not connected")
    ix.created = time.monotonic()
    await session.dispatch("INTERACTION_CREATE", payload)
    return ix
