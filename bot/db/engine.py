"""Engine, sessions and migrations: ``open_database`` is the one way in.

Migrations are Alembic scripts in ``bot/db/migrations/versions``; they run at start (and
by ``python -m bot db upgrade``). A database stamped with a revision this code does not
know (written by a newer version of the bot) is refused with :class:`DatabaseTooNew`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(Exception):
    """The database cannot be used; the message says why and what to do."""


class DatabaseTooNew(DatabaseError):
    pass


class DataMismatch(DatabaseError):
    """The database and the data folder do not belong together (``bot.db.repair``): the
    start is refused, nothing was changed; the message names both and the fix."""


def safe_url(url: str) -> str:
    """``url`` with its password masked: the only form of a database URL ever shown."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show none of it
        return "(an unparseable DATABASE_URL)"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def code_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def database_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


#: PostgreSQL advisory lock held while migrating: processes (e.g. shards) started together
#: migrate one after the other instead of racing to create the same tables.
MIGRATION_LOCK_KEY = 0x636C617373  # "class"


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    if connection.dialect.name == "postgresql":  # released when the transaction ends
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    before = database_revision(connection)
    script = ScriptDirectory.from_config(alembic_config())
    if before is not None:
        try:
            script.get_revision(before)
        except Exception:
            raise DatabaseTooNew(
                f"The database is at schema revision {before}, which this version of the bot "
                f"does not know (it knows up to {', '.join(script.get_heads())}): it was "
                "written by a newer version. Run that version, or point DATABASE_URL at "
                "another database."
            ) from None
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
    return before, database_revision(connection)


def make_engine(url: str) -> AsyncEngine:
    # A server connection can drop between uses; an embedded SQLite file cannot, and a
    # ping would cost every session a round trip through aiosqlite's thread.
    sqlite = url.startswith("sqlite")
    engine = create_async_engine(url, pool_pre_ping=not sqlite)
    if sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: commits do not wait for fsync (checkpoints do). The database
            # cannot be corrupted; a power cut may lose the last commits, which the start-up
            # consistency check reconciles with the files (SQLite's recommended setting).
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the schema to this code's head; (revision before, revision after)."""
    try:
        async with engine.begin() as conn:
            before, after = await conn.run_sync(_upgrade)
    except DatabaseError:
        raise
    except Exception as exc:
        raise DatabaseError(
            f"Cannot open or migrate the database ({type(exc).__name__}: {exc}). "
            "Check DATABASE_URL and that the database server is running."
        ) from exc
    if before != after:
        log.info("database schema upgraded from %s to %s", before or "empty", after)
    return before, after


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(database_revision)


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
