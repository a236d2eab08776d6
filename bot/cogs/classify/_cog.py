"""/classify and the "Classify image" message context menu (``ClassifyCog``)."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.classify._answers import answer_embeds, low_confidence_of
from bot.cogs.feedback import open_answers
from bot.core.admission import Turn
from bot.core.answering import Answering
from bot.core.classifying import ImageAnswer, admitted, classify_attachments, precheck
from bot.core.client import ClassifierBot
from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.download import looks_like_image
from bot.core.errors import NoImages, UserError
from bot.core.installs import EVERYWHERE_CONTEXTS, EVERYWHERE_INSTALLS
from bot.core.tenancy import in_server, model_of, scope_of, server_of, tenant_of

log = logging.getLogger(__name__)


async def feedback_for(
    bot: ClassifierBot,
    interaction: discord.Interaction,
    answers: list[ImageAnswer],
    author_id: int,
) -> dict[str, discord.ui.View]:
    """``{"view": ...}`` with the answers' feedback buttons, in a server that installed
    the bot; ``{}`` elsewhere (DMs and user installs use the default model: nothing to
    teach). ``author_id``: who posted the images (their ``/forget mine`` reaches them)."""
    if not in_server(interaction) or interaction.channel_id is None:
        return {}
    view = await open_answers(
        bot,
        interaction.guild_id,
        interaction.channel_id,
        interaction.user.id,
        answers,
        author_id=author_id,
    )
    return {"view": view} if view is not None else {}


def none_classified_message(answers: list[ImageAnswer]) -> str:
    """Why no image could be classified, condensed to fit one message."""
    reasons = "\n".join(f"- {clip(a.attachment.filename, 60)}: {a.error}" for a in answers)
    return clip(f"None of the images could be classified:\n{reasons}", CONTENT_MAX)


def select_images(
    attachments: list[discord.Attachment], cap: int
) -> tuple[list[discord.Attachment], str | None]:
    """The image attachments to classify (at most ``cap``) and a note about the rest."""
    if not attachments:
        raise NoImages("That message has no attachments.")
    images = [a for a in attachments if looks_like_image(a)]
    if not images:
        raise NoImages("That message has no image attachments.")
    note = None
    if len(images) > cap:
        note = f"Only the first {cap} of {len(images)} images were classified."
    return images[:cap], note


class ClassifyCog(commands.Cog):
    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Classify image",
            callback=self.classify_message,
            allowed_installs=EVERYWHERE_INSTALLS,  # usable through a user install too
            allowed_contexts=EVERYWHERE_CONTEXTS,
        )
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @app_commands.command(name="classify", description="Classify an image")
    @app_commands.allowed_installs(guilds=True, users=True)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    @app_commands.describe(
        image="The image to classify (JPEG, PNG, GIF, WebP...)",
        top_k="How many labels to show (1-10)",
    )
    async def classify(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        top_k: app_commands.Range[int, 1, 10] | None = None,
    ) -> None:
        bot = self.bot
        precheck(bot, image)  # the metadata first: a refused image is never queued
        scope = scope_of(bot, interaction)
        async with Answering(interaction) as answering:
            async with self._door(interaction, answering, "classify", 1) as turn:
                [answer] = await classify_attachments(
                    bot,
                    turn,
                    [image],
                    top_k or bot.settings.top_k,
                    model=await model_of(scope),
                    tenant=tenant_of(interaction),
                )
            if answer.error is not None:
                raise UserError(answer.error)
            view = await feedback_for(bot, interaction, [answer], interaction.user.id)
            low = await low_confidence_of(bot, scope)
            await answering.send(embeds=answer_embeds(bot, [answer], low_confidence=low), **view)
            interaction.extras["answered"] = True

    async def classify_message(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        bot = self.bot
        images, note = select_images(message.attachments, bot.settings.max_images_per_message)
        scope = scope_of(bot, interaction)
        async with Answering(interaction) as answering:
            async with self._door(interaction, answering, "menu", len(images)) as turn:
                answers = await classify_attachments(
                    bot,
                    turn,
                    images,
                    bot.settings.top_k,
                    model=await model_of(scope),
                    tenant=tenant_of(interaction),
                )
            if all(a.prediction is None for a in answers):
                if len(answers) == 1:
                    raise UserError(answers[0].error or "That image could not be classified.")
                raise UserError(none_classified_message(answers))
            view = await feedback_for(bot, interaction, answers, message.author.id)
            low = await low_confidence_of(bot, scope)
            await answering.send(
                content=note, embeds=answer_embeds(bot, answers, low_confidence=low), **view
            )
            interaction.extras["answered"] = True

    def _door(
        self, interaction: discord.Interaction, answering: Answering, path: str, images: int
    ) -> AbstractAsyncContextManager[Turn]:
        """The member's turn at the door; a wait expected past a second shows
        "thinking..." at once (Discord wants a first response within 3 s)."""

        async def queued(turn: Turn) -> None:
            answering.expect(turn.expected_wait_s)

        return admitted(
            self.bot,
            server_id=server_of(interaction),
            member_id=interaction.user.id,
            path=path,
            images=images,
            on_queued=queued,
        )
