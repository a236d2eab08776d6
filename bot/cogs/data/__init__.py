"""Data lifecycle: ``/forget label|mine|all``, and what happens to a server's data when
the bot leaves it (kept ``GUILD_DATA_RETENTION_DAYS``, then purged in the background,
with the answers past the feedback window).

Owns ``DataCog`` (``_cog.py``). Nothing here is meant for other features.
"""

from __future__ import annotations

from bot.cogs.data._cog import DataCog
from bot.core.client import ClassifierBot

__all__ = ["DataCog", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(DataCog(bot))
