"""Setting, listing and removing a server's rules: the checks and the writes, shared by
``/rule set|list|remove`` and the dashboard (one code path; the caller has checked that
the member is an administrator).

A rule's permissions are checked when it is set: the bot must be able to do what it says
in every watched channel (react, delete) and in the log channel (post); the label must be
one the server's model knows or has taught images of (or ``unknown``, or ``*``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord
from discord.utils import escape_markdown

from bot.cogs.rules._actions import (
    DELETE_NEEDS,
    LOG_NEEDS,
    REACT_NEEDS,
    missing_permissions,
    permission_names,
)
from bot.cogs.rules._rules import (
    EmojiChoice,
    InvalidRule,
    describe_rule,
    parse_emoji,
    parse_threshold,
    rule_label,
)
from bot.core.discord_limits import clip
from bot.core.request_deadline import discord_said
from bot.core.tenancy import labels_of
from bot.db import ANY_LABEL, LabelRule, RuleAction, ScopedData
from bot.db.scope_rules import MAX_RULES
from golem_backend import UNKNOWN

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuleSet:
    rule: LabelRule
    replaced: bool
    watched_channels: int  # 0: the rule has nothing to act on yet

    def text(self) -> str:
        verb = "Replaced the rule" if self.replaced else "New rule"
        text = f"{verb}: {describe_rule(self.rule)}."
        if not self.watched_channels:
            text += "\nNo channel is watched yet: turn it on with /autoclassify on."
        return text


async def set_rule(
    bot: ClassifierBot,
    guild: discord.Guild,
    scope: ScopedData,
    *,
    label: str,
    action: str,
    threshold: float,
    emoji: str | None,
    log_channel_id: int | None,
    user_id: int,
) -> RuleSet:
    """Check and store one label's rule (``threshold`` in percent); :class:`InvalidRule`
    with what is wrong, and nothing stored, otherwise."""
    try:
        kind = RuleAction(action)
    except ValueError:
        names = ", ".join(a.value for a in RuleAction)
        raise InvalidRule(f"The action is one of {names}.") from None
    key = rule_label(label)
    confidence = parse_threshold(threshold)
    await _check_label_known(bot, scope, key)
    if emoji is not None and kind is not RuleAction.REACT:
        raise InvalidRule("`emoji` is only for the react action.")
    if log_channel_id is not None and kind is not RuleAction.LOG:
        raise InvalidRule("`log_channel` is only for the log action.")
    chosen: EmojiChoice | None = None
    watched = await _watched(bot, scope, guild)
    if kind is RuleAction.REACT:
        if emoji is None:
            raise InvalidRule("The react action needs an `emoji`.")
        chosen = await _check_emoji(guild, parse_emoji(emoji))
        _check_watched(watched, REACT_NEEDS)
    elif kind is RuleAction.LOG:
        if log_channel_id is None:
            raise InvalidRule("The log action needs a `log_channel`.")
        _check_log_channel(guild, log_channel_id)
    elif kind is RuleAction.DELETE:
        _check_watched(watched, DELETE_NEEDS)
    new_rule = LabelRule(
        key, kind, confidence, chosen.text if chosen else None, log_channel_id, user_id
    )
    try:
        replaced = await scope.set_rule(new_rule)
    except ValueError:
        raise InvalidRule(
            f"This server has {MAX_RULES} rules, the limit: remove one first."
        ) from None
    log.info(
        "server %s: rule %s -> %s at %.2f by %s",
        scope.scope_id,
        key,
        kind.value,
        confidence,
        user_id,
    )
    return RuleSet(new_rule, replaced, len(watched))


async def remove_rule(scope: ScopedData, label: str, *, user_id: int) -> str:
    """Remove one label's rule; the label as stored. :class:`InvalidRule` if it has none."""
    key = rule_label(label)
    if not await scope.remove_rule(key):
        raise InvalidRule(f"There is no rule for **{escape_markdown(key)}**.")
    log.info("server %s: rule %s removed by %s", scope.scope_id, key, user_id)
    return key


async def server_rules(scope: ScopedData) -> list[tuple[LabelRule, str]]:
    """The server's rules, each with its description."""
    return [(rule, describe_rule(rule)) for rule in await scope.rules()]


async def _check_label_known(bot: ClassifierBot, scope: ScopedData, label: str) -> None:
    if label in (ANY_LABEL, UNKNOWN):
        return
    model_labels, _ = await labels_of(bot, scope)
    if label not in model_labels and label not in await scope.label_counts():
        raise InvalidRule(
            f"This server's model doesn't know **{escape_markdown(label)}** and it has no "
            "taught images: /labels lists the labels."
        )


async def _check_emoji(guild: discord.Guild, choice: EmojiChoice) -> EmojiChoice:
    if choice.custom_id is None:
        return choice
    try:
        await guild.fetch_emoji(choice.custom_id)
    except discord.NotFound:
        raise InvalidRule(
            "That custom emoji is not one of this server's: use a unicode emoji or one "
            "of this server's emojis."
        ) from None
    except discord.HTTPException as exc:
        raise InvalidRule(
            f"I couldn't check that emoji with Discord ({discord_said(exc)}); try again."
        ) from None
    return choice


async def _watched(
    bot: ClassifierBot, scope: ScopedData, guild: discord.Guild
) -> list[discord.abc.GuildChannel]:
    ids = await scope.watched_channels() | set(bot.settings.autoclassify_channel_ids)
    return [c for c in (guild.get_channel(i) for i in sorted(ids)) if c is not None]


def _check_watched(channels: list[discord.abc.GuildChannel], needed: tuple[str, ...]) -> None:
    """Refuse the rule, saying exactly what is missing where."""
    problems = []
    for channel in channels:
        missing = missing_permissions(channel, needed)
        if missing:
            problems.append(f"{permission_names(missing)} in {channel.mention}")
    if problems:
        raise InvalidRule(
            clip(
                "I can't follow this rule: I'm missing " + "; ".join(problems) + ". Grant "
                "it to my role (or in those channels), then set the rule again.",
                1900,
            )
        )


def _check_log_channel(guild: discord.Guild, channel_id: int) -> discord.TextChannel:
    channel = guild.get_channel(channel_id)
    if channel is None:
        raise InvalidRule("The log channel must be a channel of this server.")
    if not isinstance(channel, discord.TextChannel):
        raise InvalidRule(f"{channel.mention} is not a text channel I can post to.")
    missing = missing_permissions(channel, LOG_NEEDS)
    if missing:
        raise InvalidRule(
            f"I can't post to {channel.mention}: I'm missing {permission_names(missing)} "
            "there. Grant it, then set the rule again."
        )
    return channel
