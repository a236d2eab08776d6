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
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.quotas import Usage, check_retrain, check_teach
from bot.db.records import Forgotten, GuildSettings, ModelRecord, RetrainRecord, TaughtRecord
from bot.db.schema import (
    GuildRow,
    LegacyWatchedChannelRow,
    ModelRow,
    RetrainRow,
    TaughtImageRow,
    WatchedChannelRow,
    utcnow,
)
from bot.errors import UserError

if TYPE_CHECKING:
    from bot.db.store import Store

log = logging.getLogger(__name__)

#: Earlier models of a server kept for ``/model rollback`` besides the current one.
MODELS_KEPT = 5

#: Test seam: called after an image file is written and before its row is committed.
after_file_written: Callable[[Path], None] | None = None


class StoreWriteError(UserError):
    """The database or the disk refused a change; nothing of it was kept."""

    def __init__(self) -> None:
        super().__init__(
            "I couldn't save that, so nothing was stored or changed. "
            "The error has been logged for the bot's operator."
        )


class ScopedData:
    def __init__(self, store: Store, scope_id: int) -> None:
        self._store = store
        self.scope_id = scope_id
        self.folder = files.scope_dir(store.data_dir, scope_id)
        self.images_dir = files.images_dir(store.data_dir, scope_id)
        self.models_dir = files.models_dir(store.data_dir, scope_id)

    @property
    def tenant(self) -> str:
        return "default" if self.scope_id == 0 else f"guild:{self.scope_id}"

    def _session(self) -> AsyncSession:
        return self._store.sessions()

    async def _ensure_row(self, session: AsyncSession) -> GuildRow:
        row = await session.get(GuildRow, self.scope_id)
        if row is None:
            row = GuildRow(id=self.scope_id, include_default=True, created_at=utcnow())
            session.add(row)
            await session.flush()
        return row

    # --- settings and lifecycle ---------------------------------------------------------
    async def settings(self) -> GuildSettings:
        async with self._session() as s:
            row = await s.get(GuildRow, self.scope_id)
            return GuildSettings(row.include_default) if row else GuildSettings()

    async def set_include_default(self, on: bool) -> None:
        async with self._write() as s:
            (await self._ensure_row(s)).include_default = on

    async def mark_left(self, when: dt.datetime | None = None) -> None:
        async with self._write() as s:
            (await self._ensure_row(s)).left_at = when or utcnow()

    async def left_at(self) -> dt.datetime | None:
        async with self._session() as s:
            row = await s.get(GuildRow, self.scope_id)
            return row.left_at if row else None

    async def mark_present(self) -> None:
        async with self._write() as s:
            await s.execute(
                update(GuildRow).where(GuildRow.id == self.scope_id).values(left_at=None)
            )

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
        )

    async def taught(self) -> list[TaughtRecord]:
        async with self._session() as s:
            rows = await s.scalars(self._taught().order_by(TaughtImageRow.id))
            return [self._record(r) for r in rows]

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
    ) -> tuple[bool, int]:
        """Store one image under ``label``: (whether it was new, images of that label).

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
                        )
                    )
            except BaseException as exc:
                if created:
                    files.unlink(path)
                if isinstance(exc, OSError):
                    log.error("could not write taught image %s: %s", path, exc)
                    raise StoreWriteError() from exc
                raise
            async with self._session() as s:
                return True, await self._count_label(s, label)

    async def _count_label(self, s: AsyncSession, label: str) -> int:
        n = await s.scalar(
            select(func.count())
            .select_from(TaughtImageRow)
            .where(TaughtImageRow.guild_id == self.scope_id, TaughtImageRow.label == label)
        )
        return int(n or 0)

    async def forget_label(self, label: str) -> Forgotten:
        return await self._forget(TaughtImageRow.label == label)

    async def forget_user(self, user_id: int) -> Forgotten:
        return await self._forget(TaughtImageRow.user_id == user_id)

    async def _forget(self, condition: Any) -> Forgotten:
        """Delete matching rows, commit, then remove files no row uses any more."""
        async with self._store.lock(self.scope_id):
            async with self._write() as s:
                rows = list(await s.scalars(self._taught().where(condition)))
                for row in rows:
                    await s.delete(row)
                await s.flush()
                still = set(
                    await s.scalars(
                        select(TaughtImageRow.file_name).where(
                            TaughtImageRow.guild_id == self.scope_id
                        )
                    )
                )
            gone = {r.file_name for r in rows} - still
            for name in gone:
                files.unlink(self.images_dir / name)
            return Forgotten(images=len(rows), files=len(gone))

    async def forget_all(self) -> Forgotten:
        """Every row of this scope (images, models, settings, channels, retrains), then
        its folder."""
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
                for table in (TaughtImageRow, ModelRow, WatchedChannelRow, RetrainRow):
                    await s.execute(delete(table).where(table.guild_id == self.scope_id))
                await s.execute(delete(GuildRow).where(GuildRow.id == self.scope_id))
            await asyncio.to_thread(files.remove_tree, self.folder)
            return Forgotten(images=int(n_images or 0), models=int(n_models or 0))

    # --- models ---------------------------------------------------------------------------
    def _model(self, row: ModelRow) -> ModelRecord:
        return ModelRecord(
            row.model_id,
            self.models_dir / row.file_name,
            tuple(row.labels),
            dict(row.metrics),
            row.created_at,
            row.is_current,
        )

    async def current_model(self) -> ModelRecord | None:
        async with self._session() as s:
            row = await s.scalar(
                select(ModelRow).where(ModelRow.guild_id == self.scope_id, ModelRow.is_current)
            )
            return self._model(row) if row else None

    async def models(self) -> list[ModelRecord]:
        """Newest first."""
        async with self._session() as s:
            rows = await s.scalars(
                select(ModelRow)
                .where(ModelRow.guild_id == self.scope_id)
                .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
            )
            return [self._model(r) for r in rows]

    async def register_model(
        self, model_id: str, path: Path, labels: Iterable[str], metrics: dict[str, Any]
    ) -> ModelRecord:
        """Make the trained file at ``path`` (in :attr:`models_dir`) this scope's current
        model; older ones beyond :data:`MODELS_KEPT` are deleted. If the row cannot be
        committed the file is removed (it belongs to no record)."""
        if not files.is_file_in(path, self.models_dir):
            raise ValueError(f"{path} is not a model file in {self.models_dir}")
        try:
            async with self._store.lock(self.scope_id), self._write() as s:
                await self._ensure_row(s)
                await s.execute(
                    update(ModelRow)
                    .where(ModelRow.guild_id == self.scope_id)
                    .values(is_current=False)
                )
                row = await s.scalar(
                    select(ModelRow).where(
                        ModelRow.guild_id == self.scope_id, ModelRow.model_id == model_id
                    )
                )
                if row is None:
                    row = ModelRow(guild_id=self.scope_id, model_id=model_id)
                    s.add(row)
                row.file_name, row.labels, row.metrics = path.name, list(labels), metrics
                row.created_at, row.is_current = utcnow(), True
                await s.flush()
                old = list(
                    await s.scalars(
                        select(ModelRow)
                        .where(ModelRow.guild_id == self.scope_id, ~ModelRow.is_current)
                        .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
                        .offset(MODELS_KEPT)
                    )
                )
                for r in old:
                    await s.delete(r)
                record = self._model(row)
        except BaseException:
            files.unlink(path)
            raise
        for r in old:
            if r.file_name != path.name:
                files.unlink(self.models_dir / r.file_name)
        return record

    async def rollback(self) -> ModelRecord | None:
        """Drop the current model; the previous one (or the default model: ``None``)
        becomes current. :class:`UserError` if there is no server model."""
        async with self._store.lock(self.scope_id):
            async with self._write() as s:
                rows = list(
                    await s.scalars(
                        select(ModelRow)
                        .where(ModelRow.guild_id == self.scope_id)
                        .order_by(
                            ModelRow.is_current.desc(),
                            ModelRow.created_at.desc(),
                            ModelRow.id.desc(),
                        )
                    )
                )
                if not rows or not rows[0].is_current:
                    raise UserError(
                        "This server uses the default model: there is nothing to roll back."
                    )
                current, previous = rows[0], rows[1] if len(rows) > 1 else None
                await s.delete(current)
                if previous is not None:
                    previous.is_current = True
                record = self._model(previous) if previous else None
            files.unlink(self.models_dir / current.file_name)
            return record

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
                await s.flush()
                return row.id

    async def finish_retrain(self, retrain_id: int, outcome: str, detail: str = "") -> None:
        async with self._write() as s:
            await s.execute(
                update(RetrainRow)
                .where(RetrainRow.guild_id == self.scope_id, RetrainRow.id == retrain_id)
                .values(outcome=outcome, detail=detail[:200])
            )

    async def last_retrain(self) -> RetrainRecord | None:
        async with self._session() as s:
            row = await s.scalar(
                select(RetrainRow)
                .where(RetrainRow.guild_id == self.scope_id)
                .order_by(RetrainRow.started_at.desc(), RetrainRow.id.desc())
                .limit(1)
            )
            return RetrainRecord(row.started_at, row.outcome, row.detail) if row else None

    # --- plumbing -----------------------------------------------------------------------
    def _write(self) -> _WriteSession:
        return _WriteSession(self._store)


class _WriteSession:
    """``async with`` a session in a transaction; database errors become
    :class:`StoreWriteError` (logged), after a rollback."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        self._session = self._store.sessions()
        await self._session.__aenter__()
        await self._session.begin()
        return self._session

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        session = self._session
        assert session is not None
        try:
            if exc is None:
                try:
                    await session.commit()
                except SQLAlchemyError as commit_exc:
                    log.error("database write failed: %s", commit_exc)
                    await session.rollback()
                    raise StoreWriteError() from commit_exc
            else:
                await session.rollback()
                if isinstance(exc, SQLAlchemyError):
                    log.error("database write failed: %s", exc)
                    raise StoreWriteError() from exc
        finally:
            await session.close()
