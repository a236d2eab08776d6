"""Images posted in watched channels (a reply, or what the server's rules say), and
/autoclassify on|off (``AutoClassifyCog``)."""

from __future__ import annotations

import logging
import time
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.auto_replies._order import Place, ReplyOrder
from bot.cogs.classify import answer_embeds, low_confidence_of
from bot.cogs.feedback import open_answers
from bot.cogs.rules import ProblemReports, carry_out, plan_message, send_reply
from bot.core.classifying import admitted, classify_attachments
from bot.core.client import ClassifierBot
from bot.core.download import looks_like_image
from bot.core.errors import Busy, OnCooldown, ShuttingDown, UserError, explain
from bot.core.permissions import admin_only
from bot.core.tenancy import model_of
from golem_backend import BackendError, ImageError

log = logging.getLogger(__name__)


class AutoClassifyCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot
        self.warnings = Warnings(bot.settings.cooldown_window_s)
        self.rule_problems = ProblemReports()
        self.order = ReplyOrder()  # each channel's replies in the posting order

    @app_commands.command(
        name="autoclassify", description="Reply automatically to images posted in this channel"
    )
    @app_commands.describe(mode="on: reply to every image posted here; off: stop")
    @app_commands.guild_only()
    @app_commands.default_permissions(administrator=True)
    @admin_only()
    async def autoclassify(
        self, interaction: discord.Interaction, mode: Literal["on", "off"]
    ) -> None:
        bot = self.bot
        channel = interaction.channel
        assert channel is not None
        on = mode == "on"
        if not on and channel.id in bot.settings.autoclassify_channel_ids:
            raise UserError(
                "This channel is watched by configuration (AUTOCLASSIFY_CHANNEL_IDS); "
                "remove it there to stop auto-replies."
            )
        assert interaction.guild_id is not None  # guild_only
        changed = await bot.store.guild(interaction.guild_id).set_watched(channel.id, on)
        if on:
            text = (
                "I'll reply to images posted in this channel."
                if changed
                else ("I'm already watching this channel.")
            )
            if not bot.settings.message_content_intent:
                text += (
                    "\n⚠️ The message content intent is off (MESSAGE_CONTENT_INTENT=false), so "
                    "Discord doesn't show me attachments: auto-replies won't work until it's on."
                )
            elif not interaction.app_permissions.send_messages:
                text += "\n⚠️ I don't have permission to send messages here."
        else:
            text = (
                "I stopped watching this channel."
                if changed
                else ("I wasn't watching this channel.")
            )
        log.info("autoclassify %s in channel %s by %s", mode, channel.id, interaction.user.id)
        await interaction.response.send_message(text, ephemeral=True)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        bot = self.bot
        if message.author.bot or message.guild is None or bot.admission.closing:
            return
        images = [a for a in message.attachments if looks_like_image(a)]
        if not images:
            return
        place = self.order.join(message.channel.id)  # before any await: the posting order
        try:
            await self._answer(message, message.guild, images, place)
        finally:
            place.leave()

    async def _answer(
        self,
        message: discord.Message,
        guild: discord.Guild,
        images: list[discord.Attachment],
        place: Place,
    ) -> None:
        """Classify a watched channel's message through the door and carry out the plan
        (a reply, or what the server's rules say), after the messages posted before it."""
        bot = self.bot
        scope = bot.store.guild(guild.id)
        configured = message.channel.id in bot.settings.autoclassify_channel_ids
        if not configured and not await scope.is_watched(message.channel.id):
            return
        cap = bot.settings.max_images_per_message
        note = None
        if len(images) > cap:
            note = f"Only the first {cap} of {len(images)} images were classified."
        images = images[:cap]
        try:
            async with admitted(
                bot,
                server_id=guild.id,
                member_id=message.author.id,
                path="auto_reply",
                images=len(images),
            ) as turn:
                answers = await classify_attachments(
                    bot,
                    turn,
                    images,
                    bot.settings.top_k,
                    model=await model_of(scope),
                    tenant=scope.tenant,
                )
            rules = {rule.label: rule for rule in await scope.rules()}
            plan = plan_message(rules, [a.prediction for a in answers])
            shown = [answers[i] for i in plan.reply]
            low = await low_confidence_of(bot, scope)
            embeds = answer_embeds(bot, shown, low_confidence=low) if shown else []
            view = (
                await open_answers(
                    bot,
                    guild.id,
                    message.channel.id,
                    message.author.id,
                    shown,
                    author_id=message.author.id,
                )
                if shown
                else None
            )
            await place.turn()
            await carry_out(
                bot,
                message,
                answers,
                plan,
                reply_embeds=embeds,
                note=note,
                view=view,
                reports=self.rule_problems,
            )
        except (OnCooldown, Busy) as exc:  # refused at the door: at once, rate-limited
            if self.warnings.should_warn(message.author.id):
                await self._reply_quietly(message, exc.message)
        except ShuttingDown as exc:
            await self._reply_quietly(message, exc.message)
        except (UserError, BackendError, ImageError) as exc:
            await place.turn()
            await self._reply_quietly(message, explain(exc) or str(exc))
        except discord.Forbidden:
            log.warning("no permission to reply in channel %s", message.channel.id)
        except discord.HTTPException as exc:
            log.warning("could not reply in channel %s: %s", message.channel.id, exc)

    @commands.Cog.listener()
    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self._claim_legacy_channels(guild)

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        await self._claim_legacy_channels(guild)

    async def _claim_legacy_channels(self, guild: discord.Guild) -> None:
        """Channels watched in the old JSON state join their server's scope."""
        moved = await self.bot.store.guild(guild.id).claim_legacy_channels(
            c.id for c in guild.channels
        )
        if moved:
            log.info("server %s: %d watched channel(s) from the old state file", guild.id, moved)

    async def _reply_quietly(self, message: discord.Message, text: str) -> None:
        try:
            await send_reply(message, content=text)
        except Exception as exc:  # refused, unanswered, or answered in a shape unread
            log.warning("could not reply in channel %s: %s", message.channel.id, exc)


class Warnings:
    """Warn each user at most once per ``window_s`` that they are too fast (or the bot
    is busy), so that a burst of images does not get a burst of public replies."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: dict[int, float] = {}

    def should_warn(self, user_id: int) -> bool:
        now = time.monotonic()
        self._last = {u: t for u, t in self._last.items() if now - t < self.window_s}
        if user_id in self._last:
            return False
        self._last[user_id] = now
        return True
