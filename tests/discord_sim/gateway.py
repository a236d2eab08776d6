"""The simulated gateway: one websocket session per connected bot (JSON text frames, no zlib)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from tests.discord_sim.model import INTENT_MESSAGE_CONTENT, Application

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator

log = logging.getLogger("discord_sim.gateway")

HELLO, IDENTIFY, HEARTBEAT, HEARTBEAT_ACK, RESUME, INVALID_SESSION = 10, 2, 1, 11, 6, 9
REQUEST_MEMBERS = 8
SIM_KEY: web.AppKey[DiscordSimulator] = web.AppKey("sim")


class GatewaySession:
    def __init__(self, sim: DiscordSimulator, ws: web.WebSocketResponse) -> None:
        self.sim = sim
        self.ws = ws
        self.app: Application | None = None
        self.intents = 0
        self.seq = 0
        self.ready = False
        self.session_id = uuid.uuid4().hex
        self.close_code: int | None = None
        self.shard_id, self.shard_count = 0, 1  # from IDENTIFY's "shard": [id, count]
        self._send_lock = asyncio.Lock()

    def owns(self, guild_id: int | None) -> bool:
        """Discord's routing: a server's events go to shard ``(guild_id >> 22) % count``;
        DMs to shard 0."""
        if guild_id is None:
            return self.shard_id == 0
        return (guild_id >> 22) % self.shard_count == self.shard_id

    @property
    def message_content(self) -> bool:
        return bool(self.intents & INTENT_MESSAGE_CONTENT)

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        async with self._send_lock:
            self.seq += 1
            if not self.ws.closed:
                await self.ws.send_str(json.dumps({"op": 0, "t": event, "s": self.seq, "d": data}))

    async def close(self, code: int, reason: str) -> None:
        self.close_code = code
        await self.ws.close(code=code, message=reason.encode())

    async def run(self) -> None:
        await self.send({"op": HELLO, "d": {"heartbeat_interval": 41250}})
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op, data = payload.get("op"), payload.get("d")
            if op == HEARTBEAT:
                await self.send({"op": HEARTBEAT_ACK})
            elif op == IDENTIFY:
                await self._identify(data)
            elif op == RESUME:
                await self.send({"op": INVALID_SESSION, "d": False})
            elif op == REQUEST_MEMBERS:
                await self._members_chunk(data)
        self.close_code = self.close_code or self.ws.close_code

    async def _identify(self, data: dict[str, Any]) -> None:
        sim = self.sim
        app = sim.apps_by_token.get(str(data.get("token", "")))
        if app is None:
            await self.close(4004, "Authentication failed.")
            return
        self.intents = int(data.get("intents", 0))
        shard = data.get("shard") or [0, 1]
        shard_id, shard_count = int(shard[0]), int(shard[1])
        if not 0 <= shard_id < shard_count:
            await self.close(4010, "Invalid shard.")
            return
        self.shard_id, self.shard_count = shard_id, shard_count
        if self.message_content and not app.message_content_allowed:
            await self.close(4014, "Disallowed intent(s).")
            return
        self.app = app
        host = f"ws://127.0.0.1:{sim.port}/gateway"
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": app.user.payload(),
                "guilds": [
                    {"id": str(g.id), "unavailable": True}
                    for g in sim.guilds.values()
                    if app.user.id in g.members and self.owns(g.id)
                ],
                "session_id": self.session_id,
                "resume_gateway_url": host,
                "application": {"id": str(app.id), "flags": 0},
                "shard": [self.shard_id, self.shard_count],
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild in sim.guilds.values():
            if app.user.id in guild.members and self.owns(guild.id):  # its own servers
                await self.dispatch("GUILD_CREATE", guild.payload(sim.users))
        self.ready = True
        sim.notify()

    async def _members_chunk(self, data: dict[str, Any]) -> None:
        guild = self.sim.guilds.get(int(data["guild_id"]))
        if guild is None:
            return
        members = [guild.member_payload(self.sim.users[u]) for u in guild.members]
        await self.dispatch(
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(guild.id),
                "members": members,
                "chunk_index": 0,
                "chunk_count": 1,
                "nonce": data.get("nonce"),
            },
        )


async def gateway_handler(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if sim.gateway_down:  # an outage: the upgrade is refused until it ends
        sim.gateway_refusals += 1
        sim.notify()
        return web.Response(status=503, text="gateway unavailable")
    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    session = GatewaySession(sim, ws)
    sim.sessions.append(session)
    try:
        await session.run()
    finally:
        with contextlib.suppress(ValueError):
            sim.sessions.remove(session)
        sim.closed_sessions.append(session)
        sim.notify()
    return ws
