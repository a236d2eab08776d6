"""Prometheus metrics of the dashboard's requests (``prometheus-client``).

In the bot's process pass the bot's registry (``bot.metrics.registry``) and they appear on
its ``/metrics``; the dashboard's own process has its own registry, served on
``HTTP_HOST:HTTP_PORT/metrics``. Labels are bounded: the route is the route's template
(``/servers/{guild_id}``, never the id), the method one of a fixed set.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

PREFIX = "classifier_bot_dashboard"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LOGIN_OUTCOMES = ("ok", "denied", "state_mismatch", "refused", "discord_unavailable")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DashboardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Dashboard requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            f"{PREFIX}_request_seconds",
            "Time to answer a dashboard request, by route template",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.logins = Counter(
            f"{PREFIX}_logins", "Logins with Discord by outcome", ["outcome"], registry=r
        )

    @staticmethod
    def route_of(request: web.Request) -> str:
        resource = request.match_info.route.resource
        return resource.canonical if resource is not None else "unmatched"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = self.route_of(request)
            method = request.method if request.method in METHODS else "other"
            self.requests.labels(route, method, str(status)).inc()
            self.seconds.labels(route).observe(time.perf_counter() - started)
