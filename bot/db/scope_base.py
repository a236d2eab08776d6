"""What every scoped view shares: its scope, sessions, and writes that fail cleanly."""

from __future__ import annotations

import logging

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import UserError
from bot.db import files
from bot.db.schema import GuildRow, utcnow
from bot.db.scope_context import ScopeContext

log = logging.getLogger(__name__)

#: Row ids are 32-bit on PostgreSQL (``Integer``): an id from a custom id outside
#: 1..ID_MAX names no row (and would make the driver raise instead of finding none).
ID_MAX = 2**31 - 1


def is_row_id(value: int) -> bool:
    return 0 < value <= ID_MAX


class StoreWriteError(UserError):
    """The database or the disk refused a change; nothing of it was kept."""

    def __init__(self) -> None:
        super().__init__(
            "I couldn't save that, so nothing was stored or changed. "
            "The error has been logged for the bot's operator."
        )


class ScopeBase:
    def __init__(self, store: ScopeContext, scope_id: int) -> None:
        self._store = store
        self.scope_id = scope_id
        self.folder = files.scope_dir(store.data_dir, scope_id)
        self.images_dir = files.images_dir(store.data_dir, scope_id)
        self.models_dir = files.models_dir(store.data_dir, scope_id)
        self.feedback_dir = files.feedback_dir(store.data_dir, scope_id)

    @property
    def tenant(self) -> str:
        return "default" if self.scope_id == 0 else f"guild:{self.scope_id}"

    def _session(self) -> AsyncSession:
        return self._store.sessions()

    async def _ensure_row(self, session: AsyncSession) -> GuildRow:
        """The scope's row, created if missing. Two first writes of a scope may race (the
        bot seeing the server while a command stores something): the insert does nothing
        when the other one's row is there already, on SQLite and PostgreSQL alike."""
        row = await session.get(GuildRow, self.scope_id)
        if row is None:
            dialect = session.get_bind().dialect.name
            insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
            await session.execute(
                insert(GuildRow)
                .values(id=self.scope_id, include_default=True, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=[GuildRow.id])
            )
            row = await session.get(GuildRow, self.scope_id)
            assert row is not None
        return row

    # --- plumbing -----------------------------------------------------------------------
    def _write(self, *, changes_serving: bool = True) -> WriteSession:
        """A write to this scope; once committed it drops the scope's cached serving state
        (:mod:`bot.db.serving`) unless ``changes_serving`` is False (neither the current
        model nor the options can change)."""
        return WriteSession(self._store, self.scope_id if changes_serving else None)


class WriteSession:
    """``async with`` a session in a transaction; database errors become
    :class:`StoreWriteError` (logged), after a rollback."""

    def __init__(self, store: ScopeContext, scope_id: int | None = None) -> None:
        self._store = store
        self._scope_id = scope_id  # whose cached serving state a commit drops
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
                    if self._scope_id is not None:
                        self._store.serving.drop(self._scope_id)
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
