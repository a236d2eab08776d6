"""Fetching attachments: only Discord's CDN, bounded in size and time, sniffed from the bytes.

Attachment URLs are signed and expire, so images are downloaded when the event arrives,
kept in memory, and never stored (except by ``/teach``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import aiohttp
import discord
import yarl

from bot.core.errors import DownloadError, UserError
from golem_backend import EmptyImage, ImageTooLarge, NotAnImage, sniff_format

MAX_REDIRECTS = 3
CHUNK = 64 * 1024

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp"})
_EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "tiff": "tif",
    "webp": "webp",
}


def sniff_image(data: bytes) -> str | None:
    """The image format named by the leading bytes (``"jpeg"``, ``"png"``...), or ``None``."""
    return sniff_format(data)


def image_extension(data: bytes) -> str:
    """The file extension for these image bytes, or :class:`UserError`."""
    kind = sniff_image(data[:32])
    if kind is None:
        raise UserError("That file is not an image.")
    return _EXTENSIONS[kind]


def looks_like_image(attachment: discord.Attachment) -> bool:
    """Cheap pre-filter from metadata (for auto-replies); the bytes decide later."""
    if (attachment.content_type or "").startswith("image/"):
        return True
    return attachment.filename.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS


def format_size(n_bytes: int) -> str:
    """``1 MB``, ``1.5 MB``, ``512 KB``, ``900 bytes`` (binary units, at most 2 decimals)."""
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if n_bytes >= size:
            return f"{n_bytes / size:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n_bytes} bytes"


def too_large_message(max_bytes: int) -> str:
    return f"That file is too large (the limit is {format_size(max_bytes)})."


def check_url(url: str, allowed_hosts: Collection[str]) -> yarl.URL:
    """The parsed URL if it is http(s) on an allowed host, else :class:`DownloadError`."""
    try:
        parsed = yarl.URL(url)
    except ValueError:
        raise DownloadError("That attachment link is not valid.") from None
    host = (parsed.host or "").lower().rstrip(".")
    if parsed.scheme not in ("https", "http") or host not in allowed_hosts:
        raise DownloadError("I only download attachments from Discord's own file servers.")
    return parsed


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed_hosts: Collection[str],
    max_bytes: int,
    timeout_s: float,
) -> bytes:
    """Download the image at ``url`` into memory (:func:`download_file`), then check it is
    one: ``EmptyImage`` or ``NotAnImage`` (by the bytes, not the file name)."""
    data = await download_file(
        session, url, allowed_hosts=allowed_hosts, max_bytes=max_bytes, timeout_s=timeout_s
    )
    if not data:
        raise EmptyImage("That file is empty.")
    if sniff_image(data[:32]) is None:
        raise NotAnImage("That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).")
    return data


async def download_file(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed_hosts: Collection[str],
    max_bytes: int,
    timeout_s: float,
) -> bytes:
    """Download ``url`` into memory, whatever it holds (an image, a zip).

    Redirects are followed only to allowed hosts; the body is read in chunks and abandoned
    as soon as it exceeds ``max_bytes``. Raises :class:`DownloadError` (also once shutdown
    closed the session) or ``ImageTooLarge`` (its message names the file, not an image).
    """
    target = check_url(url, allowed_hosts)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
    too_big = ImageTooLarge(too_large_message(max_bytes))
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(target, allow_redirects=False, timeout=timeout) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = resp.headers.get("Location", "")
                        target = check_url(str(target.join(yarl.URL(location))), allowed_hosts)
                        continue
                    if resp.status != 200:
                        raise DownloadError(
                            f"I couldn't fetch the attachment (HTTP {resp.status}); "
                            "it may have been deleted or its link expired."
                        )
                    if (resp.content_length or 0) > max_bytes:
                        raise too_big
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(CHUNK):
                        data.extend(chunk)
                        if len(data) > max_bytes:
                            raise too_big
                    break
            else:
                raise DownloadError("The attachment link redirected too many times.")
    except TimeoutError:
        raise DownloadError("Downloading the attachment took too long.") from None
    except aiohttp.ClientError as exc:
        raise DownloadError(f"I couldn't fetch the attachment ({type(exc).__name__}).") from None
    except RuntimeError:
        if not session.closed:
            raise
        # aiohttp raises RuntimeError("Session is closed") once the bot is shutting down
        raise DownloadError("I'm restarting right now. Please try again in a minute.") from None
    return bytes(data)
