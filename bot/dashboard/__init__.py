"""The web dashboard for server admins and trainers (issue 23): login with Discord, the
member's servers, and each server's pages; see ``app.create_dashboard_app``."""

from bot.dashboard.app import create_dashboard_app
from bot.dashboard.config import DashboardConfig, DashboardNotConfigured

__all__ = ["DashboardConfig", "DashboardNotConfigured", "create_dashboard_app"]
