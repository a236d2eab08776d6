"""The bot's database (SQLAlchemy 2 async + Alembic) and the files its rows name.

``open_store(settings)`` connects, migrates, imports the old JSON state once and checks
that the database and the data folder belong together (``bot.db.repair``: it refuses with
:class:`DataMismatch`, and never deletes); then ``store.guild(id)`` is the only way to a
server's data.
"""

from __future__ import annotations

from bot.db.engine import DatabaseError, DatabaseTooNew, DataMismatch
from bot.db.guild_data import ScopedData, StoreWriteError
from bot.db.opening import open_store, quotas_from
from bot.db.quotas import QuotaExceeded, Quotas, Usage
from bot.db.records import (
    ANY_LABEL,
    AnswerRecord,
    Forgotten,
    GuildSettings,
    LabelRule,
    ModelRecord,
    RetrainRecord,
    ReviewItem,
    RuleAction,
    ServerOptions,
    Tally,
    TaughtRecord,
)
from bot.db.schema import DEFAULT_SCOPE
from bot.db.store import OperatorData, Store

__all__ = [
    "ANY_LABEL",
    "DEFAULT_SCOPE",
    "AnswerRecord",
    "DataMismatch",
    "DatabaseError",
    "DatabaseTooNew",
    "Forgotten",
    "GuildSettings",
    "LabelRule",
    "ModelRecord",
    "OperatorData",
    "QuotaExceeded",
    "Quotas",
    "RetrainRecord",
    "ReviewItem",
    "RuleAction",
    "ScopedData",
    "ServerOptions",
    "Store",
    "StoreWriteError",
    "Tally",
    "TaughtRecord",
    "Usage",
    "open_store",
    "quotas_from",
]
