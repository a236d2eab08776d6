"""Labels: ``/labels`` (each label's taught images and its recall from the last retrain,
in pages) and ``/label rename|remove``.

Owns ``LabelsCog`` (``_cog.py``, with the confirmation of a removal) and the pages of
/labels (``_pages.py``). Nothing here is meant for other features.
"""

from __future__ import annotations

from bot.cogs.labels._cog import LabelsCog
from bot.core.client import ClassifierBot

__all__ = ["LabelsCog", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(LabelsCog(bot))
