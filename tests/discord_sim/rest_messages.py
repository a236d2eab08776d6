"""REST routes of channels and messages: send, read, edit, delete, react, type; emojis."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.discord_sim.auth import bot_app
from tests.discord_sim.model import (
    ADD_REACTIONS,
    ATTACH_FILES,
    MANAGE_MESSAGES,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Application,
    Attachment,
    Message,
    snowflake,
)
from tests.discord_sim.openapi import load_spec
from tests.discord_sim.validation import BODY, DiscordError, json_response, validate_message

if TYPE_CHECKING:
    from tests.discord_sim.simulator import DiscordSimulator


class MessageRoutes:
    def __init__(self, sim: DiscordSimulator) -> None:
        self.sim = sim

    def routes(self, p: str) -> list[web.RouteDef]:
        m = p + "/channels/{channel_id}/messages"
        return [
            web.get(m, self.list_messages),
            web.post(m, self.create_message),
            web.get(m + "/{message_id}", self.channel_message),
            web.patch(m + "/{message_id}", self.channel_message),
            web.delete(m + "/{message_id}", self.channel_message),
            web.put(m + "/{message_id}/reactions/{emoji}/@me", self.add_reaction),
            web.get(p + "/guilds/{guild_id}/emojis/{emoji_id}", self.get_emoji),
            web.post(p + "/channels/{channel_id}/typing", self.typing),
        ]

    async def create_message(self, request: web.Request) -> web.Response:
        app = bot_app(self.sim, request)
        sim = self.sim
        channel = sim.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        guild = sim.guilds[channel.guild_id]
        perms = guild.channel_permissions(app.user.id, channel)
        payload, files = request[BODY]
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
        apply_payload(self.sim, msg, payload, files)
        await sim.publish_message(msg)
        return json_response(msg.payload())

    async def list_messages(self, request: web.Request) -> web.Response:
        """A channel's history, newest first, as Discord pages it: ``limit`` (1-100, 50 by
        default) messages ``before``, ``after`` or ``around`` a message id. View Channel is
        needed (403 Missing Access); without Read Message History the list is empty. The
        content of other users' messages is stripped for an application without the
        Message Content intent."""
        app = bot_app(self.sim, request)
        sim = self.sim
        channel = sim.channels.get(int(request.match_info["channel_id"]))
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        guild = sim.guilds[channel.guild_id]
        perms = guild.channel_permissions(app.user.id, channel)
        if app.user.id not in guild.members or not perms & VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        sim.history_reads.append((channel.id, dict(request.query)))
        query = request.query
        limit = int(query.get("limit", 50))
        if len({"before", "after", "around"} & set(query)) > 1:
            raise DiscordError(400, 50035, "Invalid Form Body", {"around": "only one of"})
        found = sorted(
            (
                m
                for m in sim.messages.values()
                if m.channel_id == channel.id and not m.deleted and not m.ephemeral
            ),
            key=lambda m: m.id,
        )
        if not perms & READ_MESSAGE_HISTORY:
            found = []
        if "before" in query:
            found = [m for m in found if m.id < int(query["before"])][-limit:]
        elif "after" in query:
            found = [m for m in found if m.id > int(query["after"])][:limit]
        elif "around" in query:
            around = int(query["around"])
            older = [m for m in found if m.id < around][-(limit // 2) :] if limit > 1 else []
            newer = [m for m in found if m.id >= around][: limit - len(older)]
            found = older + newer
        else:
            found = found[-limit:]
        page = []
        for m in reversed(found):
            strip = not app.message_content_allowed and m.author.id != app.user.id
            page.append({**m.payload(strip_content=strip), "author": m.author.full_payload()})
        api_path = re.sub(r"^/api/v\d+", "", request.path)
        errors = load_spec().response_errors("GET", api_path, 200, page)
        if errors:
            found_errors = f"GET {request.path} answered against the spec: {errors}"
            sim.response_violations.append(found_errors)
            return json_response({"code": 0, "message": found_errors}, status=500)
        return json_response(page)

    async def channel_message(self, request: web.Request) -> web.Response:
        app = bot_app(self.sim, request)
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
        payload, files = request[BODY]
        validate_message(payload, len(files), edit=True)
        apply_payload(self.sim, msg, payload, files, replace=True)
        self.sim.notify()
        return json_response(msg.payload())

    def _may(self, app: Application, channel_id: int, needed: int) -> bool:
        channel = self.sim.channels[channel_id]
        perms = self.sim.guilds[channel.guild_id].channel_permissions(app.user.id, channel)
        return perms & needed == needed

    async def add_reaction(self, request: web.Request) -> web.Response:
        """Read Message History and Add Reactions (for a new reaction) are needed; a
        custom emoji must be one of a server the bot is in (10014 Unknown Emoji)."""
        app = bot_app(self.sim, request)
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
        app = bot_app(self.sim, request)
        guild = self.sim.guilds.get(int(request.match_info["guild_id"]))
        if guild is None or app.user.id not in guild.members:
            raise DiscordError(403, 50001, "Missing Access")
        emoji_id = request.match_info["emoji_id"]
        emoji = guild.emojis.get(int(emoji_id)) if emoji_id.isdigit() else None
        if emoji is None:
            raise DiscordError(404, 10014, "Unknown Emoji")
        return json_response(emoji.payload())

    async def typing(self, request: web.Request) -> web.Response:
        bot_app(self.sim, request)
        return web.Response(status=204)


def apply_payload(
    sim: DiscordSimulator,
    msg: Message,
    payload: dict[str, Any],
    files: dict[int, Any],
    *,
    replace: bool = False,
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
                att = sim.store_upload(msg.channel_id, item.get("filename") or name, data)
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
