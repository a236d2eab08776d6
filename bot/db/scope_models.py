"""A scope's trained models: the current one, the previous ones, rollback."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from bot.core.errors import UserError
from bot.db import files
from bot.db.records import ModelRecord
from bot.db.schema import GuildOptionsRow, GuildRow, ModelRow, utcnow
from bot.db.scope_base import ScopeBase
from bot.db.serving import Serving

#: Earlier models of a server kept for ``/model rollback`` besides the current one.
MODELS_KEPT = 5


class ScopeForgotten(UserError):
    """The server forgot data (``/forget``, the retention purge) while a retrain ran: its
    model, trained on what was forgotten, was discarded."""

    def __init__(self) -> None:
        super().__init__(
            "This server's data changed while the retrain ran (something was forgotten), so "
            "its model was discarded. Run /retrain again to train on what is left."
        )


class ScopeModels(ScopeBase):
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

    def _served(self) -> Any:
        """The model that answers: the current one, or while its file is missing (the
        start-up check marks it) the newest whose file is there."""
        return (
            select(ModelRow)
            .where(ModelRow.guild_id == self.scope_id, ModelRow.missing_since.is_(None))
            .order_by(ModelRow.is_current.desc(), ModelRow.created_at.desc(), ModelRow.id.desc())
            .limit(1)
        )

    async def current_model(self) -> ModelRecord | None:
        async with self._session() as s:
            row = await s.scalar(self._served())
            return self._model(row) if row else None

    async def serving(self) -> Serving:
        """The current model and the "not sure" threshold, for answering an image: from
        memory when this process read them lately (:mod:`bot.db.serving`)."""
        cache = self._store.serving
        cached = cache.get(self.scope_id)
        if cached is not None:
            return cached
        generation = cache.generation(self.scope_id)
        async with self._session() as s:
            row = await s.scalar(self._served())
            options = await s.get(GuildOptionsRow, self.scope_id)
            value = Serving(
                self._model(row) if row else None,
                options.low_confidence if options is not None else None,
            )
        cache.put(self.scope_id, generation, value)
        return value

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
        self,
        model_id: str,
        path: Path,
        labels: Iterable[str],
        metrics: dict[str, Any],
        *,
        generation: int | None = None,
    ) -> ModelRecord:
        """Make the trained file at ``path`` (in :attr:`models_dir`) this scope's current
        model; older ones beyond :data:`MODELS_KEPT` are deleted. If the row cannot be
        committed the file is removed (it belongs to no record).

        ``generation``: what :meth:`generation` said before the retrain read its images.
        If the server forgot anything since, nothing is registered, the file is removed
        and :class:`ScopeForgotten` raised (checked in the registering transaction)."""
        if not files.is_file_in(path, self.models_dir):
            raise ValueError(f"{path} is not a model file in {self.models_dir}")
        async with self._store.lock(self.scope_id):
            try:
                async with self._write() as s:
                    if generation is not None:
                        # one statement: it matches (and on PostgreSQL locks the row until
                        # the commit, so a concurrent forget waits) or nothing is registered
                        same = await s.execute(
                            update(GuildRow)
                            .where(GuildRow.id == self.scope_id, GuildRow.generation == generation)
                            .values(generation=generation)
                        )
                        if not same.rowcount:  # type: ignore[attr-defined]
                            raise ScopeForgotten()
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
                    row.created_at, row.is_current, row.missing_since = utcnow(), True, None
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
                    stale = [self.models_dir / r.file_name for r in old]
                    stale = [p for p in stale if p.name != path.name]
                    pending = await self._store.removals.queue(s, paths=stale)
            except BaseException:
                files.unlink(path)
                raise
            # under the lock: no registration of this process can name them meanwhile
            await self._store.removals.carry_out(pending)
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
                pending = await self._store.removals.queue(
                    s, paths=[self.models_dir / current.file_name]
                )
            await self._store.removals.carry_out(pending)
            return record
