"""Data lifecycle: ``/forget label|mine|all``, and what happens to a server's data when
the bot leaves it (kept ``GUILD_DATA_RETENTION_DAYS``, then purged in the background,
with the answers past the feedback window).

Owns ``DataCog`` (``_cog.py``) and forgetting one taught image (``_images.py``:
:func:`forget_taught_image`, the dashboard's Delete).
"""

from __future__ import annotations

from bot.cogs.data._cog import DataCog
from bot.cogs.data._images import ImageNotForgotten, forget_taught_image
from bot.core.client import ClassifierBot

__all__ = ["DataCog", "ImageNotForgotten", "forget_taught_image", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(DataCog(bot))
