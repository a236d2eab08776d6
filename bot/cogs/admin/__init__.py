"""Admin: ``/retrain``, ``/status``, ``/settings``, ``/model rollback`` and the optional
auto-retrain.

Owns ``AdminCog`` (``_cog.py``), ``AutoRetrainCog`` (``_auto_retrain.py``: after N new
taught images, and once after start for models this version cannot use), the public
message of a retrain (``_retrain_message.py``), the embeds of /status (``_status.py``) and
the options of /settings (``_server_settings.py``). Both retrain paths take the shared
``bot.core.retraining.Retrainer``. Nothing here is meant for other features.
"""

from __future__ import annotations

from bot.cogs.admin._auto_retrain import AutoRetrainCog
from bot.cogs.admin._cog import AdminCog
from bot.core.client import ClassifierBot

__all__ = ["AdminCog", "AutoRetrainCog", "setup"]


async def setup(bot: ClassifierBot) -> None:
    auto_retrain = AutoRetrainCog(bot)
    await bot.add_cog(auto_retrain)
    await bot.add_cog(AdminCog(bot, auto_retrain))
