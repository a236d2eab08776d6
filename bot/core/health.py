"""The optional HTTP endpoint for operators: ``/healthz``, ``/readyz`` and ``/metrics``.

Off unless ``HTTP_PORT`` is set; binds ``HTTP_HOST`` (loopback by default). Served by the
aiohttp the bot already has.

- ``/healthz``: 200 while the process runs its event loop.
- ``/readyz``: 200 when the gateway is connected and the backend can classify; otherwise
  503 with the reason (``starting``, ``shutting down``, ``gateway disconnected``,
  ``backend not ready: ...``), as JSON ``{"ready": false, "reasons": [...]}``.
- ``/metrics``: Prometheus text format (``bot.core.metrics``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.core.metrics import BotMetrics, Gateway
from golem_backend import Backend, BackendStatus

log = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 5.0  # a backend that cannot say how it is, is not ready


class ListenerFailed(Exception):
    """An HTTP listener of the bot cannot be bound (port in use, address not local...):
    the ops endpoint, or the dashboard. The message names the settings to change."""


class HealthEndpointFailed(ListenerFailed):
    """``HTTP_HOST``/``HTTP_PORT`` cannot be bound."""


class Served(Gateway, Protocol):
    """What the endpoint reads of the bot (``ClassifierBot`` is one)."""

    backend: Backend
    metrics: BotMetrics

    @property
    def is_closing(self) -> bool: ...

    @property
    def gateway_connected(self) -> bool: ...

    @property
    def was_connected(self) -> bool: ...


class HealthServer:
    def __init__(self, bot: Served, host: str, port: int) -> None:
        self.bot = bot
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            where = f"HTTP_HOST={self.host} HTTP_PORT={self.port}"
            raise HealthEndpointFailed(f"{where} cannot be bound: {exc.strerror or exc}") from exc
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("health and metrics on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def backend_status(self) -> tuple[BackendStatus | None, str | None]:
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                return await self.bot.backend.status(), None
        except Exception as exc:
            return None, f"backend status failed: {type(exc).__name__}: {exc}"

    async def not_ready_reasons(self) -> list[str]:
        bot = self.bot
        reasons = []
        if bot.is_closing:
            reasons.append("shutting down")
        elif not bot.gateway_connected:
            reasons.append("gateway disconnected" if bot.was_connected else "starting")
        status, error = await self.backend_status()
        if error is not None:
            reasons.append(error)
        elif status is not None and not status.ready:
            reasons.append(f"backend not ready: {status.detail or status.kind}")
        return reasons

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = await self.not_ready_reasons()
        if reasons:
            return web.json_response({"ready": False, "reasons": reasons}, status=503)
        return web.json_response({"ready": True})

    async def metrics(self, request: web.Request) -> web.Response:
        status, _ = await self.backend_status()
        self.bot.metrics.update_from(self.bot, status)
        return web.Response(
            body=self.bot.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
