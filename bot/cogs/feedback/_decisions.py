"""The decisions on waiting corrections, without a Discord interaction: /review's buttons
and the dashboard's review grid both call these, so both teach, drop and refuse alike.

A reviewer decides only the corrections of images answered in channels they can view
(their :class:`~bot.core.channel_access.ChannelViewer`: from the interaction for a button,
from the logged-in member's roles for the dashboard); another's is refused with
:data:`HIDDEN` and left waiting. Approving teaches the image through the teaching path
(one turn at the door on the path ``review_approval`` for the reviewer), as taught by the
member who proposed it and posted by the image's author (their ``/forget mine`` reaches
it). Rejecting every waiting correction of one member is for administrators; the caller
checks that, as it checks that the reviewer is an administrator or a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.cogs.feedback._votes import read_kept
from bot.cogs.teach import teach_images
from bot.core.channel_access import ChannelViewer
from bot.db import ReviewItem, ScopedData

if TYPE_CHECKING:
    from bot.core.client import ClassifierBot

HANDLED = "That correction was already handled."
HIDDEN = "That correction comes from a channel you can't view, so you can't review it."


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """What became of a waiting correction: ``done`` when it left the queue (or had)."""

    done: bool
    note: str  # for the reviewer


ALREADY_HANDLED = ReviewDecision(True, HANDLED)
NOT_VISIBLE = ReviewDecision(False, HIDDEN)


async def visible_item(
    scope: ScopedData, item_id: int | None, viewer: ChannelViewer
) -> ReviewItem | ReviewDecision:
    """The waiting correction ``item_id`` if the reviewer may see it; else why not
    (``None``: an id that names nothing)."""
    item = await scope.review_item(item_id) if item_id is not None else None
    if item is None:
        return ALREADY_HANDLED
    if not viewer.can_view(item.channel_id):
        return NOT_VISIBLE
    return item


async def approve_review(
    bot: ClassifierBot,
    scope: ScopedData,
    item_id: int | None,
    label: str | None = None,
    *,
    reviewer_id: int,
    viewer: ChannelViewer,
) -> ReviewDecision:
    """Approve a waiting correction as ``label`` (its proposed label by default; a
    normalised label): taught through the teaching path, as taught by the member who
    proposed it and posted by the image's author. A refusal at the door (``Busy``,
    ``ShuttingDown``) is raised and the item keeps waiting."""
    item = await visible_item(scope, item_id, viewer)
    if isinstance(item, ReviewDecision):
        return item
    data = await read_kept(item.image)
    if data is None:
        await scope.drop_review_item(item.item_id)
        return ReviewDecision(True, "That correction's image is gone; dropped it.")
    label = label or item.proposed_label
    [result] = await teach_images(
        bot,
        scope,
        label,
        [("image", data)],
        path="review_approval",
        member_id=reviewer_id,
        user_id=item.user_id,
        user_name=item.user_name,
        author_id=item.author_id,
    )
    if result.learned or result.duplicate:
        await scope.drop_review_item(item.item_id)
        return ReviewDecision(True, f"Approved: the image is {result.line}.")
    return ReviewDecision(False, f"Not taught (it stays in the queue): {result.line}")


async def reject_review(
    scope: ScopedData, item_id: int | None, *, viewer: ChannelViewer
) -> ReviewDecision:
    """Drop a waiting correction (its kept image goes with it)."""
    item = await visible_item(scope, item_id, viewer)
    if isinstance(item, ReviewDecision):
        return item
    await scope.drop_review_item(item.item_id)
    return ReviewDecision(True, f"Rejected **{item.proposed_label}**.")


async def reject_member_reviews(scope: ScopedData, member_id: int | None) -> int:
    """Reject every waiting correction ``member_id`` sent ("Reject all from this member",
    administrators only: the caller checks); how many (``None``: no member, none)."""
    return await scope.reject_reviews_of(member_id) if member_id is not None else 0
