"""Sharding: ``SHARD_COUNT``/``SHARD_IDS`` run the bot as an ``AutoShardedBot``.

discord.py recommends sharding past about 1,000 servers and Discord requires it at 2,500.
Discord sends a server's events to shard ``(guild_id >> 22) % SHARD_COUNT``, so several
processes, each running some of the shards (``SHARD_IDS``), share the servers without
overlap; whatever they must agree on lives in the shared store.
"""

from __future__ import annotations

from discord.ext import commands

from bot.core.client import ClassifierBot
from bot.core.settings import Settings
from golem_backend import Backend


class ShardedClassifierBot(ClassifierBot, commands.AutoShardedBot):
    """The same bot on ``AutoShardedBot``'s connections (one websocket per shard)."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        super().__init__(
            settings,
            backend,
            shard_count=settings.shard_count,
            shard_ids=settings.shard_ids or None,  # None: every shard of SHARD_COUNT
        )


def create_bot(settings: Settings, backend: Backend | None = None) -> ClassifierBot:
    """A plain bot (one connection), or a sharded one when ``SHARD_COUNT`` is set."""
    if settings.sharded:
        return ShardedClassifierBot(settings, backend)
    return ClassifierBot(settings, backend)
