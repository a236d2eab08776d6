"""``python -m bot.dashboard``: the dashboard in its own process.

It reads the bot's settings (``.env``), opens the bot's database (run it beside the bot on
PostgreSQL; SQLite allows one writer at a time), serves the dashboard on
``DASHBOARD_HOST:DASHBOARD_PORT`` and, when ``HTTP_PORT`` is set, its metrics on
``HTTP_HOST:HTTP_PORT/metrics``. Exit codes as the bot's: 2 configuration, 5 database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bot.__main__ import EXIT_BACKEND, EXIT_CONFIG, EXIT_OK, load_settings
from bot.core.logconfig import setup_logging
from bot.core.settings import Settings
from bot.dashboard.app import create_dashboard_app
from bot.dashboard.config import DashboardConfig, DashboardNotConfigured
from bot.db import DatabaseError, open_store

log = logging.getLogger("bot.dashboard")


async def serve(settings: Settings, config: DashboardConfig) -> int:
    try:
        store = await open_store(settings)
    except DatabaseError as exc:
        log.error("The database could not be opened: %s", exc)
        return EXIT_BACKEND
    runners: list[web.AppRunner] = []
    try:
        registry = CollectorRegistry(auto_describe=True)
        app = create_dashboard_app(config, store, registry=registry)
        sites = [(app, settings.dashboard_host, settings.dashboard_port)]
        if settings.http_port is not None:
            sites.append((metrics_app(registry), settings.http_host, settings.http_port))
        for served, host, port in sites:
            runner = web.AppRunner(served, access_log=None)
            await runner.setup()
            runners.append(runner)
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                log.error("%s:%d cannot be bound: %s", host, port, exc.strerror or exc)
                return EXIT_CONFIG
        log.info(
            "dashboard on http://%s:%d/ (public address %s)",
            settings.dashboard_host,
            settings.dashboard_port,
            config.public_url,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return EXIT_OK
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await store.close()


def metrics_app(registry: CollectorRegistry) -> web.Application:
    """``/metrics`` of this process (bind it to loopback, as the bot's)."""

    async def render(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.add_routes([web.get("/metrics", render)])
    return app


def main() -> int:
    loaded = load_settings()
    if isinstance(loaded, int):
        return loaded
    settings = loaded
    setup_logging(settings.log_level, settings.secret_values(), settings.log_format)
    try:
        config = DashboardConfig.from_settings(settings)
    except DashboardNotConfigured as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    try:
        return asyncio.run(serve(settings, config))
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
