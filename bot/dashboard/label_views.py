"""A server's labels: each with its taught images, recall and a few examples; a label's
images page by page, with Delete; and the images themselves.

Images are served through :func:`taught_image`: the file is looked up by its content hash
among the taught images of the server in the URL (after the access check), read from that
server's folder under the name its record gives (never a path from the request), and sent
with the content type its bytes say.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from bot.cogs.data import forget_taught_image
from bot.cogs.labels import label_overview
from bot.cogs.teach import normalize_label
from bot.core.download import sniff_image
from bot.core.errors import UserError
from bot.dashboard.views import bot_of, done, open_server, render, require_session, server_url
from bot.db import ScopedData

EXAMPLES = 4  # example images per label on the labels page
PER_PAGE = 24  # images per page of a label
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
#: Images are content-addressed: a browser may keep one a little while (private: only the
#: member's browser, never a shared cache).
IMAGE_CACHE = "private, max-age=300"


def label_of(request: web.Request) -> str:
    try:
        return normalize_label(request.match_info["label"])
    except UserError:
        raise web.HTTPNotFound(text="No such label.") from None


def page_of(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    return max(1, min(int(raw), 100_000)) if raw.isdigit() else 1


async def labels(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    overview = await label_overview(bot_of(request), scope)
    examples = {}
    for line in overview.lines:
        if line.taught:
            examples[line.label] = await scope.taught_of_label(line.label, EXAMPLES)
    return render(
        request,
        "labels.html",
        {
            "server": access,
            "lines": overview.lines,
            "model_id": overview.model_id,
            "examples": examples,
        },
    )


async def label(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    name = label_of(request)
    count = (await scope.label_counts()).get(name, 0)
    pages = max(1, -(-count // PER_PAGE))
    page = min(page_of(request), pages)
    images = await scope.taught_of_label(name, PER_PAGE, (page - 1) * PER_PAGE)
    session = require_session(request)
    return render(
        request,
        "label.html",
        {
            "server": access,
            "label": name,
            "count": count,
            "images": images,
            "page": page,
            "pages": pages,
            "may_delete": lambda record: access.admin or record.user_id == session.user_id,
        },
    )


async def delete_image(request: web.Request) -> web.StreamResponse:
    """Administrators delete any taught image; trainers the ones they taught."""
    access, scope = await open_server(request)
    session = require_session(request)
    name = label_of(request)
    back = server_url(request, "label", access, label=name)
    try:
        await forget_taught_image(
            scope,
            name,
            request.match_info["sha256"],
            user_id=session.user_id,
            any_author=access.admin,
        )
    except UserError as exc:
        raise done(request, back, exc.message.replace("**", ""), ok=False) from None
    text = f"Deleted one image of {name}. The current model keeps it until the next retrain."
    raise done(request, back, text)


async def taught_image(request: web.Request) -> web.StreamResponse:
    """One taught image of the server in the URL, by its content hash."""
    _, scope = await open_server(request)
    record = await scope.taught_image(request.match_info["sha256"])
    if record is None:
        raise web.HTTPNotFound(text="No such image.")
    return await image_response(scope, record.path, scope.images_dir)


async def image_response(scope: ScopedData, path: Path, folder: Path) -> web.Response:
    """The bytes of ``path`` (a file named by a record of ``scope``, in ``folder``)."""
    if path.parent != folder:  # a record names a file of its own folder, nothing else
        raise web.HTTPNotFound(text="No such image.")
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError:
        raise web.HTTPNotFound(text="That image's file is missing.") from None
    kind = sniff_image(data[:32])
    if kind is None:
        raise web.HTTPNotFound(text="No such image.")
    return web.Response(
        body=data,
        headers={
            "Content-Type": CONTENT_TYPES[kind],
            "Cache-Control": IMAGE_CACHE,
            "Content-Disposition": "inline",
        },
    )
