"""A server's settings (the default dataset, the trainer role, the "not sure" threshold,
the auto-retrain) and its rules (list, set, remove): administrators only, as ``/settings``
and ``/rule``. Changes go through the admin feature's :func:`change_settings` and the rules
feature's :func:`set_rule` / :func:`remove_rule`, with their checks and messages.

The server's roles and channels are read from the bot's own view of the server (the
dashboard runs in the bot's process), so a role or channel id from the form is accepted
only if it is one of that server's.
"""

from __future__ import annotations

import re
from typing import Any

import discord
from aiohttp import web

from bot.cogs.admin import AUTO_RETRAIN_MAX, SettingsChange, change_settings
from bot.cogs.rules import remove_rule, server_rules, set_rule
from bot.cogs.teach import server_labels
from bot.core.embeds import percent
from bot.core.errors import UserError
from bot.dashboard.access import ServerAccess
from bot.dashboard.views import bot_of, done, open_server, render, require_session, server_url
from bot.db import RuleAction

MENTION = re.compile(r"<#(\d+)>|<@&(\d+)>")


def guild_of(request: web.Request, access: ServerAccess) -> discord.Guild:
    guild = bot_of(request).get_guild(access.guild_id)
    if guild is None:  # checked by the access check; the bot may have left meanwhile
        raise web.HTTPNotFound(text="No such server for you.")
    return guild


def plain(text: str, guild: discord.Guild) -> str:
    """A message written for Discord, for a page: no markdown, channels and roles named."""

    def name(match: re.Match[str]) -> str:
        channel_id, role_id = match.groups()
        if channel_id:
            channel = guild.get_channel(int(channel_id))
            return f"#{channel.name}" if channel else "#deleted-channel"
        role = guild.get_role(int(role_id))
        return f"@{role.name}" if role else "@deleted-role"

    return MENTION.sub(name, text.replace("**", "").replace("`", ""))


async def settings_page(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request, admin=True)
    bot = bot_of(request)
    guild = guild_of(request, access)
    settings, options = await scope.settings(), await scope.options()
    roles = [r for r in reversed(guild.roles) if not r.is_default() and not r.managed]
    channels = list(guild.text_channels)
    rules = [
        {"label": rule.label, "text": plain(text, guild)}
        for rule, text in await server_rules(scope)
    ]
    context: dict[str, Any] = {
        "server": access,
        "settings": settings,
        "options": options,
        "low_confidence": (
            f"{options.low_confidence * 100:g}" if options.low_confidence is not None else ""
        ),
        "default_low_confidence": percent(bot.settings.low_confidence),
        "auto_retrain_max": AUTO_RETRAIN_MAX,
        "roles": roles,
        "channels": channels,
        "rules": rules,
        "actions": [a.value for a in RuleAction],
        "labels": await server_labels(bot, scope),
    }
    return render(request, "settings.html", context)


def _int(raw: object) -> int | None:
    text = str(raw or "").strip()
    return int(text) if text.isdigit() and len(text) <= 20 else None


async def save_settings(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request, admin=True)
    session = require_session(request)
    guild = guild_of(request, access)
    back = server_url(request, "settings", access)
    form = await request.post()
    role = str(form.get("trainer_role", "")).strip()
    auto = str(form.get("auto_retrain", "")).strip() or "0"
    low = str(form.get("low_confidence", "")).strip() or "default"
    try:
        if _int(auto) is None:
            raise UserError(f"Auto-retrain is a whole number from 0 to {AUTO_RETRAIN_MAX}.")
        if role and _int(role) is None:
            raise UserError("Choose one of the server's roles.")
        change = SettingsChange(
            include_default=form.get("include_default") == "on",
            trainer_role_id=_int(role) if role else None,
            clear_trainer_role=not role,
            low_confidence=low,
            auto_retrain=_int(auto),
        )
        await change_settings(scope, guild, change, user_id=session.user_id)
    except UserError as exc:
        raise done(request, back, plain(exc.message, guild), ok=False) from None
    raise done(request, back, "Settings saved.")


async def add_rule(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request, admin=True)
    session = require_session(request)
    guild = guild_of(request, access)
    back = server_url(request, "settings", access) + "#rules"
    form = await request.post()
    try:
        threshold = float(str(form.get("threshold", "")).strip() or "nan")
        emoji = str(form.get("emoji", "")).strip() or None
        channel = str(form.get("log_channel", "")).strip()
        result = await set_rule(
            bot_of(request),
            guild,
            scope,
            label=str(form.get("label", "")),
            action=str(form.get("action", "")),
            threshold=threshold,
            emoji=emoji,
            log_channel_id=_int(channel) if channel else None,
            user_id=session.user_id,
        )
    except ValueError:
        raise done(request, back, "The threshold is a number from 0 to 100.", ok=False) from None
    except UserError as exc:
        raise done(request, back, plain(exc.message, guild), ok=False) from None
    raise done(request, back, plain(result.text(), guild))


async def delete_rule(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request, admin=True)
    session = require_session(request)
    guild = guild_of(request, access)
    back = server_url(request, "settings", access) + "#rules"
    form = await request.post()
    try:
        key = await remove_rule(scope, str(form.get("label", "")), user_id=session.user_id)
    except UserError as exc:
        raise done(request, back, plain(exc.message, guild), ok=False) from None
    raise done(request, back, f"Removed the rule for {key}.")
