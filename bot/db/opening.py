"""Opening the database the bot runs on: ``open_store(settings)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.db.quotas import Quotas
from bot.db.store import Store

if TYPE_CHECKING:
    from bot.core.settings import Settings


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
