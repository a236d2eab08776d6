"""What every dashboard response carries, and what every state-changing request must prove.

Headers: a strict Content-Security-Policy (scripts, styles and fonts from the dashboard
only; no inline script; ``frame-ancestors 'none'``; forms post to the dashboard only),
``Referrer-Policy: no-referrer``, ``X-Content-Type-Options: nosniff``, no caching of pages
(they show a member's servers), HSTS over https.

CSRF: every request that is not GET/HEAD/OPTIONS needs a live session and its CSRF token,
in the ``X-CSRF-Token`` header or as the form field ``csrf_token`` (for a multipart form,
its first field: the reader is left in ``request[MULTIPART]`` for the handler). It must
also come from the dashboard's own origin: ``Origin`` when the browser sends one; with
``no-referrer`` Chromium sends ``Origin: null`` on same-origin forms, so then the
browser's ``Sec-Fetch-Site: same-origin`` (which pages cannot forge) must say so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import BodyPartReader, MultipartReader, web

from bot.dashboard.config import DashboardConfig
from bot.dashboard.sessions import Session, SessionCookies, same_secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION: web.RequestKey[Session] = web.RequestKey("dashboard_session")
MULTIPART: web.RequestKey[MultipartReader] = web.RequestKey("dashboard_multipart")
STATIC_PREFIX = "/static/"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: https://cdn.discordapp.com",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)


class CsrfRefused(web.HTTPForbidden):
    def __init__(self, why: str) -> None:
        super().__init__(text=why)


def security_headers(config: DashboardConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    headers = {
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    }
    if config.secure:
        headers["Strict-Transport-Security"] = "max-age=31536000"

    def apply(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)
        static = request.path.startswith(config.base_path + STATIC_PREFIX)
        if static:
            response.headers["Cache-Control"] = "public, max-age=3600"
        else:  # pages are never cached; an image route may allow the member's browser to
            response.headers.setdefault("Cache-Control", "no-store")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            apply(request, exc)
            raise
        apply(request, response)
        return response

    return middleware


def same_origin(request: web.Request, expected_origin: str) -> bool:
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin == expected_origin
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


def csrf_protection(
    config: DashboardConfig, cookies: SessionCookies
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        if not same_origin(request, config.origin):
            raise CsrfRefused("This request did not come from the dashboard's own pages.")
        session = cookies.read(request)
        if session is None:
            raise CsrfRefused("Your session has expired. Please log in again.")
        if not same_secret(await _submitted_token(request), session.csrf_token):
            raise CsrfRefused(
                "This form has expired or did not come from the dashboard. "
                "Reload the page and try again."
            )
        request[SESSION] = session
        return await handler(request)

    return middleware


async def _submitted_token(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    if request.content_type == "multipart/form-data":
        reader = await request.multipart()
        request[MULTIPART] = reader
        part = await reader.next()
        if isinstance(part, BodyPartReader) and part.name == CSRF_FIELD:
            raw = await part.read_chunk(256)
            return raw.decode("ascii", "replace").strip()
    return None
