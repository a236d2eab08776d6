"""Teaching where the images are: ``/teach images`` with up to 10 images (the label
autocompletes from the server's labels), ``/teach zip`` (a zip with a folder per label),
``/teach from-channel`` (a channel's history) and the "Teach as..." message menu. All for
admins and members with the server's trainer role; all go through ``teach_images`` (the
bulk ones in batches, ``_bulk.py``). The label picker's "Something else..." modal is
answered here too, from its custom id."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.teach._from_channel import DEFAULT_LIMIT, teach_from_channel
from bot.cogs.teach._label_picker import (
    NEW_LABEL_MODAL,
    choose_label,
    label_picker,
    modal_value,
    picker_text,
)
from bot.cogs.teach._labels import normalize_label, server_labels
from bot.cogs.teach._teach_as import message_target
from bot.cogs.teach._teach_images import (
    MAX_TEACH_IMAGES,
    attachment_sources,
    single_report,
    teach_images,
    teach_report,
)
from bot.cogs.teach._zip import teach_zip_attachment
from bot.core.channel_option import TextChannelOption
from bot.core.classifying import precheck
from bot.core.client import ClassifierBot
from bot.core.components import run_component_action
from bot.core.download import looks_like_image
from bot.core.errors import NoImages, UserError
from bot.core.permissions import OPERATORS_ONLY, is_operator, require_trainer
from bot.core.tenancy import in_server, labels_of, scope_of
from bot.db import ScopedData

log = logging.getLogger(__name__)

Image = discord.Attachment | None


class TeachCog(commands.Cog):
    group = app_commands.Group(
        name="teach",
        description="Add labelled examples for the next retrain (admins, trainers)",
        default_permissions=discord.Permissions(administrator=True),
    )

    def __init__(self, bot: ClassifierBot) -> None:
        self.bot = bot
        self.menu = app_commands.ContextMenu(
            name="Teach as...",
            callback=self.teach_as,
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
            allowed_contexts=app_commands.AppCommandContext(guild=True),
        )
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    async def _scope(self, interaction: discord.Interaction) -> ScopedData:
        """The server's scope for admins and trainers; in DMs the default scope, for the
        bot's operators only."""
        if not in_server(interaction):
            if not is_operator(interaction):
                raise UserError(OPERATORS_ONLY)
            return self.bot.store.default_scope()
        await require_trainer(self.bot, interaction)
        return scope_of(self.bot, interaction)

    @group.command(name="images", description="Teach up to 10 images as one label")
    @app_commands.describe(
        label="The label (lowercase letters, digits, _ or -)",
        image="An image of that label",
        image2="Another image",
        image3="Another image",
        image4="Another image",
        image5="Another image",
        image6="Another image",
        image7="Another image",
        image8="Another image",
        image9="Another image",
        image10="Another image",
    )
    async def teach(
        self,
        interaction: discord.Interaction,
        label: app_commands.Range[str, 1, 32],
        image: discord.Attachment,
        image2: Image = None,
        image3: Image = None,
        image4: Image = None,
        image5: Image = None,
        image6: Image = None,
        image7: Image = None,
        image8: Image = None,
        image9: Image = None,
        image10: Image = None,
    ) -> None:
        bot = self.bot
        scope = await self._scope(interaction)
        extra = (image2, image3, image4, image5, image6, image7, image8, image9, image10)
        attachments = [image, *(a for a in extra if a is not None)]
        label = normalize_label(label)
        if len(attachments) == 1:
            precheck(bot, image)  # one image: its problem is the answer, before deferring
        await interaction.response.defer(ephemeral=True, thinking=True)
        user = interaction.user
        results = await teach_images(
            bot,
            scope,
            label,
            attachment_sources(attachments),
            path="teach",
            member_id=user.id,
            user_id=user.id,
            user_name=str(user),
        )
        if len(results) == 1:
            known = label in (await labels_of(bot, scope))[0]
            text = single_report(label, results[0], image.filename, known)
        else:
            text = await teach_report(bot, scope, label, results)
        await interaction.followup.send(text, ephemeral=True)

    @group.command(name="zip", description="Teach a zip of images, a folder per label")
    @app_commands.describe(archive="A .zip laid out as <label>/<image>, e.g. daisy/1.jpg")
    async def teach_zip(
        self, interaction: discord.Interaction, archive: discord.Attachment
    ) -> None:
        scope = await self._scope(interaction)
        await teach_zip_attachment(self.bot, interaction, scope, archive)

    @group.command(name="from-channel", description="Teach the images posted in a channel")
    @app_commands.describe(
        channel="A text channel you and I can read",
        label="The label of its images",
        limit=f"At most this many images, newest first ({DEFAULT_LIMIT} by default)",
    )
    async def from_channel(
        self,
        interaction: discord.Interaction,
        channel: app_commands.Transform[app_commands.AppCommandChannel, TextChannelOption],
        label: app_commands.Range[str, 1, 32],
        limit: app_commands.Range[int, 1, 100_000] | None = None,
    ) -> None:
        if not in_server(interaction):
            raise UserError("This command only works in a server where the bot is installed.")
        scope = await self._scope(interaction)
        label = normalize_label(label)
        most = self.bot.settings.teach_channel_max_images
        wanted = min(DEFAULT_LIMIT, most) if limit is None else limit
        if wanted > most:
            raise UserError(f"`limit` is at most {most} images.")
        await teach_from_channel(self.bot, interaction, scope, channel, label, wanted)

    @teach.autocomplete("label")
    @from_channel.autocomplete("label")
    async def label_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """The server's labels containing what was typed (prefix matches first), 25 at most."""
        try:
            labels = await server_labels(self.bot, scope_of(self.bot, interaction))
        except Exception:
            log.exception("label autocomplete failed")
            return []
        typed = current.strip().lower().replace(" ", "_")
        found = sorted(
            (lb for lb in labels if typed in lb), key=lambda lb: (not lb.startswith(typed), lb)
        )
        return [app_commands.Choice(name=lb, value=lb) for lb in found[:25]]

    async def teach_as(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Pick a label for every image of ``message`` (fetched again once it is picked)."""
        if not in_server(interaction):
            raise UserError("This command only works in a server where the bot is installed.")
        await require_trainer(self.bot, interaction)
        images = [a for a in message.attachments if looks_like_image(a)]
        if not images:
            raise NoImages("That message has no image attachments.")
        labels = await server_labels(self.bot, scope_of(self.bot, interaction))
        n = min(len(images), MAX_TEACH_IMAGES)
        more = f" (the first {n} of {len(images)})" if len(images) > n else ""
        what = f"Teach the {n} image(s) of this message{more} as a label."
        target = message_target(message)
        await interaction.response.send_message(
            picker_text(what, labels, 0), view=label_picker(target, labels, 0), ephemeral=True
        )

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """The label picker's "Something else..." modal, whenever it was opened."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if not custom_id.startswith("ml:"):
            return  # not the label picker's
        match = NEW_LABEL_MODAL.fullmatch(custom_id)
        if match is None:  # a forged custom id: answered, never left hanging
            await run_component_action(interaction, "modal", refuse_form)
            return
        await run_component_action(
            interaction,
            "modal",
            choose_label,
            target=match["target"],
            raw=modal_value(dict(data)),
        )


async def refuse_form(bot: ClassifierBot, interaction: discord.Interaction) -> None:
    raise UserError("This form is not in use any more.")
