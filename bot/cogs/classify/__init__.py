"""Classify: ``/classify`` and the "Classify image" message menu, and how an answer looks.

Owns ``ClassifyCog`` (``_cog.py``) and the answer presentation (``_answers.py``). Other
features may use :func:`answer_embeds` and :func:`low_confidence_of` (the auto-replies
answer in watched channels with the same embeds and threshold).
"""

from __future__ import annotations

from bot.cogs.classify._answers import answer_embeds, low_confidence_of
from bot.cogs.classify._cog import ClassifyCog
from bot.core.client import ClassifierBot

__all__ = ["ClassifyCog", "answer_embeds", "low_confidence_of", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(ClassifyCog(bot))
