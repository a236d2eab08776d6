"""A server's answers and votes (the feedback loop), scoped like the rest, on top of its
review queue (``bot.db.review_queue``), and forgetting all three.

Images of answers are kept so that a correction can teach them, but not for ever: in the
server's ``feedback/`` folder, content-addressed, only for the newest
``Quotas.feedback_images`` answers of the server and only for ``Quotas.feedback_hours``
(Discord's attachment URLs expire too, so nothing could be fetched later). Older answers
are deleted with their votes; their buttons then say so. A correction waiting in the
review queue names its file, which stays until the item is approved or rejected, and
counts toward the server's taught-bytes quota.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.answer_book import AnswerBook
from bot.db.records import AnswerRecord, Tally
from bot.db.review_queue import ScopeReviews
from bot.db.schema import AnswerRow, PendingRemovalRow, ReviewItemRow, VoteRow, utcnow
from bot.db.scope_base import StoreWriteError, is_row_id

log = logging.getLogger(__name__)


class ScopeFeedback(ScopeReviews):
    # --- answers ------------------------------------------------------------------------
    def _answer(self, row: AnswerRow) -> AnswerRecord:
        kept = row.file_name and row.missing_since is None  # missing: as if not kept
        image = self.feedback_dir / row.file_name if kept else None
        return AnswerRecord(
            row.id,
            row.channel_id,
            row.user_id,
            row.model_id,
            row.label,
            row.confidence,
            row.sha256,
            image,
            row.created_at,
            row.author_id,
        )

    async def record_answer(
        self,
        *,
        channel_id: int,
        user_id: int,
        model_id: str,
        label: str,
        confidence: float,
        data: bytes,
        extension: str | None,
        author_id: int | None = None,
    ) -> int:
        """Record an answered image (kept in ``feedback/`` when ``extension`` is given);
        its id for the feedback buttons. Prunes what is past the limits. ``author_id``:
        who posted the image (``forget_user`` of the author removes the answer too)."""
        digest = hashlib.sha256(data).hexdigest()
        quotas = self._store.quotas
        keep = extension is not None and quotas.feedback_images > 0
        file_name = f"{digest}.{extension}" if keep else None
        async with self._store.lock(self.scope_id):
            books = self._store.answer_books
            book = books.pop(self.scope_id, None)  # back once this answer is committed
            generation = self._store.serving.generation(self.scope_id)
            cutoff = utcnow() - dt.timedelta(hours=quotas.feedback_hours)
            counted = book is not None and not book.prune_due(
                generation, cutoff, quotas.feedback_images
            )
            created = False
            try:
                if file_name is not None and not (self.feedback_dir / file_name).exists():
                    created = True
                    await asyncio.to_thread(files.write_atomic, self.feedback_dir / file_name, data)
                async with self._write(changes_serving=False) as s:  # answers only
                    if not counted:
                        await self._ensure_row(s)
                    row = AnswerRow(
                        guild_id=self.scope_id,
                        channel_id=channel_id,
                        user_id=user_id,
                        model_id=model_id[:80],
                        label=label[:100],
                        confidence=float(confidence),
                        sha256=digest,
                        file_name=file_name,
                        size_bytes=len(data),
                        created_at=utcnow(),
                        author_id=author_id,
                    )
                    s.add(row)
                    await s.flush()
                    answer_id = row.id
                    pending = []
                    if counted and book is not None:  # nothing to prune: no query
                        book.images += file_name is not None
                    else:
                        dropped, images, oldest = await self._prune_rows(s, cutoff)
                        pending = await self._queue_unnamed(s, dropped)
                        book = AnswerBook(generation, images, oldest, time.monotonic())
            except BaseException as exc:
                if created and file_name is not None:
                    files.unlink(self.feedback_dir / file_name)
                if isinstance(exc, OSError):
                    log.error("could not keep an answered image: %s", exc)
                    raise StoreWriteError() from exc
                raise
            books[self.scope_id] = book
            await self._store.removals.carry_out(pending)
        return answer_id

    async def answer(self, answer_id: int) -> AnswerRecord | None:
        """This server's answer ``answer_id`` (``None`` if it is another server's, expired
        or forgotten, or not a row id at all: a forged custom id)."""
        if not is_row_id(answer_id):
            return None
        async with self._session() as s:
            row = await s.scalar(
                select(AnswerRow).where(
                    AnswerRow.guild_id == self.scope_id, AnswerRow.id == answer_id
                )
            )
            return self._answer(row) if row else None

    async def prune_feedback(self) -> None:
        async with self._store.lock(self.scope_id):
            await self._prune()

    async def _prune(self) -> None:
        """Delete answers past ``feedback_hours``; drop the images of all but the newest
        ``feedback_images`` answers; remove files no row names any more."""
        cutoff = utcnow() - dt.timedelta(hours=self._store.quotas.feedback_hours)
        async with self._write() as s:
            dropped, _, _ = await self._prune_rows(s, cutoff)
            pending = await self._queue_unnamed(s, dropped)
        await self._store.removals.carry_out(pending)

    async def _prune_rows(
        self, s: AsyncSession, cutoff: dt.datetime
    ) -> tuple[set[str | None], int, dt.datetime | None]:
        """The pruning's row changes, in the caller's transaction (one commit per answer:
        a second one cost about 10 ms per answer on SQLite): the file names dropped, and
        the answers holding an image and the oldest answer's time after it."""
        limit = self._store.quotas.feedback_images
        mine = AnswerRow.guild_id == self.scope_id
        with_image = mine & AnswerRow.file_name.is_not(None)
        # one query tells whether there is anything to do (most of the time: nothing)
        n_expired, count, oldest = (
            await s.execute(
                select(
                    func.count().filter(AnswerRow.created_at < cutoff),
                    func.count().filter(AnswerRow.file_name.is_not(None)),
                    func.min(AnswerRow.created_at),
                ).where(mine)
            )
        ).one()
        dropped: set[str | None] = set()
        if n_expired:
            expired = list(
                await s.scalars(select(AnswerRow.id).where(mine, AnswerRow.created_at < cutoff))
            )
            dropped |= set(
                await s.scalars(select(AnswerRow.file_name).where(mine, AnswerRow.id.in_(expired)))
            )
            await s.execute(delete(VoteRow).where(VoteRow.answer_id.in_(expired)))
            await s.execute(delete(AnswerRow).where(AnswerRow.id.in_(expired)))
            count, oldest = (
                await s.execute(
                    select(
                        func.count().filter(AnswerRow.file_name.is_not(None)),
                        func.min(AnswerRow.created_at),
                    ).where(mine)
                )
            ).one()
        if (count or 0) > limit:
            kept = (
                select(AnswerRow.id)
                .where(with_image)
                .order_by(AnswerRow.created_at.desc(), AnswerRow.id.desc())
                .limit(limit)
                .scalar_subquery()
            )
            beyond = AnswerRow.file_name.is_not(None) & AnswerRow.id.not_in(kept)
            dropped |= set(await s.scalars(select(AnswerRow.file_name).where(mine, beyond)))
            await s.execute(update(AnswerRow).where(mine, beyond).values(file_name=None))
            count = limit
        return dropped, int(count or 0), oldest

    async def _queue_unnamed(
        self, s: AsyncSession, dropped: set[str | None]
    ) -> list[PendingRemovalRow]:
        """Record the removal of the dropped files that no row names any more (in the
        transaction that dropped them: ``bot.db.removals``)."""
        if not dropped - {None}:
            return []
        gone = dropped - await self._named_files(s) - {None}
        paths = [self.feedback_dir / str(name) for name in sorted(gone, key=str)]
        return await self._store.removals.queue(s, paths=paths)

    async def _named_files(self, s: AsyncSession) -> set[str | None]:
        answers = await s.scalars(
            select(AnswerRow.file_name).where(AnswerRow.guild_id == self.scope_id)
        )
        items = await s.scalars(
            select(ReviewItemRow.file_name).where(ReviewItemRow.guild_id == self.scope_id)
        )
        return set(answers) | set(items)

    # --- votes --------------------------------------------------------------------------
    async def vote(
        self, answer_id: int, user_id: int, *, right: bool, label: str | None = None
    ) -> Tally | None:
        """Count ``user_id``'s vote on an answer; a second vote replaces the first.
        ``None`` if the answer is not this server's (any more)."""
        if not is_row_id(answer_id):
            return None
        async with self._write() as s:
            answer = await s.scalar(
                select(AnswerRow.id).where(
                    AnswerRow.guild_id == self.scope_id, AnswerRow.id == answer_id
                )
            )
            if answer is None:
                return None
            row = await s.get(VoteRow, (answer_id, user_id))
            replaced = row is not None
            if row is None:
                row = VoteRow(answer_id=answer_id, user_id=user_id, guild_id=self.scope_id)
                s.add(row)
            row.right, row.label, row.voted_at = right, label, utcnow()
            await s.flush()
            result = await s.execute(
                select(VoteRow.right, func.count())
                .where(VoteRow.answer_id == answer_id, VoteRow.guild_id == self.scope_id)
                .group_by(VoteRow.right)
            )
            counts = {bool(is_right): int(n) for is_right, n in result.all()}
            return Tally(int(counts.get(True, 0)), int(counts.get(False, 0)), replaced)

    async def reject_reviews_of(self, user_id: int) -> int:
        """Reject every waiting correction ``user_id`` sent (an admin's clean-up of a
        flood); how many."""
        return await self._forget_feedback(ReviewItemRow.user_id == user_id, None, None)

    async def drop_review_item(self, item_id: int) -> bool:
        """Remove a decided item (and its image unless another row names it)."""
        if not is_row_id(item_id):
            return False
        return bool(await self._forget_feedback(ReviewItemRow.id == item_id, None, None))

    async def _forget_feedback(self, items: Any, answers: Any, votes: Any) -> int:
        """Delete matching review items, answers (with their votes) and votes; then the
        files no row names. The number of review items deleted."""
        async with self._store.lock(self.scope_id):
            async with self._write() as s:
                names: set[str | None] = set()
                n_items = 0
                if items is not None:
                    cond = (ReviewItemRow.guild_id == self.scope_id) & items
                    rows = list(await s.scalars(select(ReviewItemRow).where(cond)))
                    names |= {r.file_name for r in rows}
                    n_items = len(rows)
                    await s.execute(delete(ReviewItemRow).where(cond))
                if answers is not None:
                    cond = (AnswerRow.guild_id == self.scope_id) & answers
                    rows_a = list(await s.scalars(select(AnswerRow).where(cond)))
                    names |= {r.file_name for r in rows_a}
                    ids = [r.id for r in rows_a]
                    await s.execute(delete(VoteRow).where(VoteRow.answer_id.in_(ids)))
                    await s.execute(delete(AnswerRow).where(AnswerRow.id.in_(ids)))
                if votes is not None:
                    cond = (VoteRow.guild_id == self.scope_id) & votes
                    await s.execute(delete(VoteRow).where(cond))
                pending = await self._queue_unnamed(s, names)
            await self._store.removals.carry_out(pending)
        return n_items

    async def forget_feedback_of_label(self, label: str) -> int:
        return await self._forget_feedback(
            ReviewItemRow.proposed_label == label, AnswerRow.label == label, VoteRow.label == label
        )

    async def forget_feedback_of_user(self, user_id: int) -> int:
        """What the member asked, voted and sent for review, and the answers and review
        items of images the member posted (whoever asked or corrected)."""
        return await self._forget_feedback(
            (ReviewItemRow.user_id == user_id) | (ReviewItemRow.author_id == user_id),
            (AnswerRow.user_id == user_id) | (AnswerRow.author_id == user_id),
            VoteRow.user_id == user_id,
        )
