"""Discord's JSON errors and the message limits the simulator enforces."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

ATTACHMENT_LIMIT = 10 * 1024 * 1024  # bytes per uploaded file (non-boosted guild)
MAX_FILES = 10
CDN_SECRET = b"simulated-cdn-secret"
#: where the middleware keeps a request's parsed body: ``(payload, {index: (name, bytes)})``
BODY: web.RequestKey[tuple[Any, dict[int, tuple[str, bytes]]]] = web.RequestKey("body")


class DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Exactly "application/json": discord.py does not parse "...; charset=utf-8".
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def parse_body(
    content_type: str, headers: Mapping[str, str], raw: bytes
) -> tuple[Any, dict[int, tuple[str, bytes]]]:
    """A JSON body, or a multipart one (``payload_json`` + ``files[n]``), as Discord reads it."""
    if not raw:
        return {}, {}
    if not content_type.startswith("multipart/"):
        try:
            return json.loads(raw), {}
        except ValueError:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None
    head = f"Content-Type: {headers.get('Content-Type', '')}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    payload: Any = {}
    files: dict[int, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") or ""
        data = part.get_payload(decode=True) or b""
        if name == "payload_json":
            try:
                payload = json.loads(data)
            except ValueError:
                raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None
        elif m := re.fullmatch(r"files\[(\d+)\]", str(name)):
            if len(data) > ATTACHMENT_LIMIT:
                raise DiscordError(413, 40005, "Request entity too large")
            files[int(m.group(1))] = (part.get_filename() or "file", bytes(data))
    return payload, files


def sign_path(path: str, expires: int) -> str:
    ex = f"{expires:x}"
    hm = hmac.new(CDN_SECRET, f"{path}:{ex}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"ex={ex}&is={int(time.time()):x}&hm={hm}"


def validate_message(payload: dict[str, Any], n_files: int, *, edit: bool = False) -> None:
    errors: dict[str, str] = {}
    content = payload.get("content") or ""
    embeds = payload.get("embeds") or []
    if len(content) > 2000:
        errors["content"] = "Must be 2000 or fewer in length."
    if len(embeds) > 10:
        errors["embeds"] = "Must be 10 or fewer in length."
    total = 0
    for i, e in enumerate(embeds):
        limits = {"title": 256, "description": 4096}
        for key, limit in limits.items():
            n = len(e.get(key) or "")
            total += n
            if n > limit:
                errors[f"embeds.{i}.{key}"] = f"Must be {limit} or fewer in length."
        fields = e.get("fields") or []
        if len(fields) > 25:
            errors[f"embeds.{i}.fields"] = "Must be 25 or fewer in length."
        for j, f in enumerate(fields):
            total += len(f.get("name", "")) + len(f.get("value", ""))
            if not f.get("name") or not f.get("value"):
                errors[f"embeds.{i}.fields.{j}"] = "This field is required"
            if len(f.get("name", "")) > 256 or len(f.get("value", "")) > 1024:
                errors[f"embeds.{i}.fields.{j}"] = "Too long."
        footer = (e.get("footer") or {}).get("text") or ""
        total += len(footer)
        if len(footer) > 2048:
            errors[f"embeds.{i}.footer"] = "Must be 2048 or fewer in length."
        author = (e.get("author") or {}).get("name") or ""
        total += len(author)
        if len(author) > 256:
            errors[f"embeds.{i}.author.name"] = "Must be 256 or fewer in length."
    if total > 6000:
        errors["embeds"] = "Embed size exceeds maximum size of 6000"
    if n_files > MAX_FILES:
        errors["files"] = "Must be 10 or fewer in length."
    if errors:
        raise DiscordError(400, 50035, "Invalid Form Body", errors)
    from tests.discord_sim.components import validate_components  # it imports DiscordError

    validate_components(payload.get("components"))
    if not edit and not content and not embeds and not n_files and not payload.get("sticker_ids"):
        raise DiscordError(400, 50006, "Cannot send an empty message")
