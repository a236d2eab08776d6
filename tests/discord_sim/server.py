"""The simulated Discord's HTTP side: every route, and the middleware in front of them.

The middleware records each request, applies simulated rate limits and faults, and refuses
what Discord's OpenAPI spec refuses; the routes themselves live by subject:
``rest_application`` (the application, the gateway, commands), ``rest_users`` (who is
calling, their servers, a server's member), ``rest_interactions``, ``rest_messages``
(channels, messages, reactions, emojis), ``oauth2`` (the consent page and the token
endpoint; bearer tokens) and ``cdn`` (attachments).
Errors use Discord's JSON error shape (``{"code", "message"}``) and status codes, so
discord.py raises the same exceptions it would against Discord.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.discord_sim.cdn import CdnRoutes
from tests.discord_sim.oauth2 import bearer_grant
from tests.discord_sim.openapi import SpecViolation, load_spec
from tests.discord_sim.rest_application import ApplicationRoutes
from tests.discord_sim.rest_interactions import InteractionRoutes
from tests.discord_sim.rest_messages import MessageRoutes
from tests.discord_sim.rest_users import UserRoutes
from tests.discord_sim.validation import BODY, DiscordError, json_response, parse_body

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator

API_PREFIX = "/api/v{v}"


class RestApi:
    """The routes and the middleware; state lives in the :class:`DiscordSimulator`."""

    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        sim, p = self.sim, API_PREFIX
        return [
            *ApplicationRoutes(sim).routes(p),
            *UserRoutes(sim).routes(p),
            *InteractionRoutes(sim).routes(p),
            *MessageRoutes(sim).routes(p),
            *sim.oauth2.routes(),
            *CdnRoutes(sim).routes(),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request["received_at"] = time.monotonic()
        sim = self.sim
        sim.requests.append((request.method, request.path, request.host))
        if request.path.startswith("/api/"):
            limited = sim.take_rate_limit(request.method, request.path)
            if limited is not None:
                retry_after, via = limited
                sim.rate_limited.append((request.method, request.path))
                sim.notify()
                headers = {"Via": "1.1 google"} if via else {}
                headers.update(
                    {
                        "X-RateLimit-Limit": "5",
                        "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset-After": str(retry_after),
                        "X-RateLimit-Scope": "user",
                    }
                )
                return json_response(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": retry_after,
                        "global": False,
                    },
                    status=429,
                    headers=headers,
                )
        try:
            if request.path.startswith("/api/"):
                await self.check_against_spec(request)
                fault = sim.take_fault(request.method, request.path)
                if fault is not None and fault[0] == "hang":
                    await sim.hang(request.method, request.path)
                    return web.Response(status=504)  # only once the simulator stops
                if fault is not None:
                    raise DiscordError(fault[1], fault[2], "Simulated failure")
                raw = sim.take_raw_answer(request.method, request.path)
                if raw is not None:
                    return raw
                return sim.mangle(request.method, request.path, await handler(request))
            return await handler(request)
        except DiscordError as exc:
            body: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.errors is not None:
                body["errors"] = exc.errors
            sim.rejected.append((request.method, request.path, exc.status, body))
            sim.notify()
            return json_response(body, status=exc.status)
        except web.HTTPNotFound:
            sim.rejected.append((request.method, request.path, 404, {"code": 0}))
            return json_response({"code": 0, "message": "404: Not Found"}, status=404)

    async def check_against_spec(self, request: web.Request) -> None:
        """Parse the body once (kept in ``request[BODY]``) and refuse, as Discord would, a
        route, body or bearer token that Discord's OpenAPI spec does not allow.

        The OAuth2 flow's own URLs (the spec's ``securitySchemes``) take forms, which their
        handlers check (``oauth2``)."""
        spec = load_spec()
        if request.path in (spec.authorize_path, spec.token_path):
            return
        raw = await request.read()
        payload, files = parse_body(request.content_type, request.headers, raw)
        request[BODY] = (payload, files)
        api_path = re.sub(r"^/api/v10(?=/)", "", request.path)
        if api_path == request.path:
            violation = SpecViolation(request.method, request.path, 404, 0, "404: Not Found")
        else:
            kind = (
                "multipart/form-data"
                if files or request.content_type.startswith("multipart/")
                else "application/json"
            )
            violation = spec.check(
                request.method, api_path, dict(request.query), kind, payload, bool(raw)
            )
        if violation is not None:
            self.sim.spec_violations.append(violation)
            raise DiscordError(
                violation.status, violation.code, violation.message, violation.error_body()
            )
        bearer_grant(self.sim, request, api_path)
