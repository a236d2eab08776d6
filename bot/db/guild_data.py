"""``ScopedData``: everything of one server (or of the default scope), and nothing else.

Obtained only through ``Store.guild(guild_id)`` / ``Store.default_scope()``; every query
here filters on ``self.scope_id``, so a command cannot reach another server's data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.feedback_data import ScopeFeedback
from bot.db.quotas import Usage, check_retrain, check_teach
from bot.db.records import Forgotten, GuildSettings, RetrainRecord, TaughtRecord
from bot.db.schema import (
    AnswerRow,
    GuildOptionsRow,
    GuildRow,
    LabelRuleRow,
    LegacyWatchedChannelRow,
    ModelRow,
    RetrainRow,
    ReviewItemRow,
    TaughtImageRow,
    VoteRow,
    WatchedChannelRow,
    new_generation,
    utcnow,
)
from bot.db.scope_base import StoreWriteError
from bot.db.scope_models import MODELS_KEPT, ScopeModels
from bot.db.scope_rules import ScopeRules

log = logging.getLogger(__name__)

#: Test seam: called after an image file is written and before its row is committed.
after_file_written: Callable[[Path], None] | None = None


class ScopedData(ScopeFeedback, ScopeRules, ScopeModels):
    # --- settings and lifecycle ---------------------------------------------------------
    async def settings(self) -> GuildSettings:
        async with self._session() as s:
            row = await s.get(GuildRow, self.scope_id)
            return (
                GuildSettings(row.include_default, row.trainer_role_id) if row else GuildSettings()
            )

    async def set_include_default(self, on: bool) -> None:
        async with self._write() as s:
            (await self._ensure_row(s)).include_default = on

    async def set_trainer_role(self, role_id: int | None) -> None:
        async with self._write() as s:
            (await self._ensure_row(s)).trainer_role_id = role_id

    async def mark_left(self, when: dt.datetime | None = None) -> None:
        async with self._write() as s:
            (await self._ensure_row(s)).left_at = when or utcnow()

    async def left_at(self) -> dt.datetime | None:
        async with self._session() as s:
            row = await s.get(GuildRow, self.scope_id)
            return row.left_at if row else None

    async def mark_present(self) -> None:
        """The bot is in this server: its row exists (created the first time the bot sees
        the server, so that a server where nothing was stored yet is known, e.g. to the
        dashboard) and is not marked as left. Writes only when something changes."""
        async with self._session() as s:
            row = await s.get(GuildRow, self.scope_id)
            if row is not None and row.left_at is None:
                return
        async with self._write(changes_serving=False) as s:
            (await self._ensure_row(s)).left_at = None

    # --- watched channels ---------------------------------------------------------------
    async def watched_channels(self) -> set[int]:
        async with self._session() as s:
            rows = await s.scalars(
                select(WatchedChannelRow.channel_id).where(
                    WatchedChannelRow.guild_id == self.scope_id
                )
            )
            return set(rows)

    async def is_watched(self, channel_id: int) -> bool:
        return channel_id in await self.watched_channels()

    async def set_watched(self, channel_id: int, on: bool) -> bool:
        """Watch or unwatch a channel of this server; whether anything changed."""
        async with self._write() as s:
            row = await s.get(WatchedChannelRow, (self.scope_id, channel_id))
            if (row is not None) == on:
                return False
            if on:
                await self._ensure_row(s)
                s.add(WatchedChannelRow(guild_id=self.scope_id, channel_id=channel_id))
            else:
                await s.delete(row)
            return True

    async def claim_legacy_channels(self, channel_ids: Iterable[int]) -> int:
        """Move channels of this server watched in the old JSON state into this scope."""
        ids = set(channel_ids)
        async with self._write() as s:
            found = set(
                await s.scalars(
                    select(LegacyWatchedChannelRow.channel_id).where(
                        LegacyWatchedChannelRow.channel_id.in_(ids)
                    )
                )
            )
            if not found:
                return 0
            await self._ensure_row(s)
            known = await self._watched_in(s)
            for cid in found - known:
                s.add(WatchedChannelRow(guild_id=self.scope_id, channel_id=cid))
            await s.execute(
                delete(LegacyWatchedChannelRow).where(LegacyWatchedChannelRow.channel_id.in_(found))
            )
            return len(found)

    async def _watched_in(self, s: AsyncSession) -> set[int]:
        q = select(WatchedChannelRow.channel_id).where(WatchedChannelRow.guild_id == self.scope_id)
        return set(await s.scalars(q))

    # --- taught images ------------------------------------------------------------------
    def _taught(self) -> Any:
        return select(TaughtImageRow).where(TaughtImageRow.guild_id == self.scope_id)

    def _record(self, row: TaughtImageRow) -> TaughtRecord:
        return TaughtRecord(
            row.label,
            row.sha256,
            row.user_id,
            row.user_name,
            row.added_at,
            self.images_dir / row.file_name,
            row.size_bytes,
            row.author_id,
            row.missing_since,
        )

    async def taught(self, *, include_missing: bool = False) -> list[TaughtRecord]:
        """The scope's taught images, oldest first. Those whose file the start-up check
        found missing are left out (of training, too) unless ``include_missing``."""
        query = self._taught()
        if not include_missing:
            query = query.where(TaughtImageRow.missing_since.is_(None))
        async with self._session() as s:
            rows = await s.scalars(query.order_by(TaughtImageRow.id))
            return [self._record(r) for r in rows]

    async def taught_of_label(self, label: str, limit: int, offset: int = 0) -> list[TaughtRecord]:
        """A page of the label's taught images whose file is there, newest first."""
        async with self._session() as s:
            rows = await s.scalars(
                self._taught()
                .where(TaughtImageRow.label == label, TaughtImageRow.missing_since.is_(None))
                .order_by(TaughtImageRow.added_at.desc(), TaughtImageRow.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return [self._record(r) for r in rows]

    async def taught_image(self, sha256: str) -> TaughtRecord | None:
        """One of this scope's taught files by its content hash (any of its labels), unless
        the start-up check found it missing."""
        async with self._session() as s:
            row = await s.scalar(
                self._taught()
                .where(TaughtImageRow.sha256 == sha256, TaughtImageRow.missing_since.is_(None))
                .order_by(TaughtImageRow.id)
            )
            return self._record(row) if row else None

    async def missing_files(self) -> dict[str, int]:
        """How many of this scope's rows name a file the start-up check found missing, by
        kind (``taught images``, ``models``, ``answers``, ``review items``); only kinds
        with some."""
        counts = {}
        for name, table in (
            ("taught images", TaughtImageRow),
            ("models", ModelRow),
            ("answers", AnswerRow),
            ("review items", ReviewItemRow),
        ):
            async with self._session() as s:
                n = await s.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(table.guild_id == self.scope_id, table.missing_since.is_not(None))
                )
            if n:
                counts[name] = int(n)
        return counts

    async def generation(self) -> int:
        """This server's data generation: read it before reading what a retrain trains on
        and hand it to :meth:`register_model`, which then registers nothing if the server
        forgot anything (``/forget``, the retention purge) while the retrain ran."""
        async with self._write(changes_serving=False) as s:
            return (await self._ensure_row(s)).generation

    async def is_generation(self, generation: int) -> bool:
        """Whether the server's data is still at ``generation`` (nothing forgotten since
        :meth:`generation` said it). Only reads: a forgotten server's row is not made
        again."""
        async with self._session() as s:
            current = await s.scalar(
                select(GuildRow.generation).where(GuildRow.id == self.scope_id)
            )
        return current == generation

    async def _new_generation(self, s: AsyncSession) -> None:
        await s.execute(
            update(GuildRow).where(GuildRow.id == self.scope_id).values(generation=new_generation())
        )

    async def label_counts(self) -> dict[str, int]:
        async with self._session() as s:
            rows = await s.execute(
                select(TaughtImageRow.label, func.count())
                .where(TaughtImageRow.guild_id == self.scope_id)
                .group_by(TaughtImageRow.label)
            )
            return {label: n for label, n in rows.tuples()}

    async def usage(self) -> Usage:
        async with self._session() as s:
            return await self._usage(s)

    async def _usage(self, s: AsyncSession) -> Usage:
        mine = TaughtImageRow.guild_id == self.scope_id
        labels = await s.scalar(select(func.count(func.distinct(TaughtImageRow.label))).where(mine))
        images = await s.scalar(select(func.count()).select_from(TaughtImageRow).where(mine))
        # a file taught under two labels is stored once: count each sha256 once
        per_file = (
            select(TaughtImageRow.sha256, func.max(TaughtImageRow.size_bytes).label("size"))
            .where(mine)
            .group_by(TaughtImageRow.sha256)
            .subquery()
        )
        size = await s.scalar(select(func.coalesce(func.sum(per_file.c.size), 0)))
        since = utcnow() - dt.timedelta(hours=1)
        retrains = await s.scalar(
            select(func.count())
            .select_from(RetrainRow)
            .where(RetrainRow.guild_id == self.scope_id, RetrainRow.started_at >= since)
        )
        return Usage(int(labels or 0), int(images or 0), int(size or 0), int(retrains or 0))

    async def add_taught(
        self,
        label: str,
        data: bytes,
        extension: str,
        *,
        user_id: int,
        user_name: str,
        added_at: dt.datetime | None = None,
        check_quotas: bool = True,
        author_id: int | None = None,
    ) -> tuple[bool, int]:
        """Store one image under ``label``: (whether it was new, images of that label).
        ``author_id``: who posted the image, when the member teaching it (``user_id``)
        took it from someone else's message (``forget_user`` of either removes it).

        The file is written first, then its row committed; if the commit fails the file
        is removed again (unless an earlier row already used it). Quotas are checked under
        this scope's lock. :class:`QuotaExceeded`, :class:`StoreWriteError`.
        """
        digest = hashlib.sha256(data).hexdigest()
        file_name = f"{digest}.{extension}"
        path = self.images_dir / file_name
        async with self._store.lock(self.scope_id):
            async with self._session() as s:
                same = await s.scalar(
                    self._taught().where(
                        TaughtImageRow.sha256 == digest, TaughtImageRow.label == label
                    )
                )
                if same is not None:
                    if same.missing_since is not None:  # its file was lost: back now
                        await self._file_back(same, data)
                    return False, await self._count_label(s, label)
                known = await s.scalar(
                    select(func.count())
                    .select_from(TaughtImageRow)
                    .where(TaughtImageRow.guild_id == self.scope_id, TaughtImageRow.label == label)
                )
                stored = await s.scalar(
                    select(func.count())
                    .select_from(TaughtImageRow)
                    .where(
                        TaughtImageRow.guild_id == self.scope_id, TaughtImageRow.sha256 == digest
                    )
                )
                usage = await self._usage(s)
            if check_quotas:
                check_teach(self._store.quotas, usage, not known, 0 if stored else len(data))
            created = False
            try:
                created = not path.exists()
                if created:
                    await asyncio.to_thread(files.write_atomic, path, data)
                    if after_file_written is not None:
                        after_file_written(path)
                async with self._write() as s:
                    await self._ensure_row(s)
                    s.add(
                        TaughtImageRow(
                            guild_id=self.scope_id,
                            sha256=digest,
                            label=label,
                            user_id=user_id,
                            user_name=user_name[:100],
                            added_at=added_at or utcnow(),
                            file_name=file_name,
                            size_bytes=len(data),
                            author_id=author_id,
                        )
                    )
                    await self._count_taught(s)  # towards the auto-retrain (guild_options)
            except BaseException as exc:
                if created:
                    files.unlink(path)
                if isinstance(exc, OSError):
                    log.error("could not write taught image %s: %s", path, exc)
                    raise StoreWriteError() from exc
                raise
            async with self._session() as s:
                count = await self._count_label(s, label)
        self._store.taught_recorded(self.scope_id)
        return True, count

    async def _file_back(self, row: TaughtImageRow, data: bytes) -> None:
        """The same image taught again while its row is marked missing: write the file
        and clear the mark (the caller holds the scope's lock)."""
        path = self.images_dir / row.file_name
        try:
            await asyncio.to_thread(files.write_atomic, path, data)
            async with self._write() as s:
                await s.execute(
                    update(TaughtImageRow)
                    .where(TaughtImageRow.id == row.id)
                    .values(missing_since=None)
                )
        except OSError as exc:
            log.error("could not write taught image %s: %s", path, exc)
            raise StoreWriteError() from exc

    async def _count_label(self, s: AsyncSession, label: str) -> int:
        n = await s.scalar(
            select(func.count())
            .select_from(TaughtImageRow)
            .where(TaughtImageRow.guild_id == self.scope_id, TaughtImageRow.label == label)
        )
        return int(n or 0)

    async def forget_label(self, label: str) -> Forgotten:
        """The label's taught images, and its answers, votes and review items."""
        out = await self._forget(TaughtImageRow.label == label)
        reviews = await self.forget_feedback_of_label(label)
        return Forgotten(out.images, out.models, out.files, reviews)

    async def forget_image(self, label: str, sha256: str, *, user_id: int | None = None) -> int:
        """One taught image of ``label`` (only if ``user_id`` taught it, when given); its
        file goes when no other label uses it. The number of images removed (0 or 1)."""
        condition = (TaughtImageRow.label == label) & (TaughtImageRow.sha256 == sha256)
        if user_id is not None:
            condition &= TaughtImageRow.user_id == user_id
        return (await self._forget(condition)).images

    async def forget_user(self, user_id: int) -> Forgotten:
        """What the member taught, asked, voted and sent for review, and every taught
        image, answer and review item whose image the member posted (whoever taught,
        asked about or corrected it)."""
        mine = (TaughtImageRow.user_id == user_id) | (TaughtImageRow.author_id == user_id)
        out = await self._forget(mine)
        reviews = await self.forget_feedback_of_user(user_id)
        return Forgotten(out.images, out.models, out.files, reviews)

    async def _forget(self, condition: Any) -> Forgotten:
        """Delete matching rows and start a new generation (a retrain running now will
        not register its model), commit, then remove the files and cached features no
        row uses any more."""
        removals = self._store.removals
        async with self._store.lock(self.scope_id):
            async with self._write() as s:
                rows = list(await s.scalars(self._taught().where(condition)))
                for row in rows:
                    await s.delete(row)
                await s.flush()
                still = await s.execute(
                    select(TaughtImageRow.file_name, TaughtImageRow.sha256).where(
                        TaughtImageRow.guild_id == self.scope_id
                    )
                )
                still_files, still_digests = set(), set()
                for name, digest in still:
                    still_files.add(name)
                    still_digests.add(digest)
                gone = {r.file_name for r in rows} - still_files
                if rows:
                    await self._new_generation(s)
                pending = await removals.queue(
                    s,
                    paths=[self.images_dir / name for name in sorted(gone)],
                    features={r.sha256 for r in rows} - still_digests,
                )
            await removals.carry_out(pending)
        removals.evict_soon()
        return Forgotten(images=len(rows), files=len(gone))

    async def forget_all(self) -> Forgotten:
        """Every row of this scope (images, models, settings, options, rules, channels,
        retrains), then its folder."""
        async with self._store.lock(self.scope_id):
            async with self._write() as s:
                n_images = await s.scalar(
                    select(func.count())
                    .select_from(TaughtImageRow)
                    .where(TaughtImageRow.guild_id == self.scope_id)
                )
                n_models = await s.scalar(
                    select(func.count())
                    .select_from(ModelRow)
                    .where(ModelRow.guild_id == self.scope_id)
                )
                digests = set(
                    await s.scalars(
                        select(TaughtImageRow.sha256).where(
                            TaughtImageRow.guild_id == self.scope_id
                        )
                    )
                )
                tables = (VoteRow, AnswerRow, ReviewItemRow, TaughtImageRow, ModelRow)
                extra = (WatchedChannelRow, RetrainRow, LabelRuleRow, GuildOptionsRow)
                for table in (*tables, *extra):
                    await s.execute(delete(table).where(table.guild_id == self.scope_id))
                # the generation goes with the row: a retrain running now registers nothing
                await s.execute(delete(GuildRow).where(GuildRow.id == self.scope_id))
                pending = await self._store.removals.queue(
                    s, folders=[self.folder], features=digests
                )
            await self._store.removals.carry_out(pending)
        self._store.removals.evict_soon()
        return Forgotten(images=int(n_images or 0), models=int(n_models or 0))

    # --- retrains ---------------------------------------------------------------------
    async def start_retrain(self, user_id: int) -> int:
        """Count one retrain (the per-hour quota); its id for :meth:`finish_retrain`."""
        async with self._store.lock(self.scope_id):
            async with self._session() as s:
                usage = await self._usage(s)
            check_retrain(self._store.quotas, usage.retrains_last_hour)
            async with self._write() as s:
                await self._ensure_row(s)
                row = RetrainRow(guild_id=self.scope_id, user_id=user_id, started_at=utcnow())
                s.add(row)
                counted = await self._reset_taught_count(s)  # what it trains on is not "new"
                await s.flush()
                retrain_id = row.id
            self._store.taught_reset[retrain_id] = counted
            return retrain_id

    async def finish_retrain(self, retrain_id: int, outcome: str, detail: str = "") -> None:
        """Record how retrain ``retrain_id`` ended; a failed one gives the server back the
        count of new taught images its start reset (so an auto-retrain is due again),
        unless the server forgot everything meanwhile (its retrains are gone with it)."""
        counted = self._store.taught_reset.pop(retrain_id, 0)
        async with self._store.lock(self.scope_id), self._write() as s:
            recorded = await s.execute(
                update(RetrainRow)
                .where(RetrainRow.guild_id == self.scope_id, RetrainRow.id == retrain_id)
                .values(outcome=outcome, detail=detail[:200])
            )
            still_there = bool(recorded.rowcount)  # type: ignore[attr-defined]
            if outcome == "failed" and counted and still_there:
                await self._give_back_taught_count(s, counted)

    async def last_retrain(self) -> RetrainRecord | None:
        async with self._session() as s:
            row = await s.scalar(
                select(RetrainRow)
                .where(RetrainRow.guild_id == self.scope_id)
                .order_by(RetrainRow.started_at.desc(), RetrainRow.id.desc())
                .limit(1)
            )
            return RetrainRecord(row.started_at, row.outcome, row.detail) if row else None


__all__ = ["MODELS_KEPT", "ScopedData", "StoreWriteError", "after_file_written"]
