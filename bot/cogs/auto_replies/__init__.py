"""Auto-replies: images posted in watched channels get an answer, or what the server's
rules say (``bot.cogs.rules``); ``/autoclassify on|off`` watches a channel.

Owns ``AutoClassifyCog`` (``_cog.py``: the command, the ``on_message`` listener, which
classifies through the door like every path, the per-member "too fast" or "busy" warnings
and claiming channels watched in the old JSON state) and each channel's replies in the
posting order (``_order.py``).
Nothing here is meant for other features.
"""

from __future__ import annotations

from bot.cogs.auto_replies._cog import AutoClassifyCog
from bot.core.client import ClassifierBot

__all__ = ["AutoClassifyCog", "setup"]


async def setup(bot: ClassifierBot) -> None:
    await bot.add_cog(AutoClassifyCog(bot))
