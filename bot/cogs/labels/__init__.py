"""Labels: ``/labels`` (each label's taught images and its recall from the last retrain,
in pages) and ``/label rename|remove``.

Owns ``LabelsCog`` (``_cog.py``, with the confirmation of a removal), the pages of
/labels (``_pages.py``) and what they show (``_overview.py``). The dashboard's labels page
reads :func:`label_overview` too (a :class:`LabelOverview` of :class:`LabelLine`).
"""

from __future__ import annotations

from bot.cogs.labels._cog import LabelsCog
from bot.cogs.labels._overview import LabelOverview, label_overview
from bot.cogs.labels._pages import LabelLine
from bot.core.client import ClassifierBot

__all__ = ["LabelLine", "LabelOverview", "LabelsCog", "label_overview", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(LabelsCog(bot))
