"""The dashboard inside the bot's process, on its own listener.

``DASHBOARD_HOST:DASHBOARD_PORT`` (loopback:8081 by default, beside the container's
HTTP_PORT 8080; a TLS reverse proxy in front makes it reachable as
``DASHBOARD_PUBLIC_URL``, whose path it serves under, so the proxy passes paths
unchanged), separate from the ops endpoint (``HTTP_HOST:HTTP_PORT``, ``/metrics``, which
stays on loopback for the operator). The listener starts when the extension loads (after
the database is open and the backend has started) and stops when the bot closes, after
in-flight work drained: a port that cannot be bound stops the bot with exit code 2, as
``HTTP_PORT`` does.
"""

from __future__ import annotations

import logging

from aiohttp import web
from discord.ext import commands

from bot.core.client import ClassifierBot
from bot.core.health import ListenerFailed
from bot.dashboard.app import create_dashboard_app
from bot.dashboard.config import DashboardConfig

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0


class DashboardFailed(ListenerFailed):
    """``DASHBOARD_HOST:DASHBOARD_PORT`` cannot be bound."""


class DashboardCog(commands.Cog):
    def __init__(self, bot: ClassifierBot, config: DashboardConfig) -> None:
        self.bot = bot
        self.config = config
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None  # the dashboard (under its path, if any)
        self.port: int | None = None  # the bound port (DASHBOARD_PORT, or the one given for 0)

    async def cog_load(self) -> None:
        settings = self.bot.settings
        host, port = settings.dashboard_host, settings.dashboard_port
        served = create_dashboard_app(self.config, self.bot)
        self.app = served
        if self.config.base_path:  # DASHBOARD_PUBLIC_URL has a path: serve under it
            root = web.Application()
            root.add_subapp(self.config.base_path + "/", served)
            served = root
        runner = web.AppRunner(served, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise DashboardFailed(
                f"DASHBOARD_HOST={host} DASHBOARD_PORT={port} cannot be bound: "
                f"{exc.strerror or exc}. Choose another port, or unset DASHBOARD_PUBLIC_URL "
                "to run without the dashboard."
            ) from exc
        self.runner = runner
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info(
            "dashboard on http://%s:%d/ (public address %s)",
            host,
            self.port,
            self.config.public_url,
        )

    async def cog_unload(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
