"""The bot's database (SQLAlchemy 2 async + Alembic) and the files its rows name.

``open_store(settings)`` connects, migrates, imports the old JSON state once and checks
that the database and the data folder belong together (``bot.db.repair``: it refuses with
:class:`DataMismatch`, and never deletes); then ``store.guild(id)`` is the only way to a
server's data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.db.engine import DatabaseError, DatabaseTooNew, DataMismatch
from bot.db.guild_data import ScopedData, StoreWriteError
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

if TYPE_CHECKING:
    from bot.settings import Settings

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


def quotas_from(settings: Settings) -> Quotas:
    return Quotas(
        max_labels=settings.guild_max_labels,
        max_images=settings.guild_max_taught_images,
        max_bytes=settings.guild_max_taught_bytes,
        retrains_per_hour=settings.guild_max_retrains_per_hour,
        feedback_images=settings.feedback_images_kept,
        feedback_hours=settings.feedback_window_hours,
        review_items=settings.review_queue_max,
        review_per_member=settings.review_max_per_member,
    )


async def open_store(settings: Settings) -> Store:
    """Connect, migrate, import ``bot-state.json`` once, check the data folder;
    :class:`DatabaseError` (:class:`DataMismatch`: the start must be refused)."""
    from bot.db.legacy import import_json_state
    from bot.db.repair import check_at_start
    from golem_backend.feature_cache import cache_evictor

    store = Store(settings.database_url_value, settings.data_dir, quotas_from(settings))
    store.evict_features = cache_evictor(settings.cache_path)
    await store.open()
    try:
        await import_json_state(store, settings.state_path)
        await check_at_start(store)
    except BaseException:
        await store.close()
        raise
    return store
