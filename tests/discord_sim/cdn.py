"""The CDN: attachments behind signed, expiring URLs, and redirects to other hosts."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from aiohttp import web

from tests.discord_sim.validation import sign_path

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator


class CdnRoutes:
    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn_get),
            web.get("/redirect/{attachment_id}", self.cdn_redirect),
        ]

    async def cdn_get(self, request: web.Request) -> web.StreamResponse:
        sim = self.sim
        sim.cdn_requests.append((request.host, request.path))
        aid = int(request.match_info["attachment_id"])
        stored = sim.cdn_files.get(aid)
        ex = request.query.get("ex", "")
        expected = sign_path(request.path, int(ex, 16)) if ex else ""
        sig_ok = ex and hmac.compare_digest(expected.split("hm=")[1], request.query.get("hm", ""))
        if stored is None or not sig_ok:
            return web.Response(status=404, text="Not found")
        if int(ex, 16) < time.time():
            return web.Response(status=404, text="This content is no longer available.")
        headers = {"Content-Type": stored.content_type or "application/octet-stream"}
        if not stored.chunked:
            return web.Response(body=stored.data, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for i in range(0, len(stored.data), 64 * 1024):
                await resp.write(stored.data[i : i + 64 * 1024])
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            sim.cdn_aborted += 1
        return resp

    async def cdn_redirect(self, request: web.Request) -> web.StreamResponse:
        self.sim.cdn_requests.append((request.host, request.path))
        target = self.sim.redirects.get(request.match_info["attachment_id"])
        if target is None:
            return web.Response(status=404)
        raise web.HTTPFound(target)
