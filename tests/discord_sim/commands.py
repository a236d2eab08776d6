"""What the Discord client checks before it sends a command: visibility and option types."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.discord_sim.model import (
    ALL_PERMISSIONS,
    Application,
    Attachment,
    Channel,
    Command,
    Guild,
    Role,
    User,
)
from tests.discord_sim.validation import ATTACHMENT_LIMIT


class CommandRejected(Exception):
    """The Discord client would not let the user send this (unknown command, bad options,
    or the command is hidden from them by its default permissions)."""


def visible_command(
    app: Application, guild: Guild, channel: Channel, user: User, name: str, ctype: int
) -> Command:
    cmd = app.find_command(guild.id, name, ctype)
    if cmd is None:
        raise CommandRejected(f"no command {name!r} (type {ctype}) registered")
    if guild.commands_open_to_everyone:
        return cmd
    required = cmd.data.get("default_member_permissions")
    perms = guild.channel_permissions(user.id, channel)
    if required is not None and (int(required) & perms) != int(required):
        raise CommandRejected(f"{name!r} is hidden from {user.name} (default permissions)")
    return cmd


def build_options(
    cmd: Command, given: dict[str, Any], permissions_in: Callable[[Channel], int] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The options' JSON and the ``resolved`` object (``{"attachments": ..., "roles": ...}``).

    A resolved channel carries the invoking member's permissions in it, as Discord computes
    them (``permissions_in``; without a member, e.g. a user install outside the server,
    every permission)."""
    schema = {o["name"]: o for o in cmd.data.get("options", [])}
    opts: list[dict[str, Any]] = []
    resolved: dict[str, dict[str, Any]] = {}
    for key in given:
        if key not in schema:
            raise CommandRejected(f"/{cmd.name} has no option {key!r}")
    for name, spec in schema.items():
        if name not in given:
            if spec.get("required"):
                raise CommandRejected(f"/{cmd.name}: option {name!r} is required")
            continue
        value, otype = given[name], spec["type"]
        if otype == 11:
            if not isinstance(value, Attachment):
                raise CommandRejected(f"{name!r} needs an attachment")
            if value.size > ATTACHMENT_LIMIT:
                raise CommandRejected("the Discord client refuses files over the limit")
            resolved.setdefault("attachments", {})[str(value.id)] = value.payload()
            value = str(value.id)
        elif otype == 8:
            if not isinstance(value, Role):
                raise CommandRejected(f"{name!r} needs a role")
            resolved.setdefault("roles", {})[str(value.id)] = value.payload(1)
            value = str(value.id)
        elif otype == 7:  # a channel: the client offers the server's channels only,
            # but a forged payload may name any; it comes resolved, as from Discord
            if not isinstance(value, Channel):
                raise CommandRejected(f"{name!r} needs a channel")
            resolved.setdefault("channels", {})[str(value.id)] = {
                **value.payload(),
                "permissions": str(
                    permissions_in(value) if permissions_in is not None else ALL_PERMISSIONS
                ),
            }
            value = str(value.id)
        elif otype == 10:
            lo, hi = spec.get("min_value"), spec.get("max_value")
            if (
                not isinstance(value, int | float)
                or (lo is not None and value < lo)
                or (hi is not None and value > hi)
            ):
                raise CommandRejected(f"{name!r} must be a number in [{lo}, {hi}]")
        elif otype == 4:
            lo, hi = spec.get("min_value"), spec.get("max_value")
            if (
                not isinstance(value, int)
                or (lo is not None and value < lo)
                or (hi is not None and value > hi)
            ):
                raise CommandRejected(f"{name!r} must be an integer in [{lo}, {hi}]")
        elif otype == 3:
            choices = [c["value"] for c in spec.get("choices", [])]
            if not isinstance(value, str) or (choices and value not in choices):
                raise CommandRejected(f"{name!r} must be one of {choices}")
            if len(value) > int(spec.get("max_length", 6000)):
                raise CommandRejected(f"{name!r} is too long")
        opts.append({"name": name, "type": otype, "value": value})
    return opts, resolved
