"""Teaching from the browser: images into a label, or a zip with a folder per label.

The page's form works without a script (the report is the next page). With
``static/upload.js`` the page sends one file per request (``fetch``, the CSRF token in a
header, ``Accept: application/json``) and shows each file's progress and outcome as it
comes; a drop zone takes files dragged onto it.

Everything goes through the teaching feature (:func:`teach_many`, :func:`teach_archive`):
the backend verifies every image, the server's quotas apply, zips are read with their
limits, and each entry gets a line in the report, exactly as ``/teach`` does. The images
go through the door (``bot.core.admission``) in chunks of at most ten, on the path
``dashboard_upload`` for the logged-in member, so an upload waits its turn with everyone
else's images and a refusal for load is tried again a few times before that chunk's files
are reported as refused.
"""

from __future__ import annotations

from aiohttp import web

from bot.cogs.teach import (
    ArchiveRefused,
    BulkItem,
    BulkReport,
    EntryOutcome,
    normalize_label,
    server_labels,
    teach_archive,
    teach_many,
)
from bot.core.download import sniff_image, too_large_message
from bot.core.errors import UserError
from bot.dashboard.uploads import UploadLimits, read_upload
from bot.dashboard.views import bot_of, open_server, render, require_session
from golem_backend import EmptyImage, ImageTooLarge, NotAnImage

ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
#: The uploads' path through the door (``bot.core.admission.PATHS``).
UPLOAD_PATH = "dashboard_upload"


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_SIGNATURES)


async def upload_page(request: web.Request) -> web.StreamResponse:
    access, scope = await open_server(request)
    bot = bot_of(request)
    return render(
        request,
        "upload.html",
        {
            "server": access,
            "labels": await server_labels(bot, scope),
            "preset": request.query.get("label", "")[:40],
            "report": None,
            "limits": UploadLimits.from_settings(bot.settings),
            "max_image_bytes": bot.settings.max_image_bytes,
        },
    )


async def upload(request: web.Request) -> web.StreamResponse:
    """POST: teach the uploaded files; the report as a page, or as JSON for the script."""
    access, scope = await open_server(request)
    session = require_session(request)
    bot = bot_of(request)
    form = await read_upload(request, UploadLimits.from_settings(bot.settings))
    if not form.files:
        raise web.HTTPBadRequest(text="Choose one or more images, or a zip, to upload.")
    report = BulkReport()
    images: list[BulkItem] = []
    label: str | None = None
    problem: str | None = None
    for name, data in form.files:
        if is_zip(data):
            try:
                await teach_archive(
                    bot,
                    scope,
                    data,
                    path=UPLOAD_PATH,
                    member_id=session.user_id,
                    user_id=session.user_id,
                    user_name=session.name,
                    report=report,
                )
            except ArchiveRefused as exc:
                report.entries.append(EntryOutcome(name, None, "refused", exc.message))
            continue
        if label is None and problem is None:
            try:
                label = normalize_label(form.label)
            except UserError as exc:
                problem = "Choose a label for the images first. " + exc.message
        if label is None:
            report.entries.append(EntryOutcome(name, None, "refused", str(problem)))
            continue
        images.append(BulkItem(label, name, _checked(data, bot.settings.max_image_bytes)))
    if images:
        await teach_many(
            bot,
            scope,
            images,
            path=UPLOAD_PATH,
            member_id=session.user_id,
            user_id=session.user_id,
            user_name=session.name,
            report=report,
        )
    if wants_json(request):
        return web.json_response(
            {
                "summary": report.summary(),
                "learned": report.learned,
                "entries": [
                    {"name": e.name, "label": e.label, "kind": e.kind, "text": e.text}
                    for e in report.entries
                ],
            }
        )
    return render(
        request,
        "upload.html",
        {
            "server": access,
            "labels": await server_labels(bot, scope),
            "preset": label or "",
            "report": report,
            "limits": UploadLimits.from_settings(bot.settings),
            "max_image_bytes": bot.settings.max_image_bytes,
        },
    )


def _checked(data: bytes, max_bytes: int) -> bytes | Exception:
    """The bytes, or why they are not an image (by the bytes, never the file's name)."""
    if not data:
        return EmptyImage("That file is empty.")
    if len(data) > max_bytes:
        return ImageTooLarge(too_large_message(max_bytes))
    if sniff_image(data[:32]) is None:
        return NotAnImage("That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).")
    return data
