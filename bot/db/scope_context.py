"""What a scoped view (``ScopedData`` and its parts) needs of the store that made it.

``Store`` is a :class:`ScopeContext`; the scope classes depend on this protocol, not on
``Store``, so the store can build them without an import cycle.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.answer_book import AnswerBook
from bot.db.quotas import Quotas
from bot.db.removals import Removals
from bot.db.serving import ServingCache


class ScopeContext(Protocol):
    data_dir: Path
    quotas: Quotas
    serving: ServingCache  # each scope's cached serving state, dropped by its writes
    answer_books: dict[int, AnswerBook]  # see bot.db.answer_book
    taught_reset: dict[int, int]  # retrain id -> the taught-since-retrain count it reset
    removals: Removals  # files and cached features a commit made unused (bot.db.removals)

    def sessions(self) -> AsyncSession:
        """A new session."""
        ...

    def lock(self, scope_id: int) -> asyncio.Lock:
        """Serialises the quota-checked writes of one scope in this process."""
        ...

    def taught_recorded(self, scope_id: int) -> None:
        """A new taught image of ``scope_id`` was committed (tells the listeners)."""
        ...
