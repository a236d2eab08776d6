"""A server's review queue: members' corrections waiting for an admin or trainer, each
with its kept image (in the server's ``feedback/`` folder, counted toward the taught-bytes
quota), the answer's channel and the image's author.

A member has at most ``Quotas.review_per_member`` corrections waiting and one per answer
(:class:`ReviewLimit`); the queue at most ``Quotas.review_items``. A reviewer is shown the
items of the channels they can view (``channels``). Deciding an item (approve, reject,
reject all of a member) removes it through ``bot.db.feedback_data``, which builds on this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.quotas import QuotaExceeded, ReviewLimit, size_text
from bot.db.records import AnswerRecord, ReviewItem
from bot.db.schema import ReviewItemRow, utcnow
from bot.db.scope_base import ScopeBase, is_row_id


class ScopeReviews(ScopeBase):
    def _item(self, row: ReviewItemRow) -> ReviewItem:
        return ReviewItem(
            row.id,
            row.answer_id,
            row.sha256,
            self.feedback_dir / row.file_name,
            row.model_label,
            row.model_confidence,
            row.proposed_label,
            row.user_id,
            row.user_name,
            row.created_at,
            row.author_id,
            row.channel_id,
        )

    async def enqueue_review(
        self, answer: AnswerRecord, label: str, *, user_id: int, user_name: str
    ) -> tuple[bool, int]:
        """Queue a member's correction of ``answer`` (whose image must still be kept):
        (whether it is new, items waiting). The item remembers the answer's channel and
        the image's author. :class:`ReviewLimit` if the member already has a correction
        of this answer waiting, or ``Quotas.review_per_member`` of them;
        :class:`QuotaExceeded` past the queue's size or the server's taught-bytes quota."""
        assert answer.image is not None
        quotas = self._store.quotas
        async with self._store.lock(self.scope_id), self._write() as s:
            mine = ReviewItemRow.guild_id == self.scope_id
            same = await s.scalar(
                select(ReviewItemRow.id).where(
                    mine,
                    ReviewItemRow.sha256 == answer.sha256,
                    ReviewItemRow.proposed_label == label,
                )
            )
            waiting = int(
                await s.scalar(select(func.count()).select_from(ReviewItemRow).where(mine)) or 0
            )
            if same is not None:
                return False, waiting
            await self._check_member_limits(s, answer.answer_id, user_id)
            if waiting >= quotas.review_items:
                raise QuotaExceeded(
                    f"This server's review queue is full ({waiting} corrections wait). An "
                    "admin or trainer can work through it with /review."
                )
            size = await asyncio.to_thread(lambda: answer.image.stat().st_size)  # type: ignore[union-attr]
            used = await self._bytes_used(s)
            if used + size > quotas.max_bytes:
                raise QuotaExceeded(
                    f"This server's taught images and review queue use {size_text(used)} of "
                    f"{size_text(quotas.max_bytes)}: there is no room to keep this image. An "
                    "admin can free space with /review, `/forget label:` or `/forget mine`."
                )
            s.add(
                ReviewItemRow(
                    guild_id=self.scope_id,
                    answer_id=answer.answer_id,
                    sha256=answer.sha256,
                    file_name=answer.image.name,
                    size_bytes=size,
                    model_label=answer.label[:100],
                    model_confidence=answer.confidence,
                    proposed_label=label,
                    user_id=user_id,
                    user_name=user_name[:100],
                    created_at=utcnow(),
                    author_id=answer.author_id,
                    channel_id=answer.channel_id,
                )
            )
            return True, waiting + 1

    async def _check_member_limits(self, s: AsyncSession, answer_id: int, user_id: int) -> None:
        """One waiting correction per answer and member, ``review_per_member`` in all."""
        theirs = (ReviewItemRow.guild_id == self.scope_id) & (ReviewItemRow.user_id == user_id)
        earlier = await s.scalar(
            select(ReviewItemRow.proposed_label).where(theirs, ReviewItemRow.answer_id == answer_id)
        )
        if earlier is not None:
            raise ReviewLimit(
                f"Your correction of this image (to {earlier!r}) is already waiting for "
                "review: one correction per image and member."
            )
        limit = self._store.quotas.review_per_member
        waiting = select(func.count()).select_from(ReviewItemRow).where(theirs)
        mine = int(await s.scalar(waiting) or 0)
        if mine >= limit:
            raise ReviewLimit(
                f"You have {mine} corrections waiting for review, the limit is {limit} per "
                "member. Please wait until an admin or trainer has looked at them."
            )

    async def _bytes_used(self, s: AsyncSession) -> int:
        taught = (await self._usage(s)).bytes  # type: ignore[attr-defined]
        queued = await s.scalar(
            select(func.coalesce(func.sum(ReviewItemRow.size_bytes), 0)).where(
                ReviewItemRow.guild_id == self.scope_id
            )
        )
        return int(taught) + int(queued or 0)

    async def review_queue(
        self, channels: Collection[int] | None = None
    ) -> tuple[ReviewItem | None, int]:
        """The oldest waiting correction and how many wait. With ``channels``, only the
        items answered in those channels (the ones a reviewer can view; items from before
        revision 0004 have no channel and are then left out). Items whose image the
        start-up check found missing are never shown."""
        async with self._session() as s:
            mine = (ReviewItemRow.guild_id == self.scope_id) & ReviewItemRow.missing_since.is_(None)
            if channels is not None:
                mine = mine & ReviewItemRow.channel_id.in_(list(channels))
            row = await s.scalar(
                select(ReviewItemRow)
                .where(mine)
                .order_by(ReviewItemRow.created_at, ReviewItemRow.id)
                .limit(1)
            )
            count = await s.scalar(select(func.count()).select_from(ReviewItemRow).where(mine))
            return (self._item(row) if row else None), int(count or 0)

    async def review_items(
        self, limit: int, offset: int = 0, channels: Collection[int] | None = None
    ) -> list[ReviewItem]:
        """A page of waiting corrections, oldest first: the items :meth:`review_queue`
        counts (with ``channels``, only those answered in them; never one whose image is
        missing)."""
        async with self._session() as s:
            mine = (ReviewItemRow.guild_id == self.scope_id) & ReviewItemRow.missing_since.is_(None)
            if channels is not None:
                mine = mine & ReviewItemRow.channel_id.in_(list(channels))
            rows = await s.scalars(
                select(ReviewItemRow)
                .where(mine)
                .order_by(ReviewItemRow.created_at, ReviewItemRow.id)
                .limit(limit)
                .offset(offset)
            )
            return [self._item(r) for r in rows]

    async def review_item(self, item_id: int) -> ReviewItem | None:
        """This server's waiting item ``item_id``; ``None`` if it is not (or its image is
        missing: it waits until the file is back)."""
        if not is_row_id(item_id):
            return None
        async with self._session() as s:
            row = await s.scalar(
                select(ReviewItemRow).where(
                    ReviewItemRow.guild_id == self.scope_id,
                    ReviewItemRow.id == item_id,
                    ReviewItemRow.missing_since.is_(None),
                )
            )
            return self._item(row) if row else None
