"""A user pressing buttons, choosing in selects, submitting modals, typing into an
autocompleted option: the INTERACTION_CREATE payloads the Discord client makes.

A component interaction (type 3) carries the message it was on; its context (server, user
install, DM) is that of the message: a message sent in answer to an interaction keeps
that interaction's context. A modal submit (type 5) follows the interaction that opened
the modal (``Interaction.modal``); if that was a component interaction, the modal submit
carries the same message and may be answered by updating it (callback 6 or 7).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from tests.discord_sim.commands import CommandRejected, visible_command
from tests.discord_sim.components import (
    BUTTON,
    STRING_SELECT,
    ComponentRejected,
    find_component,
    modal_submission,
    selection,
)
from tests.discord_sim.installs import DM_APP_PERMISSIONS, dm_channel
from tests.discord_sim.model import Application, Channel, Guild, Message, User, snowflake
from tests.discord_sim.validation import ATTACHMENT_LIMIT

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator, Interaction

APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5


def _new_token() -> tuple[int, str]:
    return snowflake(), "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)


def guild_context(app: Application, guild: Guild, channel: Channel, user: User) -> dict[str, Any]:
    """The guild, channel and member fields of an interaction by ``user`` in ``channel`` of
    a server that installed ``app``."""
    return {
        "guild_id": str(guild.id),
        "channel_id": str(channel.id),
        "channel": {
            **channel.payload(),
            "permissions": str(guild.channel_permissions(user.id, channel)),
        },
        "member": guild.member_payload(user, channel),
        "app_permissions": str(guild.channel_permissions(app.user.id, channel)),
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": str(guild.id)},
        "context": 0,
    }


def _context_of(
    sim: DiscordSimulator, app: Application, message: Message, user: User
) -> dict[str, Any]:
    """Guild/channel/member fields of an interaction on ``message`` by ``user``."""
    origin = sim.interactions.get(message.interaction_id) if message.interaction_id else None
    out: dict[str, Any] = {"locale": "en-US", "entitlements": []}
    keys = ("context", "authorizing_integration_owners", "guild_locale")
    if origin is not None:
        out.update({k: origin.payload[k] for k in keys if k in origin.payload})
    channel = sim.channels.get(message.channel_id)
    guild = sim.guilds.get(message.guild_id) if message.guild_id else None
    if guild is not None and channel is not None:
        out["guild_id"] = str(guild.id)
        out["channel_id"] = str(channel.id)
        perms = guild.channel_permissions(user.id, channel)
        out["channel"] = {**channel.payload(), "permissions": str(perms)}
        out["member"] = guild.member_payload(user, channel)
        out.setdefault("authorizing_integration_owners", {"0": str(guild.id)})
        out.setdefault("context", 0)
        if "0" in out["authorizing_integration_owners"]:
            out["app_permissions"] = str(guild.channel_permissions(app.user.id, channel))
        else:
            out["app_permissions"] = str(DM_APP_PERMISSIONS)
    else:  # a DM
        assert origin is not None, "a DM message without the interaction that sent it"
        out["channel_id"] = str(message.channel_id)
        out["user"] = user.payload()
        out["channel"] = dm_channel(message.channel_id, user, int(origin.payload["context"]))
        out["app_permissions"] = str(DM_APP_PERMISSIONS)
    return out


async def dispatch(
    sim: DiscordSimulator,
    app: Application,
    kind: int,
    user: User,
    name: str,
    fields: dict[str, Any],
    data: dict[str, Any],
    *,
    message: Message | None = None,
) -> Interaction:
    """Record and send one INTERACTION_CREATE of type ``kind``."""
    from tests.discord_sim.simulator import Interaction

    ix_id, token = _new_token()
    payload: dict[str, Any] = {
        "id": str(ix_id),
        "application_id": str(app.id),
        "type": kind,
        "token": token,
        "version": 1,
        "attachment_size_limit": ATTACHMENT_LIMIT,
        **fields,
        "data": data,
    }
    if message is not None:
        payload["message"] = message.payload()
    guild_id = int(fields["guild_id"]) if "guild_id" in fields else None
    channel_id = int(fields["channel_id"])
    ix = Interaction(ix_id, token, app, guild_id, channel_id, user, name, payload)
    ix.component_message = message
    ix.ephemeral_only = bool(
        message is not None
        and message.interaction_id in sim.interactions
        and sim.interactions[message.interaction_id].ephemeral_only
    )
    sim.interactions[ix_id] = ix
    sim.interactions_by_token[token] = ix
    session = sim.session_for(app, guild_id)
    if session is None:
        raise RuntimeError(f"{app.user.name} is not connected")
    ix.created = time.monotonic()
    await session.dispatch("INTERACTION_CREATE", payload)
    return ix


def _visible_to(message: Message, user: User, sim: DiscordSimulator) -> None:
    if message.deleted:
        raise ComponentRejected("that message was deleted")
    origin = sim.interactions.get(message.interaction_id) if message.interaction_id else None
    if message.ephemeral and origin is not None and origin.user.id != user.id:
        raise ComponentRejected("only the user an ephemeral message was sent to sees it")


async def press(
    sim: DiscordSimulator,
    app: Application,
    message: Message,
    user: User,
    *,
    label: str | None = None,
    custom_id: str | None = None,
) -> Interaction:
    """Press the button labelled ``label`` (or with ``custom_id``) on ``message``."""
    _visible_to(message, user, sim)
    button = find_component(message.components, label=label, custom_id=custom_id)
    if button.get("type") != BUTTON:
        raise ComponentRejected(f"{label or custom_id!r} is not a button")
    if button.get("disabled"):
        raise ComponentRejected(f"the button {button.get('label')!r} is disabled")
    data = {"custom_id": button["custom_id"], "component_type": BUTTON}
    fields = _context_of(sim, app, message, user)
    name = str(button.get("label") or button["custom_id"])
    return await dispatch(sim, app, MESSAGE_COMPONENT, user, name, fields, data, message=message)


async def choose(
    sim: DiscordSimulator,
    app: Application,
    message: Message,
    user: User,
    values: list[str],
    *,
    placeholder: str | None = None,
    custom_id: str | None = None,
) -> Interaction:
    """Choose ``values`` in the string select with this placeholder or custom id (the
    message's only select when neither is given)."""
    _visible_to(message, user, sim)
    if placeholder is None and custom_id is None:
        selects = [
            c
            for row in message.components
            for c in row.get("components") or []
            if c.get("type") == STRING_SELECT
        ]
        if len(selects) != 1:
            raise ComponentRejected(f"{len(selects)} selects on that message: name one")
        select = selects[0]
    else:
        select = find_component(message.components, label=placeholder, custom_id=custom_id)
    if select.get("type") != STRING_SELECT:
        raise ComponentRejected("that component is not a string select")
    if select.get("disabled"):
        raise ComponentRejected("that select is disabled")
    data = {
        "custom_id": select["custom_id"],
        "component_type": STRING_SELECT,
        "values": selection(select, values),
    }
    fields = _context_of(sim, app, message, user)
    return await dispatch(
        sim, app, MESSAGE_COMPONENT, user, select["custom_id"], fields, data, message=message
    )


async def forge_component(
    sim: DiscordSimulator,
    app: Application,
    message: Message,
    user: User,
    custom_id: str,
    *,
    component_type: int = BUTTON,
    values: list[str] | None = None,
) -> Interaction:
    """A component interaction with any ``custom_id`` (a modified client: Discord itself
    only checks that the message has components, so the bot must check the rest)."""
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
    if component_type == STRING_SELECT:
        data["values"] = list(values or [])
    fields = _context_of(sim, app, message, user)
    return await dispatch(
        sim, app, MESSAGE_COMPONENT, user, custom_id, fields, data, message=message
    )


async def submit_modal(
    sim: DiscordSimulator,
    opened_by: Interaction,
    values: dict[str, str],
    *,
    enforce: bool = True,
    custom_id: str | None = None,
) -> Interaction:
    """Fill in and submit the modal the bot answered ``opened_by`` with. ``enforce=False``
    (and ``custom_id``) forge what a modified client could send."""
    modal = opened_by.modal
    if modal is None:
        raise ComponentRejected(f"the bot did not answer {opened_by.name!r} with a modal")
    if opened_by.modal_submitted and enforce:
        raise ComponentRejected("that modal was submitted already")
    data = {
        "custom_id": custom_id or modal["custom_id"],
        "components": modal_submission(modal, values, enforce=enforce),
    }
    opened_by.modal_submitted = True
    origin = opened_by.payload
    keep = (
        "guild_id",
        "channel_id",
        "channel",
        "member",
        "user",
        "app_permissions",
        "context",
        "authorizing_integration_owners",
        "locale",
        "guild_locale",
        "entitlements",
    )
    fields = {k: origin[k] for k in keep if k in origin}
    message = opened_by.component_message
    return await dispatch(
        sim,
        opened_by.app,
        MODAL_SUBMIT,
        opened_by.user,
        data["custom_id"],
        fields,
        data,
        message=message,
    )


async def autocomplete(
    sim: DiscordSimulator,
    app: Application,
    channel: Channel,
    user: User,
    name: str,
    options: dict[str, Any],
    focused: str,
    timeout_s: float = 10.0,
) -> list[dict[str, Any]]:
    """Type into option ``focused`` of ``/name`` (the other options as already filled in);
    the choices the bot offers (callback type 8)."""
    guild = sim.guilds[channel.guild_id]
    top, _, sub = name.partition(" ")  # "teach images": a subcommand of /teach
    cmd = visible_command(app, guild, channel, user, top, 1)
    listed = cmd.data.get("options", [])
    if sub:
        spec = next((o for o in listed if o.get("type") == 1 and o["name"] == sub), None)
        if spec is None:
            raise CommandRejected(f"/{top} has no subcommand {sub!r}")
        listed = spec.get("options", [])
    declared = {o["name"]: o for o in listed}
    if focused not in declared or not declared[focused].get("autocomplete"):
        raise CommandRejected(f"/{name} option {focused!r} does not autocomplete")
    opts = []
    for key, value in options.items():
        if key not in declared:
            raise CommandRejected(f"/{name} has no option {key!r}")
        if declared[key]["type"] == 11:  # attachments are not sent while typing
            continue
        opt: dict[str, Any] = {"name": key, "type": declared[key]["type"], "value": value}
        if key == focused:
            opt["focused"] = True
        opts.append(opt)
    if sub:
        opts = [{"type": 1, "name": sub, "options": opts}]
    data: dict[str, Any] = {"id": str(cmd.id), "name": top, "type": 1, "options": opts}
    if cmd.guild_id is not None:
        data["guild_id"] = str(cmd.guild_id)
    fields = guild_context(app, guild, channel, user)
    ix = await dispatch(sim, app, AUTOCOMPLETE, user, top, fields, data)
    await sim.wait_until(lambda: ix.choices is not None, timeout_s)
    assert ix.choices is not None
    return ix.choices
