"""/rule set, /rule list, /rule remove: what the bot does with images in watched channels.

Precedence and how a message's images combine: ``_rules.py``. A rule's permissions are
checked when it is set (in every watched channel, and in the log channel); at run time
a refusal is logged and reported (``_actions.py``).
"""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands
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
)
from bot.cogs.rules._rules import rule_label as parse_rule_label
from bot.core.channel_option import TextChannelOption
from bot.core.client import ClassifierBot
from bot.core.discord_limits import clip
from bot.core.embeds import BLUE
from bot.core.paged_views import PageView, text_pages
from bot.core.permissions import admin_only
from bot.core.tenancy import labels_of, server_scope
from bot.db import ANY_LABEL, LabelRule, RuleAction, ScopedData
from bot.db.scope_rules import MAX_RULES
from golem_backend import UNKNOWN

log = logging.getLogger(__name__)

Action = Literal["reply", "react", "log", "delete", "nothing"]


class RulesCog(commands.Cog):
    rule = app_commands.Group(
        name="rule",
        description="What I do with images in watched channels (admins)",
        guild_only=True,
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot

    @rule.command(name="set", description="Set the rule of a label (one rule per label)")
    @app_commands.describe(
        label="A label, 'unknown', or * for any label (the catch-all)",
        action="What to do with the message",
        threshold="Act when the confidence is at least this, in percent (0-100)",
        emoji="For react: a unicode emoji or one of this server's emojis",
        log_channel="For log: the channel to post the image and a jump link to",
    )
    @admin_only()
    async def set_rule(
        self,
        interaction: discord.Interaction,
        label: app_commands.Range[str, 1, 32],
        action: Action,
        threshold: float,
        emoji: app_commands.Range[str, 1, 100] | None = None,
        log_channel: app_commands.Transform[app_commands.AppCommandChannel, TextChannelOption]
        | None = None,
    ) -> None:
        scope = server_scope(self.bot, interaction)
        guild = interaction.guild
        assert guild is not None  # server_scope: a server with the bot installed
        kind = RuleAction(action)
        rule_label = parse_rule_label(label)
        confidence = parse_threshold(threshold)
        await self._check_label_known(scope, rule_label)
        if emoji is not None and kind is not RuleAction.REACT:
            raise InvalidRule("`emoji` is only for the react action.")
        if log_channel is not None and kind is not RuleAction.LOG:
            raise InvalidRule("`log_channel` is only for the log action.")
        chosen: EmojiChoice | None = None
        log_channel_id: int | None = None
        if kind is RuleAction.REACT:
            if emoji is None:
                raise InvalidRule("The react action needs an `emoji`.")
            chosen = await self._check_emoji(guild, parse_emoji(emoji))
            self._check_watched(guild, await self._watched(scope, guild), REACT_NEEDS)
        elif kind is RuleAction.LOG:
            if log_channel is None:
                raise InvalidRule("The log action needs a `log_channel`.")
            log_channel_id = self._check_log_channel(guild, log_channel).id
        elif kind is RuleAction.DELETE:
            self._check_watched(guild, await self._watched(scope, guild), DELETE_NEEDS)
        new_rule = LabelRule(
            rule_label,
            kind,
            confidence,
            chosen.text if chosen else None,
            log_channel_id,
            interaction.user.id,
        )
        try:
            replaced = await scope.set_rule(new_rule)
        except ValueError:
            raise InvalidRule(
                f"This server has {MAX_RULES} rules, the limit: /rule remove one first."
            ) from None
        log.info(
            "server %s: rule %s -> %s at %.2f by %s",
            scope.scope_id,
            rule_label,
            kind.value,
            confidence,
            interaction.user.id,
        )
        verb = "Replaced the rule" if replaced else "New rule"
        text = f"{verb}: {describe_rule(new_rule)}."
        if not await self._watched(scope, guild):
            text += "\nNo channel is watched yet: turn it on with /autoclassify on."
        await interaction.response.send_message(text, ephemeral=True)

    async def _check_label_known(self, scope: ScopedData, label: str) -> None:
        if label in (ANY_LABEL, UNKNOWN):
            return
        model_labels, _ = await labels_of(self.bot, scope)
        if label not in model_labels and label not in await scope.label_counts():
            raise InvalidRule(
                f"This server's model doesn't know **{escape_markdown(label)}** and it has no "
                "taught images: /labels lists the labels."
            )

    async def _check_emoji(self, guild: discord.Guild, choice: EmojiChoice) -> EmojiChoice:
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
                f"I couldn't check that emoji with Discord ({exc.status}); try again."
            ) from None
        return choice

    async def _watched(
        self, scope: ScopedData, guild: discord.Guild
    ) -> list[discord.abc.GuildChannel]:
        ids = await scope.watched_channels() | set(self.bot.settings.autoclassify_channel_ids)
        return [c for c in (guild.get_channel(i) for i in sorted(ids)) if c is not None]

    def _check_watched(
        self,
        guild: discord.Guild,
        channels: list[discord.abc.GuildChannel],
        needed: tuple[str, ...],
    ) -> None:
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

    def _check_log_channel(
        self, guild: discord.Guild, picked: app_commands.AppCommandChannel
    ) -> discord.abc.GuildChannel:
        channel = guild.get_channel(picked.id)
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

    @rule.command(name="list", description="This server's rules")
    @admin_only()
    async def list_rules(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        rules = await scope.rules()
        lines = [describe_rule(r) for r in rules]
        texts = text_pages(lines or ["No rules: I reply to every image in watched channels."])
        pages = []
        for n, text in enumerate(texts, 1):
            embed = discord.Embed(title=f"Rules ({len(rules)})", description=text, colour=BLUE)
            page = f"page {n}/{len(texts)} · " if len(texts) > 1 else ""
            embed.set_footer(
                text=f"{page}A label's own rule wins over * (any label); "
                "below every threshold I reply."
            )
            pages.append(embed)
        if len(pages) == 1:
            await interaction.response.send_message(embed=pages[0], ephemeral=True)
            return
        view = PageView(pages, interaction.user.id, command="/rule list")
        await interaction.response.send_message(embed=pages[0], view=view, ephemeral=True)

    @rule.command(name="remove", description="Remove the rule of a label")
    @app_commands.describe(label="The rule's label ('unknown', or * for the catch-all)")
    @admin_only()
    async def remove_rule(
        self, interaction: discord.Interaction, label: app_commands.Range[str, 1, 32]
    ) -> None:
        scope = server_scope(self.bot, interaction)
        key = parse_rule_label(label)
        if not await scope.remove_rule(key):
            raise InvalidRule(f"There is no rule for **{escape_markdown(key)}**: /rule list.")
        await interaction.response.send_message(
            f"Removed the rule for **{escape_markdown(key)}**.", ephemeral=True
        )
