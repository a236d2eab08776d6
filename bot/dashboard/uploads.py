"""Reading an upload (a multipart form of a label and files) without trusting its size.

The whole request may not be larger than a zip may (``ARCHIVE_MAX_BYTES``, plus a little
for the form): a ``Content-Length`` over it is refused before anything is read, and a body
without one is counted while it streams and abandoned past the limit. It may not hold more
files than a zip may list (``ARCHIVE_MAX_ENTRIES``). Each file is kept in memory only up to
the larger of one image's and one zip's limit; what a file is (an image, a zip, neither) is
decided from its bytes later, never from its name or declared type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, MultipartReader, web

from bot.core.settings import Settings
from bot.dashboard.security import CSRF_FIELD, MULTIPART

FORM_MARGIN = 64 * 1024  # the form's fields and multipart boundaries
LABEL_MAX = 200  # bytes of the label field
CHUNK = 64 * 1024


class UploadTooLarge(web.HTTPRequestEntityTooLarge):
    """413 with the member's message (the limits named)."""

    def __init__(self, text: str, limit: int) -> None:
        super().__init__(max_size=limit, actual_size=limit + 1, text=text)


@dataclass(frozen=True, slots=True)
class UploadLimits:
    request_bytes: int
    file_bytes: int
    files: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            request_bytes=settings.archive_max_bytes + FORM_MARGIN,
            file_bytes=max(settings.archive_max_bytes, settings.max_image_bytes),
            files=settings.archive_max_entries,
        )


@dataclass
class Upload:
    label: str = ""
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (file name, bytes)


def _megabytes(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


async def read_upload(request: web.Request, limits: UploadLimits) -> Upload:
    """The label and the files of a multipart upload; :class:`UploadTooLarge` (413) past
    the limits, 400 for something that is not a multipart form."""
    too_large = UploadTooLarge(
        f"That upload is over {_megabytes(limits.request_bytes)}, the most one upload may "
        "hold. Send fewer files at once, or a smaller zip.",
        limits.request_bytes,
    )
    if (request.content_length or 0) > limits.request_bytes:
        raise too_large
    reader = request.get(MULTIPART)
    if reader is None:
        if request.content_type != "multipart/form-data":
            raise web.HTTPBadRequest(text="An upload is a multipart form.")
        reader = await request.multipart()
    upload = Upload()
    budget = limits.request_bytes
    while (part := await _next(reader)) is not None:
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="A form inside a form is not an upload.")
        if part.name == "label":
            raw = await _read(part, LABEL_MAX, too_large)
            upload.label = raw.decode("utf-8", "replace").strip()
            budget -= len(raw)
        elif part.name == "files" and part.filename:
            if len(upload.files) >= limits.files:
                raise UploadTooLarge(
                    f"At most {limits.files} files in one upload.", limits.request_bytes
                )
            data = await _read(part, min(limits.file_bytes, budget), too_large)
            budget -= len(data)
            upload.files.append((part.filename[:200], data))
        else:  # the CSRF field (when the header carried the token), an empty file input...
            cap = min(budget, 4096) if part.name == CSRF_FIELD else budget
            budget -= await _skip(part, cap, too_large)
        if budget < 0:
            raise too_large
    return upload


async def _next(reader: MultipartReader) -> object | None:
    try:
        return await reader.next()
    except ValueError:
        raise web.HTTPBadRequest(text="That upload is not a well-formed form.") from None


async def _read(part: BodyPartReader, cap: int, too_large: UploadTooLarge) -> bytes:
    """The part's bytes; ``too_large`` past ``cap``."""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data.extend(chunk)
        if len(data) > cap:
            raise too_large
    return bytes(data)


async def _skip(part: BodyPartReader, cap: int, too_large: UploadTooLarge) -> int:
    """Read past a part that is not kept; how many bytes it had (``too_large`` past
    ``cap``)."""
    seen = 0
    while chunk := await part.read_chunk(CHUNK):
        seen += len(chunk)
        if seen > cap:
            raise too_large
    return seen
