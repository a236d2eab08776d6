"""Copying the whole database to another one (``python -m bot db copy``, backups, restores),
table by table from one consistent snapshot, verified by row counts and content hashes.

The source is read in a single snapshot: PostgreSQL in a ``REPEATABLE READ`` read-only
transaction, SQLite from a ``VACUUM INTO`` copy (taken while the bot may be writing). The
target gets this code's schema through the Alembic migrations, then every table's rows in
primary-key order (parents first); PostgreSQL's id sequences are moved past the copied ids.
Each table's content hash (:func:`table_digest`: sha256 over its rows in key order, values
in a canonical form both engines agree on) is computed while reading the source and again
from the target after the commit; any difference is an error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.db.engine import DatabaseError, code_heads, make_engine, safe_url, upgrade
from bot.db.schema import Base

#: rows read and written per batch
BATCH = 500

#: ``progress(what, done, total)``: called now and then during long work
Progress = Callable[[str, int, int], None]


class TargetNotEmpty(DatabaseError):
    """The target already holds data; nothing was written to it."""


class CopyMismatch(DatabaseError):
    """The copy does not equal its source (row counts or hashes differ)."""


@dataclass(frozen=True, slots=True)
class TableSummary:
    name: str
    rows: int
    sha256: str


def tables() -> list[Table]:
    """Every table of the schema, parents before children."""
    return list(Base.metadata.sorted_tables)


def canonical(value: Any) -> Any:
    """A JSON-able form of a column value that is the same whichever engine returned it."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


class _Digest:
    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.rows = 0

    def add(self, row: Any) -> None:
        self._sha.update(json.dumps([canonical(v) for v in row]).encode() + b"\n")
        self.rows += 1

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _ordered(table: Table) -> Any:
    return select(table).order_by(*table.primary_key.columns)


async def table_digest(conn: AsyncConnection, table: Table) -> TableSummary:
    digest = _Digest()
    result = await conn.stream(_ordered(table))
    async for batch in result.partitions(BATCH):
        for row in batch:
            digest.add(row)
    return TableSummary(table.name, digest.rows, digest.hexdigest())


async def summarise(engine: AsyncEngine) -> list[TableSummary]:
    """Every table's row count and content hash (one read transaction)."""
    async with engine.connect() as conn, conn.begin():
        return [await table_digest(conn, table) for table in tables()]


class _Ticker:
    """Calls ``progress`` at most every ``every_s`` seconds (and at the end of each step)."""

    def __init__(self, progress: Progress | None, every_s: float = 2.0) -> None:
        self._progress = progress
        self._every = every_s
        self._last = 0.0

    def __call__(self, what: str, done: int, total: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if self._progress is not None and (final or now - self._last >= self._every):
            self._last = now
            self._progress(what, done, total)


async def _existing_tables(conn: AsyncConnection) -> set[str]:
    return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def rows_in(engine: AsyncEngine) -> dict[str, int]:
    """Rows of each of the bot's tables that exist in ``engine``'s database (empty: none)."""
    async with engine.connect() as conn:
        existing = await _existing_tables(conn)
        counts = {}
        for table in tables():
            if table.name in existing:
                n = await conn.scalar(select(func.count()).select_from(table))
                if n:
                    counts[table.name] = int(n)
        return counts


async def drop_everything(engine: AsyncEngine) -> None:
    """Drop the bot's tables and Alembic's stamp (``restore --force`` on PostgreSQL)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))


@asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection that sees one consistent state of ``engine``'s database."""
    if engine.dialect.name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bot-db-snapshot-") as tmp:
            copy = Path(tmp) / "snapshot.sqlite"
            await vacuum_into(engine, copy)
            frozen = make_engine(f"sqlite+aiosqlite:///{copy}")
            try:
                async with frozen.connect() as conn, conn.begin():
                    yield conn
            finally:
                await frozen.dispose()
        return
    async with engine.connect() as conn:
        conn = await conn.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with conn.begin():
            yield conn


async def vacuum_into(engine: AsyncEngine, path: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's ``VACUUM INTO``: a read
    transaction, writers are not blocked)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM INTO ?", (str(path),))


async def revision_of(conn: AsyncConnection) -> str | None:
    if "alembic_version" not in await _existing_tables(conn):
        return None
    return await conn.scalar(text("SELECT version_num FROM alembic_version"))


async def copy_database(
    source: AsyncEngine, target: AsyncEngine, progress: Progress | None = None
) -> list[TableSummary]:
    """Copy every table of ``source`` into the empty ``target``; the verified summaries.
    :class:`TargetNotEmpty` (nothing written), :class:`CopyMismatch`."""
    head = code_heads()
    occupied = await rows_in(target)
    if occupied:
        held = ", ".join(f"{name}: {n}" for name, n in sorted(occupied.items()))
        raise TargetNotEmpty(
            f"The target database {safe_url(str(target.url))} already holds data ({held}). "
            "Copy into an empty database."
        )
    tick = _Ticker(progress)
    async with snapshot(source) as src:
        revision = await revision_of(src)
        if revision not in head:
            raise DatabaseError(
                f"The source database is at revision {revision or 'empty'}, this version of "
                f"the bot at {', '.join(head)}: run `python -m bot db upgrade` on it first."
            )
        await upgrade(target)
        copied = []
        async with target.begin() as dst:
            for table in tables():
                copied.append(await _copy_table(src, dst, table, tick))
            if target.dialect.name == "postgresql":
                await _advance_sequences(dst)
    written = await summarise(target)
    if written != copied:
        wrong = [a.name for a, b in zip(copied, written, strict=True) if a != b]
        raise CopyMismatch(
            f"The copy differs from its source in {', '.join(wrong)}: do not use it."
        )
    return copied


async def _copy_table(
    src: AsyncConnection, dst: AsyncConnection, table: Table, tick: _Ticker
) -> TableSummary:
    total = int(await src.scalar(select(func.count()).select_from(table)) or 0)
    digest = _Digest()
    names = [c.name for c in table.columns]
    result = await src.stream(_ordered(table))
    async for batch in result.partitions(BATCH):
        for row in batch:
            digest.add(row)
        await dst.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in batch])
        tick(f"table {table.name}", digest.rows, total)
    tick(f"table {table.name}", digest.rows, total, final=True)
    return TableSummary(table.name, digest.rows, digest.hexdigest())


async def _advance_sequences(dst: AsyncConnection) -> None:
    """Explicit ids do not move PostgreSQL's serial sequences: move them past the rows."""
    for table in tables():
        if not _serial(table):
            continue
        [column] = [c.name for c in table.primary_key.columns]
        await dst.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table.name}), 1), "
                f"(SELECT MAX({column}) FROM {table.name}) IS NOT NULL)"
            )
        )


def _serial(table: Table) -> bool:
    """An integer primary key PostgreSQL fills from a sequence."""
    pk = list(table.primary_key.columns)
    return (
        len(pk) == 1
        and pk[0].autoincrement in (True, "auto")
        and isinstance(pk[0].type, Integer)
        and not pk[0].foreign_keys
    )


async def copy_between(
    source_url: str, target_url: str, progress: Progress | None = None
) -> list[TableSummary]:
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        return await copy_database(source, target, progress)
    finally:
        await asyncio.gather(source.dispose(), target.dispose())


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for other databases or in-memory ones)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    return Path(parsed.database) if parsed.database != ":memory:" else None
