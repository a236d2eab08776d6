"""/review's pages and decisions: the oldest waiting correction with its image, the
model's answer and the proposed label; Approve teaches it through the teaching path (as
taught by the member who sent it), Reject drops it, Relabel approves it under another
label. Each decision shows the next item in the same message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from bot.db import ReviewItem, ScopedData
from bot.discord_limits import CONTENT_MAX, clip
from bot.embeds import BLUE, percent
from bot.feedback_flow import read_kept, scope_for, server_labels
from bot.feedback_ui import label_picker, picker_text, review_view
from bot.teach_images import teach_images
from bot.trainers import require_trainer

if TYPE_CHECKING:
    from bot.client import ClassifierBot


# --- /review ------------------------------------------------------------------------------
async def review_page(
    scope: ScopedData, note: str = ""
) -> tuple[str, discord.Embed | None, discord.File | None, discord.ui.View | None]:
    """The oldest waiting correction, ready to show (or that the queue is empty)."""
    while True:
        item, waiting = await scope.review_queue()
        if item is None:
            return (
                clip(f"{note}\nThe review queue is empty.".strip(), CONTENT_MAX),
                None,
                None,
                None,
            )
        data = await read_kept(item.image)
        if data is not None:
            break
        await scope.drop_review_item(item.item_id)  # its image vanished: nothing to review
    name = f"review{item.image.suffix}"
    embed = review_embed(item, waiting, name)
    return (
        clip(note, CONTENT_MAX),
        embed,
        discord.File(item.image, filename=name),
        review_view(item.item_id),
    )


def review_embed(item: ReviewItem, waiting: int, file_name: str) -> discord.Embed:
    embed = discord.Embed(title=f"Correction 1 of {waiting}", colour=BLUE)
    embed.add_field(
        name="The model said", value=f"{item.model_label} ({percent(item.model_confidence)})"
    )
    embed.add_field(name="Proposed label", value=item.proposed_label)
    embed.add_field(name="Sent by", value=f"<@{item.user_id}> ({item.user_name})"[:1024])
    embed.set_image(url=f"attachment://{file_name}")
    return embed


async def show_review(interaction: discord.Interaction, scope: ScopedData, note: str) -> None:
    """Replace the /review message with the next item (after a deferred update)."""
    content, embed, file, view = await review_page(scope, note)
    await interaction.edit_original_response(
        content=content or None,
        embeds=[embed] if embed else [],
        attachments=[file] if file else [],
        view=view,
    )


async def review(
    bot: ClassifierBot, interaction: discord.Interaction, verb: str, item_id: int
) -> None:
    await require_trainer(bot, interaction)
    scope = scope_for(bot, interaction)
    item = await scope.review_item(item_id)
    if item is None:
        await interaction.response.defer()
        await show_review(interaction, scope, "That correction was already handled.")
        return
    if verb == "l":
        labels = await server_labels(bot, scope)
        what = (
            f"Relabel: the model said **{item.model_label}**, the member proposed "
            f"**{item.proposed_label}**."
        )
        await interaction.response.edit_message(
            content=picker_text(what, labels, 0),
            view=label_picker(f"r{item_id}", labels, 0),
        )
        return
    if verb == "x":
        await interaction.response.defer()
        await scope.drop_review_item(item_id)
        await show_review(interaction, scope, f"Rejected **{item.proposed_label}**.")
        return
    await decide(bot, interaction, item_id, item.proposed_label)


async def decide(
    bot: ClassifierBot, interaction: discord.Interaction, item_id: int, label: str
) -> None:
    """Approve a review item as ``label``: taught through the teaching path, as taught
    by the member who proposed it."""
    await require_trainer(bot, interaction)
    scope = scope_for(bot, interaction)
    await interaction.response.defer()
    item = await scope.review_item(item_id)
    if item is None:
        await show_review(interaction, scope, "That correction was already handled.")
        return
    data = await read_kept(item.image)
    if data is None:
        await scope.drop_review_item(item_id)
        await show_review(interaction, scope, "That correction's image is gone; dropped it.")
        return
    [result] = await teach_images(
        bot, scope, label, [("image", data)], user_id=item.user_id, user_name=item.user_name
    )
    if result.learned or result.duplicate:
        await scope.drop_review_item(item_id)
        note = f"Approved: the image is {result.line}."
    else:
        note = f"Not taught (it stays in the queue): {result.line}"
    await show_review(interaction, scope, note)
