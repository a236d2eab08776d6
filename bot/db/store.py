"""The bot's database: ``Store`` opens it and hands out scoped views.

``store.guild(guild_id)`` and ``store.default_scope()`` return a
:class:`~bot.db.guild_data.ScopedData` whose every query is filtered by that scope (the
Red-DiscordBot ``Config.guild(...)`` pattern). Cross-server figures and maintenance live
on ``store.operator`` only, for the bot's operators.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import engine as db_engine
from bot.db.answer_book import AnswerBook
from bot.db.guild_data import ScopedData
from bot.db.quotas import Quotas
from bot.db.records import Forgotten
from bot.db.removals import Evictor, Removals
from bot.db.schema import DEFAULT_SCOPE, GuildRow, ModelRow, TaughtImageRow, WatchedChannelRow
from bot.db.serving import SERVING_TTL_S, ServingCache

log = logging.getLogger(__name__)


def default_database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'bot.db'}"


class Store:
    def __init__(
        self,
        url: str,
        data_dir: Path,
        quotas: Quotas | None = None,
        serving_ttl_s: float = SERVING_TTL_S,
    ) -> None:
        self.url = url
        self.data_dir = data_dir
        self.quotas = quotas or Quotas()
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: called with the scope id after each new taught image is committed (e.g. the
        #: auto-retrain); must not block. A listener's exception is logged, not raised.
        self.taught_listeners: list[Callable[[int], None]] = []
        #: retrain id -> the taught-since-retrain count its start reset, given back to the
        #: server if that retrain fails (in memory: a crash mid-retrain keeps it at 0)
        self.taught_reset: dict[int, int] = {}
        self.serving = ServingCache(serving_ttl_s)
        self.answer_books: dict[int, AnswerBook] = {}  # see bot.db.answer_book
        #: removes the features of forgotten taught images from the shared feature cache
        #: (``golem_backend.evict_cached_features``); None: no cache to clean
        self.evict_features: Evictor | None = None
        self.removals = Removals(self)  # what commits made unused (bot.db.removals)

    async def open(self) -> None:
        """Connect and migrate to this code's schema (:class:`DatabaseError` if not)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db_engine.make_engine(self.url)
        try:
            await db_engine.upgrade(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = db_engine.make_sessions(engine)

    async def close(self) -> None:
        await self.removals.stop()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> AsyncEngine:
        assert self._engine is not None, "Store.open() has not run"
        return self._engine

    def sessions(self) -> AsyncSession:
        assert self._sessions is not None, "Store.open() has not run"
        return self._sessions()

    def lock(self, scope_id: int) -> asyncio.Lock:
        """Serialises the quota-checked writes of one scope in this process."""
        return self._locks[scope_id]

    def taught_recorded(self, scope_id: int) -> None:
        for listener in self.taught_listeners:
            try:
                listener(scope_id)
            except Exception:
                log.exception("a taught-image listener failed for scope %s", scope_id)

    def guild(self, guild_id: int) -> ScopedData:
        if guild_id <= 0:
            raise ValueError(f"{guild_id} is not a Discord server id")
        return ScopedData(self, guild_id)

    def default_scope(self) -> ScopedData:
        return ScopedData(self, DEFAULT_SCOPE)

    @property
    def operator(self) -> OperatorData:
        return OperatorData(self)


class OperatorData:
    """Figures across all servers and maintenance: for ``ADMIN_USER_IDS`` and the bot."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def totals(self) -> dict[str, int]:
        async with self._store.sessions() as s:
            servers = await s.scalar(
                select(func.count()).select_from(GuildRow).where(GuildRow.id != DEFAULT_SCOPE)
            )
            images = await s.scalar(select(func.count()).select_from(TaughtImageRow))
            size = await s.scalar(select(func.coalesce(func.sum(TaughtImageRow.size_bytes), 0)))
            models = await s.scalar(select(func.count()).select_from(ModelRow))
            channels = await s.scalar(select(func.count()).select_from(WatchedChannelRow))
            return {
                "servers": int(servers or 0),
                "images": int(images or 0),
                "bytes": int(size or 0),
                "models": int(models or 0),
                "channels": int(channels or 0),
            }

    async def scope_ids(self) -> list[int]:
        async with self._store.sessions() as s:
            return list(await s.scalars(select(GuildRow.id).order_by(GuildRow.id)))

    async def purge_departed(self, older_than: dt.timedelta) -> dict[int, Forgotten]:
        """Forget every server the bot left more than ``older_than`` ago."""
        cutoff = dt.datetime.now(dt.UTC) - older_than
        async with self._store.sessions() as s:
            ids = list(
                await s.scalars(
                    select(GuildRow.id).where(
                        GuildRow.left_at.is_not(None), GuildRow.left_at <= cutoff
                    )
                )
            )
        purged = {}
        for guild_id in ids:
            purged[guild_id] = await self._store.guild(guild_id).forget_all()
            log.info("purged the data of server %s (left before %s)", guild_id, cutoff)
        return purged
