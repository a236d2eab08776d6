"""/review's pages and decisions: the oldest waiting correction with its image, the
model's answer and the proposed label; Approve teaches it through the teaching path (as
taught by the member who sent it), Reject drops it, Relabel approves it under another
label (the label picker, ``bot.cogs.teach``, on the target ``r<item id>``). Each decision
shows the next item in the same message.

The buttons are persistent dynamic items: ``rv:a|x|l:<item>`` (Approve, Reject, Relabel).
The decisions themselves (:func:`approve_review`, :func:`reject_review`) need no Discord
interaction: the dashboard's review grid calls them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.cogs.feedback._votes import read_kept
from bot.cogs.teach import label_picker, picker_text, server_labels, teach_images
from bot.core.components import run_component_action
from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.embeds import BLUE, percent
from bot.core.permissions import require_trainer
from bot.core.tenancy import server_scope
from bot.db import ReviewItem, ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

REVIEW_LABELS = {"a": "Approve", "x": "Reject", "l": "Relabel"}
REVIEW_STYLES = {
    "a": discord.ButtonStyle.success,
    "x": discord.ButtonStyle.danger,
    "l": discord.ButtonStyle.secondary,
}


class ReviewButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"rv:(?P<verb>[axl]):(?P<item>\d+)"
):
    def __init__(self, verb: str, item_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=REVIEW_LABELS[verb],
                style=REVIEW_STYLES[verb],
                custom_id=f"rv:{verb}:{item_id}",
            )
        )
        self.verb, self.item_id = verb, item_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ReviewButton:
        return cls(match["verb"], int(match["item"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_component_action(
            interaction, "review", review, verb=self.verb, item_id=self.item_id
        )


def review_view(item_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for verb in ("a", "x", "l"):
        view.add_item(ReviewButton(verb, item_id))
    return view


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


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What became of a waiting correction: ``done`` when it left the queue."""

    done: bool
    note: str  # for the reviewer


ALREADY_HANDLED = ReviewDecision(True, "That correction was already handled.")


async def approve_review(
    bot: ClassifierBot, scope: ScopedData, item_id: int, label: str | None = None
) -> ReviewDecision:
    """Approve a waiting correction as ``label`` (its proposed label by default): taught
    through the teaching path, as taught by the member who proposed it. One code path for
    /review's buttons and the dashboard; the caller has checked the reviewer's role."""
    item = await scope.review_item(item_id)
    if item is None:
        return ALREADY_HANDLED
    data = await read_kept(item.image)
    if data is None:
        await scope.drop_review_item(item_id)
        return ReviewDecision(True, "That correction's image is gone; dropped it.")
    label = label or item.proposed_label
    [result] = await teach_images(
        bot, scope, label, [("image", data)], user_id=item.user_id, user_name=item.user_name
    )
    if result.learned or result.duplicate:
        await scope.drop_review_item(item_id)
        return ReviewDecision(True, f"Approved: the image is {result.line}.")
    return ReviewDecision(False, f"Not taught (it stays in the queue): {result.line}")


async def reject_review(scope: ScopedData, item_id: int) -> ReviewDecision:
    """Drop a waiting correction (its kept image goes with it)."""
    item = await scope.review_item(item_id)
    if item is None:
        return ALREADY_HANDLED
    await scope.drop_review_item(item_id)
    return ReviewDecision(True, f"Rejected **{item.proposed_label}**.")


async def review(
    bot: ClassifierBot, interaction: discord.Interaction, verb: str, item_id: int
) -> None:
    await require_trainer(bot, interaction)
    scope = server_scope(bot, interaction)
    item = await scope.review_item(item_id)
    if item is None:
        await interaction.response.defer()
        await show_review(interaction, scope, ALREADY_HANDLED.note)
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
        await show_review(interaction, scope, (await reject_review(scope, item_id)).note)
        return
    await decide(bot, interaction, item_id, item.proposed_label)


async def decide(
    bot: ClassifierBot, interaction: discord.Interaction, item_id: int, label: str
) -> None:
    """Approve a review item as ``label`` from /review (a button or the label picker)."""
    await require_trainer(bot, interaction)
    scope = server_scope(bot, interaction)
    await interaction.response.defer()
    decision = await approve_review(bot, scope, item_id, label)
    await show_review(interaction, scope, decision.note)


async def decide_picked(
    bot: ClassifierBot, interaction: discord.Interaction, item_id: str, label: str
) -> None:
    """The label picker's answer for an ``r<item id>`` target (after Relabel)."""
    await decide(bot, interaction, int(item_id), label)
