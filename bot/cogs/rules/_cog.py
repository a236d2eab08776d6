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

from bot.cogs.rules._rule_changes import remove_rule, server_rules, set_rule
from bot.core.channel_option import TextChannelOption
from bot.core.client import ClassifierBot
from bot.core.embeds import BLUE
from bot.core.paged_views import PageView, text_pages
from bot.core.permissions import admin_only
from bot.core.tenancy import server_scope

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
        label="A label, 'unknown', or * for any recognised label (never acts on unknown)",
        action="What to do with the message",
        threshold="Act on recognised images at least this sure, in percent (0-100)",
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
        done = await set_rule(
            self.bot,
            guild,
            scope,
            label=label,
            action=action,
            threshold=threshold,
            emoji=emoji,
            log_channel_id=log_channel.id if log_channel is not None else None,
            user_id=interaction.user.id,
        )
        await interaction.response.send_message(done.text(), ephemeral=True)

    @rule.command(name="list", description="This server's rules")
    @admin_only()
    async def list_rules(self, interaction: discord.Interaction) -> None:
        scope = server_scope(self.bot, interaction)
        rules = await server_rules(scope)
        lines = [text for _, text in rules]
        texts = text_pages(lines or ["No rules: I reply to every image in watched channels."])
        pages = []
        for n, text in enumerate(texts, 1):
            embed = discord.Embed(title=f"Rules ({len(rules)})", description=text, colour=BLUE)
            page = f"page {n}/{len(texts)} · " if len(texts) > 1 else ""
            embed.set_footer(
                text=f"{page}Rules act only on images I recognise (passing my open-set "
                "check) at or above their threshold; only an 'unknown' rule acts on the "
                "rest. A label's own rule wins over * (any recognised label); otherwise I reply."
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
        key = await remove_rule(scope, label, user_id=interaction.user.id)
        await interaction.response.send_message(
            f"Removed the rule for **{escape_markdown(key)}**.", ephemeral=True
        )
