"""/review's pages and decisions: the oldest waiting correction with its image, the
model's answer and the proposed label; Approve teaches it through the teaching path (as
taught by the member who sent it, posted by the image's author), Reject drops it, Relabel
approves it under another label (the label picker, ``bot.cogs.teach``, on the target
``r<item id>``). Each decision shows the next item in the same message.

A reviewer sees and decides only the corrections of images answered in channels they can
view (``bot.core.channel_access``); those of a channel that is gone, or not recorded
(items from before revision 0004), only admins. Admins also get "Reject all from this
member" (after a confirmation: every waiting correction the member sent, gone at once).

The buttons are persistent dynamic items: ``rv:a|x|l:<item>`` (Approve, Reject, Relabel),
``rv:u:<item>`` (Reject all from this member: asks), ``rv:c:<item>`` (Cancel: back to the
queue) and ``rv:m:<member id>`` (the confirmation). The decisions themselves
(``_decisions.py``: :func:`approve_review`, :func:`reject_review`,
:func:`reject_member_reviews`) need no Discord interaction: the dashboard's review grid
calls them too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.cogs.feedback._decisions import (
    ReviewDecision,
    approve_review,
    reject_member_reviews,
    reject_review,
    visible_item,
)
from bot.cogs.feedback._votes import read_kept
from bot.cogs.teach import label_picker, picker_text, server_labels
from bot.core.channel_access import ChannelViewer
from bot.core.components import run_component_action
from bot.core.custom_ids import DIGITS, row_id, snowflake
from bot.core.discord_limits import CONTENT_MAX, clip
from bot.core.embeds import BLUE, percent
from bot.core.errors import NotAdmin
from bot.core.permissions import is_admin, require_trainer
from bot.core.tenancy import server_scope
from bot.db import ReviewItem, ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

REVIEW_LABELS = {
    "a": "Approve",
    "x": "Reject",
    "l": "Relabel",
    "u": "Reject all from this member",
    "c": "Cancel",
}
REVIEW_STYLES = {
    "a": discord.ButtonStyle.success,
    "x": discord.ButtonStyle.danger,
    "l": discord.ButtonStyle.secondary,
    "u": discord.ButtonStyle.danger,
    "c": discord.ButtonStyle.secondary,
}


class ReviewButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"rv:(?P<verb>[axluc]):(?P<item>" + DIGITS + ")",
):
    def __init__(self, verb: str, item_id: int | None) -> None:
        """``item_id`` ``None``: a custom id whose id names no item (forged)."""
        super().__init__(
            discord.ui.Button(
                label=REVIEW_LABELS[verb],
                style=REVIEW_STYLES[verb],
                custom_id=f"rv:{verb}:{item_id or 0}",
            )
        )
        self.verb, self.item_id = verb, item_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ReviewButton:
        return cls(match["verb"], row_id(match["item"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_component_action(
            interaction, "review", review, verb=self.verb, item_id=self.item_id
        )


class RejectMemberButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"rv:m:(?P<member>" + DIGITS + ")",
):
    """The confirmation of "Reject all from this member" (``member``: whose)."""

    def __init__(self, member_id: int | None) -> None:
        super().__init__(
            discord.ui.Button(
                label="Reject all from this member",
                style=discord.ButtonStyle.danger,
                custom_id=f"rv:m:{member_id or 0}",
            )
        )
        self.member_id = member_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> RejectMemberButton:
        return cls(snowflake(match["member"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await run_component_action(
            interaction, "reject_member", reject_member, member_id=self.member_id
        )


def review_view(item_id: int, admin: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for verb in ("a", "x", "l", *(("u",) if admin else ())):
        view.add_item(ReviewButton(verb, item_id))
    return view


# --- /review ------------------------------------------------------------------------------
async def review_page(
    scope: ScopedData, interaction: discord.Interaction, note: str = ""
) -> tuple[str, discord.Embed | None, discord.File | None, discord.ui.View | None]:
    """The oldest waiting correction the reviewer may see, ready to show (or that there
    is none)."""
    channels = ChannelViewer.of_interaction(interaction).visible_channel_ids()
    while True:
        item, waiting = await scope.review_queue(channels=channels)
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
        review_view(item.item_id, is_admin(interaction)),
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
    content, embed, file, view = await review_page(scope, interaction, note)
    await interaction.edit_original_response(
        content=content or None,
        embeds=[embed] if embed else [],
        attachments=[file] if file else [],
        view=view,
    )


async def review(
    bot: ClassifierBot, interaction: discord.Interaction, verb: str, item_id: int | None
) -> None:
    await require_trainer(bot, interaction)
    scope = server_scope(bot, interaction)
    if verb == "c":
        await interaction.response.defer()
        await show_review(interaction, scope, "Nothing was rejected.")
        return
    viewer = ChannelViewer.of_interaction(interaction)
    item = await visible_item(scope, item_id, viewer)
    if isinstance(item, ReviewDecision):
        await interaction.response.defer()
        await show_review(interaction, scope, item.note)
        return
    if verb == "u":
        await ask_reject_member(interaction, item)
        return
    if verb == "l":
        labels = await server_labels(bot, scope)
        what = (
            f"Relabel: the model said **{item.model_label}**, the member proposed "
            f"**{item.proposed_label}**."
        )
        await interaction.response.edit_message(
            content=picker_text(what, labels, 0),
            view=label_picker(f"r{item.item_id}", labels, 0),
        )
        return
    if verb == "x":
        await interaction.response.defer()
        decision = await reject_review(scope, item.item_id, viewer=viewer)
        await show_review(interaction, scope, decision.note)
        return
    await decide(bot, interaction, item.item_id, item.proposed_label)


async def ask_reject_member(interaction: discord.Interaction, item: ReviewItem) -> None:
    """ "Reject all from this member" asks the admin first (the item stays shown)."""
    if not is_admin(interaction):
        raise NotAdmin("administrator only")
    view = discord.ui.View(timeout=None)
    view.add_item(RejectMemberButton(item.user_id))
    view.add_item(ReviewButton("c", item.item_id))
    text = (
        f"Reject every waiting correction sent by <@{item.user_id}> ({item.user_name})? "
        "They leave the queue and none of them is taught."
    )
    await interaction.response.edit_message(content=clip(text, CONTENT_MAX), view=view)


async def reject_member(
    bot: ClassifierBot, interaction: discord.Interaction, member_id: int | None
) -> None:
    """The confirmed "Reject all from this member" (admins only)."""
    if not is_admin(interaction):
        raise NotAdmin("administrator only")
    scope = server_scope(bot, interaction)
    await interaction.response.defer()
    rejected = await reject_member_reviews(scope, member_id)
    who = f"<@{member_id}>" if member_id is not None else "that member"
    await show_review(interaction, scope, f"Rejected {rejected} waiting correction(s) from {who}.")


async def decide(
    bot: ClassifierBot, interaction: discord.Interaction, item_id: int | None, label: str
) -> None:
    """Approve a review item as ``label`` from /review (a button or the label picker)."""
    await require_trainer(bot, interaction)
    scope = server_scope(bot, interaction)
    await interaction.response.defer()
    decision = await approve_review(
        bot,
        scope,
        item_id,
        label,
        reviewer_id=interaction.user.id,
        viewer=ChannelViewer.of_interaction(interaction),
    )
    await show_review(interaction, scope, decision.note)


async def decide_picked(
    bot: ClassifierBot, interaction: discord.Interaction, item_id: str, label: str
) -> None:
    """The label picker's answer for an ``r<item id>`` target (after Relabel)."""
    await decide(bot, interaction, row_id(item_id), label)
