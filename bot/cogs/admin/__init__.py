"""Admin: ``/retrain``, ``/status``, ``/settings``, ``/model rollback`` and the optional
auto-retrain.

Owns ``AdminCog`` (``_cog.py``), ``AutoRetrainCog`` (``_auto_retrain.py``: after N new
taught images, and once after start for models this version cannot use), the public
message of a retrain (``_retrain_message.py``), the embeds of /status (``_status.py``) and
the options of /settings (``_server_settings.py``) and retraining or rolling back a
server's model (``_server_model.py``: :func:`run_retrain`, the one way a retrain runs, on
the shared ``bot.core.retraining.Retrainer``).

The dashboard uses :func:`run_retrain` (with :class:`RetrainRunning`, :func:`failure_reason`),
:func:`rollback_model` / :func:`rollback_text`, and :func:`change_settings` with a
:class:`SettingsChange` (:class:`InvalidSetting`), the functions the commands use.
"""

from __future__ import annotations

from bot.cogs.admin._auto_retrain import AutoRetrainCog
from bot.cogs.admin._cog import AdminCog
from bot.cogs.admin._server_model import (
    RetrainRunning,
    failure_reason,
    rollback_model,
    rollback_text,
    run_retrain,
)
from bot.cogs.admin._server_settings import (
    AUTO_RETRAIN_MAX,
    InvalidSetting,
    SettingsChange,
    change_settings,
)
from bot.core.client import ClassifierBot

__all__ = [
    "AUTO_RETRAIN_MAX",
    "AdminCog",
    "AutoRetrainCog",
    "InvalidSetting",
    "RetrainRunning",
    "SettingsChange",
    "change_settings",
    "failure_reason",
    "rollback_model",
    "rollback_text",
    "run_retrain",
    "setup",
]


async def setup(bot: ClassifierBot) -> None:
    auto_retrain = AutoRetrainCog(bot)
    await bot.add_cog(auto_retrain)
    await bot.add_cog(AdminCog(bot, auto_retrain))
