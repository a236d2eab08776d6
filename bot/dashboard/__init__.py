"""The web dashboard for server admins and trainers (issue 23): login with Discord, the
member's servers, and each server's labels, uploads, review queue, models, settings and
rules.

It is a feature of the bot's process, loaded by name like the others
(``bot.core.client.EXTENSIONS``): :func:`setup` serves it (``serving.DashboardCog``) when
``DASHBOARD_PUBLIC_URL`` is set, and does nothing otherwise. Every action goes through the
features' own functions (teaching, review decisions, retrain, rollback, settings, rules),
so the dashboard and the commands share one code path for quotas, permissions and data.
"""

from __future__ import annotations

from bot.core.client import ClassifierBot
from bot.dashboard.app import create_dashboard_app
from bot.dashboard.config import DashboardConfig, DashboardNotConfigured
from bot.dashboard.serving import DashboardCog, DashboardFailed

__all__ = [
    "DashboardCog",
    "DashboardConfig",
    "DashboardFailed",
    "DashboardNotConfigured",
    "create_dashboard_app",
    "setup",
]


async def setup(bot: ClassifierBot) -> None:
    if bot.settings.dashboard_public_url is None:
        return  # no dashboard
    await bot.add_cog(DashboardCog(bot, DashboardConfig.from_settings(bot.settings)))
