"""REST routes and the CDN of the simulated Discord (aiohttp).

Errors use Discord's JSON error shape (``{"code", "message"}``) and status codes, so
discord.py raises the same exceptions it would against Discord.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.discord_sim.components import validate_choices, validate_modal
from tests.discord_sim.model import (
    ADD_REACTIONS,
    ATTACH_FILES,
    EPHEMERAL,
    LOADING,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Application,
    Attachment,
    Command,
    Message,
    snowflake,
)
from tests.discord_sim.openapi import SpecViolation, load_spec
from tests.discord_sim.validation import (
    BODY,
    DiscordError,
    json_response,
    parse_body,
    sign_path,
    validate_message,
)

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator, Interaction

#: the callback types Discord accepts for each interaction type
CALLBACKS = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}, 5: {4, 5, 6, 7}}


def check_callback_type(ix: Interaction, rtype: int) -> None:
    """Refuse a callback type Discord does not allow for this interaction (e.g. a modal in
    answer to a modal submit, updating a message a command has not got)."""
    allowed = CALLBACKS.get(ix.kind, set())
    if rtype in (6, 7) and ix.component_message is None:
        allowed = allowed - {6, 7}
    if rtype not in allowed:
        raise DiscordError(
            400, 50035, "Invalid Form Body", {"type": f"{rtype} is invalid for this interaction"}
        )


class RestApi:
    """Handlers for the REST routes; state lives in the :class:`DiscordSimulator`."""

    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self) -> list[web.RouteDef]:
        p = "/api/v{v}"
        wh = p + "/webhooks/{app_id}/{token}"
        return [
            web.get(p + "/users/@me", self.get_me),
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/gateway", self.get_gateway),
            web.get(p + "/gateway/bot", self.get_gateway),
            web.put(p + "/applications/{app_id}/commands", self.put_commands),
            web.put(p + "/applications/{app_id}/guilds/{guild_id}/commands", self.put_commands),
            web.get(p + "/applications/{app_id}/commands", self.get_commands),
            web.post(p + "/interactions/{ix_id}/{token}/callback", self.callback),
            web.post(wh, self.followup),
            web.get(wh + "/messages/{message_id}", self.webhook_message),
            web.patch(wh + "/messages/{message_id}", self.webhook_message),
            web.delete(wh + "/messages/{message_id}", self.webhook_message),
            web.post(p + "/channels/{channel_id}/messages", self.create_message),
            web.get(p + "/channels/{channel_id}/messages/{message_id}", self.channel_message),
            web.patch(p + "/channels/{channel_id}/messages/{message_id}", self.channel_message),
            web.delete(p + "/channels/{channel_id}/messages/{message_id}", self.channel_message),
            web.put(
                p + "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                self.add_reaction,
            ),
            web.get(p + "/guilds/{guild_id}/emojis/{emoji_id}", self.get_emoji),
            web.post(p + "/channels/{channel_id}/typing", self.typing),
            web.get("/attachments/{channel_id}/{attachment_id}/{filename}", self.cdn_get),
            web.get("/redirect/{attachment_id}", self.cdn_redirect),
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
        route or body that Discord's OpenAPI spec does not allow."""
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
            violation = load_spec().check(
                request.method, api_path, dict(request.query), kind, payload, bool(raw)
            )
        if violation is not None:
            self.sim.spec_violations.append(violation)
            raise DiscordError(
                violation.status, violation.code, violation.message, violation.error_body()
            )

    # --- auth & login ------------------------------------------------------------------
    def auth(self, request: web.Request) -> Application:
        header = request.headers.get("Authorization", "")
        app = self.sim.apps_by_token.get(header.removeprefix("Bot ")) if header else None
        if app is None:
            raise DiscordError(401, 0, "401: Unauthorized")
        return app

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response(self.auth(request).user.payload())

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(self.auth(request).payload())

    async def get_gateway(self, request: web.Request) -> web.Response:
        url = f"ws://127.0.0.1:{self.sim.port}/gateway"
        return json_response(
            {
                "url": url,
                "shards": self.sim.recommended_shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    # --- commands ----------------------------------------------------------------------
    async def put_commands(self, request: web.Request) -> web.Response:
        app = self.auth(request)
        if int(request.match_info["app_id"]) != app.id:
            raise DiscordError(403, 50001, "Missing Access")
        guild_id = int(request.match_info["guild_id"]) if "guild_id" in request.match_info else None
        if guild_id is not None and guild_id not in self.sim.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        body, _ = await self._read_body(request)
        table: dict[tuple[str, int], Command] = {}
        for data in body:
            ctype = int(data.get("type", 1))
            name = str(data.get("name", ""))
            pattern = r"^[-_\w]{1,32}$" if ctype == 1 else r"^.{1,32}$"
            if not re.match(pattern, name) or (ctype == 1 and name != name.lower()):
                raise DiscordError(400, 50035, "Invalid Form Body", {"name": "invalid"})
            if ctype == 1 and not 1 <= len(data.get("description", "")) <= 100:
                raise DiscordError(400, 50035, "Invalid Form Body", {"description": "1-100"})
            if data.get("default_member_permissions") is not None:  # a string on the wire
                data["default_member_permissions"] = str(data["default_member_permissions"])
            table[(name, ctype)] = Command(snowflake(), app.id, guild_id, data)
        if guild_id is None:
            app.global_commands = table
        else:
            app.guild_commands[guild_id] = table
        app.command_syncs += 1
        self.sim.notify()
        return json_response([c.payload() for c in table.values()])

    async def get_commands(self, request: web.Request) -> web.Response:
        app = self.auth(request)
        return json_response([c.payload() for c in app.global_commands.values()])

    # --- interactions ------------------------------------------------------------------
    async def callback(self, request: web.Request) -> web.Response:
        sim = self.sim
        ix = sim.interactions.get(int(request.match_info["ix_id"]))
        if ix is None or ix.token != request.match_info["token"]:
            raise DiscordError(404, 10062, "Unknown interaction")
        if ix.response_type is None and time.monotonic() - ix.created > sim.response_deadline_s:
            ix.late = True
            sim.notify()
            raise DiscordError(404, 10062, "Unknown interaction")
        if ix.response_type is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        ix.response_received_at = request.get("received_at")
        payload, files = await self._read_body(request)
        rtype = int(payload.get("type", 0))
        data = payload.get("data") or {}
        check_callback_type(ix, rtype)
        if rtype in (8, 9):
            if rtype == 8:
                ix.choices = validate_choices(data)
            else:
                validate_modal(data)
                ix.modal = data
            ix.response_type = rtype
            ix.responded_at = time.monotonic()
            sim.notify()
            return json_response({"interaction": {"id": str(ix.id), "type": ix.kind}})
        if rtype == 4:
            validate_message(data, len(files))
            flags = int(data.get("flags") or 0) & EPHEMERAL
        elif rtype == 5:
            flags = (int(data.get("flags") or 0) & EPHEMERAL) | LOADING
            data = {}
        else:  # 6 or 7: the message the component was on
            target = ix.component_message
            assert target is not None  # check_callback_type
            if rtype == 7:
                validate_message(data, len(files), edit=True)
                self._apply(target, data, files, replace=True)
            ix.response_type = rtype
            ix.responded_at = time.monotonic()
            ix.original = target
            sim.notify()
            return json_response(
                {
                    "interaction": {"id": str(ix.id), "type": ix.kind},
                    "resource": {"type": rtype, "message": target.payload()},
                }
            )
        if ix.ephemeral_only and not flags & EPHEMERAL:
            ix.forced_private += 1
            flags |= EPHEMERAL
        msg = Message(
            snowflake(), ix.channel_id, ix.guild_id, ix.app.user, flags=flags, interaction_id=ix.id
        )
        self._apply(msg, data, files)
        ix.response_type = rtype
        ix.responded_at = time.monotonic()
        ix.original = msg
        sim.notify()
        return json_response(
            {
                "interaction": {
                    "id": str(ix.id),
                    "type": ix.kind,
                    "response_message_id": str(msg.id),
                    "response_message_loading": msg.loading,
                    "response_message_ephemeral": msg.ephemeral,
                },
                "resource": {"type": rtype, "message": msg.payload()},
            }
        )

    def _interaction_for_webhook(self, request: web.Request) -> Interaction:
        ix = self.sim.interactions_by_token.get(request.match_info["token"])
        if ix is None or str(ix.app.id) != request.match_info["app_id"]:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if time.monotonic() - ix.created > self.sim.interaction_token_lifetime_s:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return ix

    async def followup(self, request: web.Request) -> web.Response:
        ix = self._interaction_for_webhook(request)
        if ix.response_type is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        payload, files = await self._read_body(request)
        validate_message(payload, len(files))
        original = ix.original
        if original is not None and original.loading and not original.deleted:
            # The first follow-up after a deferred response replaces the "thinking" message
            # and keeps its visibility (the follow-up's ephemeral flag is ignored).
            original.flags &= ~LOADING
            self._apply(original, payload, files, replace=True)
            msg = original
        else:
            flags = int(payload.get("flags") or 0) & EPHEMERAL
            if ix.ephemeral_only and not flags & EPHEMERAL:
                ix.forced_private += 1
                flags |= EPHEMERAL
            msg = Message(
                snowflake(),
                ix.channel_id,
                ix.guild_id,
                ix.app.user,
                flags=flags,
                interaction_id=ix.id,
            )
            self._apply(msg, payload, files)
            ix.followups.append(msg)
        self.sim.notify()
        if request.query.get("wait", "false").lower() not in ("true", "1"):
            return web.Response(status=204)
        return json_response(msg.payload())

    async def webhook_message(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction_for_webhook(request)
        mid = request.match_info["message_id"]
        if mid == "@original":
            msg = ix.original
        else:
            msg = next((m for m in ix.followups if str(m.id) == mid), None)
            if msg is None and ix.original is not None and str(ix.original.id) == mid:
                msg = ix.original
        if msg is None or msg.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            msg.deleted = True
            self.sim.notify()
            return web.Response(status=204)
        if request.method == "PATCH":
            payload, files = await self._read_body(request)
            validate_message(payload, len(files), edit=True)
            msg.flags &= ~LOADING
            self._apply(msg, payload, files, replace=True)
            self.sim.notify()
        return json_response(msg.payload())

    # --- channels ----------------------------------------------------------------------
    async def create_message(self, request: web.Request) -> web.Response:
        app = self.auth(request)
        sim = self.sim
        channel = sim.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        guild = sim.guilds[channel.guild_id]
        perms = guild.channel_permissions(app.user.id, channel)
        payload, files = await self._read_body(request)
        needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if files else 0)
        if perms & needed != needed:
            raise DiscordError(403, 50013, "Missing Permissions")
        validate_message(payload, len(files))
        ref = payload.get("message_reference")
        ref_id = int(ref["message_id"]) if ref else None
        if ref_id is not None and (ref_id not in sim.messages or sim.messages[ref_id].deleted):
            if ref.get("fail_if_not_exists", True):
                raise DiscordError(
                    400, 50035, "Invalid Form Body", {"message_reference": "Unknown message"}
                )
            ref_id = None  # sent as a plain message
        msg = Message(snowflake(), channel.id, guild.id, app.user, reference_id=ref_id)
        self._apply(msg, payload, files)
        await sim.publish_message(msg)
        return json_response(msg.payload())

    async def channel_message(self, request: web.Request) -> web.Response:
        app = self.auth(request)
        msg = self.sim.messages.get(int(request.match_info["message_id"]))
        if msg is None or msg.deleted or str(msg.channel_id) != request.match_info["channel_id"]:
            raise DiscordError(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(msg.payload())
        if request.method == "DELETE":
            # another user's message: Manage Messages in that channel, as on Discord
            if msg.author.id != app.user.id and not self._may(app, msg.channel_id, MANAGE_MESSAGES):
                raise DiscordError(403, 50013, "Missing Permissions")
            msg.deleted = True
            self.sim.notify()
            return web.Response(status=204)
        if msg.author.id != app.user.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        payload, files = await self._read_body(request)
        validate_message(payload, len(files), edit=True)
        self._apply(msg, payload, files, replace=True)
        self.sim.notify()
        return json_response(msg.payload())

    def _may(self, app: Application, channel_id: int, needed: int) -> bool:
        channel = self.sim.channels[channel_id]
        perms = self.sim.guilds[channel.guild_id].channel_permissions(app.user.id, channel)
        return perms & needed == needed

    async def add_reaction(self, request: web.Request) -> web.Response:
        """Read Message History and Add Reactions (for a new reaction) are needed; a
        custom emoji must be one of a server the bot is in (10014 Unknown Emoji)."""
        app = self.auth(request)
        msg = self.sim.messages.get(int(request.match_info["message_id"]))
        if msg is None or msg.deleted or str(msg.channel_id) != request.match_info["channel_id"]:
            raise DiscordError(404, 10008, "Unknown Message")
        emoji = request.match_info["emoji"]
        name, _, emoji_id = emoji.rpartition(":")
        if name:  # custom: name:id
            known = any(
                app.user.id in g.members and int(emoji_id) in g.emojis
                for g in self.sim.guilds.values()
                if emoji_id.isdigit()
            )
            if not known:
                raise DiscordError(400, 10014, "Unknown Emoji")
        elif not emoji or any(c.isalnum() or c.isspace() for c in emoji):
            raise DiscordError(400, 10014, "Unknown Emoji")
        new = emoji not in msg.reactions
        needed = VIEW_CHANNEL | READ_MESSAGE_HISTORY | (ADD_REACTIONS if new else 0)
        if not self._may(app, msg.channel_id, needed):
            raise DiscordError(403, 50013, "Missing Permissions")
        msg.reactions.setdefault(emoji, set()).add(app.user.id)
        self.sim.notify()
        return web.Response(status=204)

    async def get_emoji(self, request: web.Request) -> web.Response:
        app = self.auth(request)
        guild = self.sim.guilds.get(int(request.match_info["guild_id"]))
        if guild is None or app.user.id not in guild.members:
            raise DiscordError(403, 50001, "Missing Access")
        emoji_id = request.match_info["emoji_id"]
        emoji = guild.emojis.get(int(emoji_id)) if emoji_id.isdigit() else None
        if emoji is None:
            raise DiscordError(404, 10014, "Unknown Emoji")
        return json_response(emoji.payload())

    async def typing(self, request: web.Request) -> web.Response:
        self.auth(request)
        return web.Response(status=204)

    # --- bodies ------------------------------------------------------------------------
    async def _read_body(self, request: web.Request) -> tuple[Any, dict[int, Any]]:
        """JSON body or multipart (``payload_json`` + ``files[n]``), parsed by the middleware."""
        return request[BODY]

    def _apply(
        self, msg: Message, payload: dict[str, Any], files: dict[int, Any], *, replace: bool = False
    ) -> None:
        """Set content/embeds/attachments of ``msg`` from a create or edit payload."""
        if "content" in payload or not replace:
            msg.content = payload.get("content") or ""
        if "components" in payload or not replace:
            msg.components = list(payload.get("components") or [])
        new: dict[str, Attachment] = {}
        if files or "attachments" in payload:
            kept = []
            listed = payload.get("attachments")
            if listed is None:
                listed = [{"id": i} for i in files]
                kept = list(msg.attachments) if replace else []
            for item in listed:
                aid = item.get("id")
                if isinstance(aid, int) and aid in files:
                    name, data = files[aid]
                    att = self.sim.store_upload(msg.channel_id, item.get("filename") or name, data)
                    new[att.filename] = att
                    kept.append(att)
                else:
                    old = next((a for a in msg.attachments if str(a.id) == str(aid)), None)
                    if old is not None:
                        kept.append(old)
            msg.attachments = kept
        if "embeds" in payload or not replace:
            embeds = payload.get("embeds") or []
            by_name = {a.filename: a for a in msg.attachments}
            for e in embeds:
                for key in ("image", "thumbnail"):
                    url = (e.get(key) or {}).get("url", "")
                    if url.startswith("attachment://"):
                        att = by_name.get(url.removeprefix("attachment://"))
                        e[key] = {"url": att.url if att else url, "proxy_url": url}
            msg.embeds = embeds
        msg.snapshot()

    # --- CDN ---------------------------------------------------------------------------
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
