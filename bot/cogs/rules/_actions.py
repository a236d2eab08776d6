"""Carrying out a message's rules (``plan_message``) in a watched channel.

Every Discord call may be refused (a permission removed since the rule was set, a log
channel deleted, an emoji gone): each refusal is logged, reported in the channel (the same
problem at most once per ``PROBLEM_REPORT_INTERVAL_S`` there), never raised, and the other
actions still run.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import discord
from discord.utils import escape_markdown

from bot.cogs.rules._rules import MessagePlan
from bot.core.classifying import ImageAnswer, fetch
from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.download import image_extension
from bot.core.embeds import RED, percent
from bot.core.errors import UserError, explain
from bot.core.request_deadline import discord_said
from bot.db import LabelRule
from golem_backend import ImageError

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

log = logging.getLogger(__name__)

#: The same problem is reported in a channel at most once per this many seconds (it is
#: logged every time): a permission removed in a busy channel must not flood it.
PROBLEM_REPORT_INTERVAL_S = 600.0

#: What each action needs of the bot, by discord.py permission name.
DELETE_NEEDS = ("manage_messages",)
REACT_NEEDS = ("read_message_history", "add_reactions")
LOG_NEEDS = ("view_channel", "send_messages", "embed_links", "attach_files")


def permission_names(names: Iterable[str]) -> str:
    """``manage_messages`` -> ``Manage Messages``, joined."""
    return ", ".join(n.replace("_", " ").title() for n in names)


def missing_permissions(channel: discord.abc.GuildChannel, needed: Iterable[str]) -> list[str]:
    """The permissions in ``needed`` the bot lacks in ``channel`` (as Discord computes them
    from roles and the channel's overwrites)."""
    me = channel.guild.me
    perms = channel.permissions_for(me)
    return [name for name in needed if not getattr(perms, name)]


class ProblemReports:
    """Which rule problems were reported in which channel, and when."""

    def __init__(self, interval_s: float = PROBLEM_REPORT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[tuple[int, str], float] = {}

    def due(self, channel_id: int, problems: list[str]) -> list[str]:
        """The problems not reported in ``channel_id`` within the interval (now marked)."""
        now = time.monotonic()
        self._last = {k: t for k, t in self._last.items() if now - t < self.interval_s}
        fresh = [p for p in problems if (channel_id, p) not in self._last]
        for problem in fresh:
            self._last[(channel_id, problem)] = now
        return fresh


async def carry_out(
    bot: ClassifierBot,
    message: discord.Message,
    answers: list[ImageAnswer],
    plan: MessagePlan,
    *,
    reply_embeds: list[discord.Embed],
    note: str | None,
    view: discord.ui.View | None = None,
    reports: ProblemReports | None = None,
) -> list[str]:
    """Do what ``plan`` says; the problems met (already logged and reported). ``view``
    (e.g. feedback buttons) goes with the reply, if there is one."""
    problems: list[str] = []
    for index, rule in plan.log:
        problem = await post_log(bot, message, answers[index], rule)
        if problem:
            problems.append(problem)
    if plan.delete:
        problem = await delete(message, plan.deleted_by)
        if problem:
            problems.append(problem)
    for emoji in plan.react:
        problem = await react(message, emoji)
        if problem:
            problems.append(problem)
    if reply_embeds or (note and plan.reply):
        try:
            extra = {"view": view} if view is not None else {}
            await send_reply(message, content=note, embeds=reply_embeds, **extra)
        except Exception as exc:  # refused, unanswered, or answered in a shape unread
            log.warning("could not reply in channel %s: %s", message.channel.id, exc)
    for problem in problems:
        log.warning("rule problem in channel %s: %s", message.channel.id, problem)
    fresh = reports.due(message.channel.id, problems) if reports else problems
    if fresh:
        await report(message, fresh)
    return problems


async def delete(message: discord.Message, rule: LabelRule | None) -> str | None:
    label = rule.label if rule else "?"
    try:
        await message.delete()
    except discord.NotFound:
        return None  # already gone
    except discord.Forbidden:
        return (
            f"A rule says to delete images of **{escape_markdown(label)}** here, but I'm "
            f"missing the {permission_names(DELETE_NEEDS)} permission in this channel."
        )
    except discord.HTTPException as exc:
        log.warning("could not delete message %s: %s", message.id, exc)
        return f"I couldn't delete this message ({discord_said(exc)})."
    log.info("deleted message %s in channel %s by rule %s", message.id, message.channel.id, label)
    return None


async def react(message: discord.Message, emoji: str) -> str | None:
    try:
        await message.add_reaction(discord.PartialEmoji.from_str(emoji))  # name:id or unicode
    except discord.Forbidden:
        return (
            f"A rule says to react with {emoji} here, but I'm missing the "
            f"{permission_names(REACT_NEEDS)} permissions in this channel."
        )
    except discord.NotFound:
        return None  # the message was deleted meanwhile
    except discord.HTTPException as exc:
        if exc.code == 10014:
            return f"A rule's emoji {emoji} is no longer available: set the rule again."
        log.warning("could not react to message %s: %s", message.id, exc)
        return f"I couldn't react with {emoji} ({discord_said(exc)})."
    return None


async def post_log(
    bot: ClassifierBot, message: discord.Message, answer: ImageAnswer, rule: LabelRule
) -> str | None:
    """Post the image, its answer and a jump link to the rule's log channel."""
    assert message.guild is not None and answer.prediction is not None
    channel = message.guild.get_channel(rule.log_channel_id or 0)
    if not isinstance(channel, discord.TextChannel | discord.Thread):
        return (
            f"The log channel of the rule for **{escape_markdown(rule.label)}** no longer "
            "exists: set the rule again with another channel."
        )
    prediction = answer.prediction
    embed = discord.Embed(
        title=clip(f"{prediction.label} ({percent(prediction.confidence)})", 256),
        description=(
            f"[Jump to the message]({message.jump_url}) by {message.author.mention} "
            f"in {message.channel.mention}"  # type: ignore[union-attr]
        ),
        colour=RED,
    )
    embed.set_author(name=clip(answer.attachment.filename, 256))
    embed.set_footer(text=f"rule: {rule.label} · model {prediction.model_id or '?'}")
    files: list[discord.File] = []
    try:
        data = await fetch(bot, answer.attachment)
        name = f"image.{image_extension(data)}"
        files.append(discord.File(io.BytesIO(data), name))
        embed.set_image(url=f"attachment://{name}")
    except (UserError, ImageError) as exc:  # logged without the image
        embed.add_field(name="Image", value=clip(explain(exc) or "unavailable", 1024))
    try:
        await channel.send(embed=embed, files=files)
    except discord.Forbidden:
        missing = missing_permissions(channel, LOG_NEEDS) or list(LOG_NEEDS)
        return (
            f"A rule says to log images of **{escape_markdown(rule.label)}** to "
            f"{channel.mention}, but I'm missing {permission_names(missing)} there."
        )
    except discord.HTTPException as exc:
        log.warning("could not post to log channel %s: %s", channel.id, exc)
        return f"I couldn't post to {channel.mention} ({discord_said(exc)})."
    return None


async def send_reply(message: discord.Message, **kwargs: object) -> None:
    """Reply without pinging; if the message was deleted meanwhile, post it anyway."""
    reference = message.to_reference(fail_if_not_exists=False)
    await message.channel.send(reference=reference, mention_author=False, **kwargs)  # type: ignore[call-overload]


async def report(message: discord.Message, problems: list[str]) -> None:
    """Tell the channel what a rule could not do."""
    text = clip("⚠️ " + "\n⚠️ ".join(problems), CONTENT_MAX)
    try:
        await send_reply(message, content=text)
    except Exception as exc:  # refused, unanswered, or answered in a shape unread
        log.warning("could not report a rule problem in channel %s: %s", message.channel.id, exc)
