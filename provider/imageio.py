"""The one image decoder of the project: untrusted bytes or a path in, an RGB array out.

Every image the classifier sees (training, prediction, the bot's attachments, the Golem
provider's inputs) goes through :func:`decode_image`, so the limits live in one place:

* the byte size is checked before anything is parsed (for a path: before it is read);
* the format is sniffed from magic bytes, and Pillow is only allowed to parse that format;
* width x height is read from the header (``Image.open`` is lazy) and checked against a
  per-call pixel limit *before* any pixel is decoded (decompression-bomb guard);
* truncated data is an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays ``False``);
* every other decoder failure becomes a typed :class:`~provider.errors.ImageError` whose
  message is fit to show to an end user.

Pillow decodes every format; the common JPEG (sequential, complete, YCbCr or grey) is
decoded by OpenCV into the same pixels at half the cost (:mod:`provider.jpeg_opencv`).

The decoder never resizes: callers (the feature extractors) do that.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
from typing import Final

import numpy as np
from PIL import Image, ImageFile, ImageOps

from provider.decode_deadline import BLOCK_BYTES, DEFAULT_DECODE_BUDGET_S, DeadlineReader
from provider.errors import (
    CorruptImage,
    EmptyImage,
    ImageError,
    ImageTooLarge,
    NotAnImage,
    UnreadableFile,
)
from provider.jpeg_markers import check_jpeg_markers
from provider.jpeg_opencv import decode_sequential_jpeg

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_FORMATS",
    "decode_image",
    "decoded_pixels",
    "sniff_format",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: Final = 20 * 1024 * 1024
"""Largest accepted encoded size, in bytes (20 MiB)."""

DEFAULT_MAX_PIXELS: Final = 40_000_000
"""Largest accepted width * height of the (first) frame, in pixels."""

SUPPORTED_FORMATS: Final = ("jpeg", "png", "gif", "webp", "bmp", "tiff")

# Our format name -> the only Pillow plugin allowed to parse it.
_PIL_FORMAT: Final = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
}
# DIB header sizes Pillow's BMP plugin understands (bytes 14..18 of a BMP file).
_BMP_DIB_SIZES: Final = frozenset({12, 40, 52, 56, 64, 108, 124})
_TIFF_MAGICS: Final = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic + BigTIFF
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_WHITE: Final = (255, 255, 255)

MSG_EMPTY: Final = "That file is empty."
MSG_NOT_IMAGE: Final = "That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF)."
MSG_UNREADABLE: Final = "That file does not exist or could not be read."
MSG_CORRUPT: Final = "That image is damaged or incomplete."
MSG_UNSUPPORTED_MODE: Final = "That image uses a colour format that cannot be read."
MSG_TOO_LARGE_GENERIC: Final = "That image is too large (it has too many pixels)."

_warned_truncated_global = False


def sniff_format(data: bytes) -> str | None:
    """Return the image format of ``data`` from its magic bytes only, or ``None``.

    Args:
        data: the start of a file (bytes-like; the first 32 bytes are enough).

    Returns:
        One of ``"jpeg"``, ``"png"``, ``"gif"``, ``"webp"``, ``"bmp"``, ``"tiff"``,
        or ``None`` when the bytes are not one of those formats.
    """
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if (
        head[:2] == b"BM"
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    ):
        return "bmp"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    return None


def decode_image(
    src: bytes | os.PathLike[str] | str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: int | None = None,
    shrink: bool = False,
    decode_budget_s: float | None = DEFAULT_DECODE_BUDGET_S,
) -> np.ndarray:
    """Decode an untrusted image into an RGB array, enforcing size and pixel limits.

    Only the first frame of animated GIF/WebP/PNG and the first page of a multi-page TIFF
    are decoded. EXIF orientation is applied; transparency is composited over white;
    grayscale, palette, CMYK and 16-bit images are converted to 8-bit RGB (16-bit values
    are scaled by ``v >> 8``, the same rule Pillow applies to 16-bit colour PNGs).

    Args:
        src: the encoded bytes (``bytes``, ``bytearray`` or ``memoryview``) or a path.
        max_bytes: largest accepted encoded size in bytes; a path's size is checked from
            the file system before the file is read.
        max_pixels: largest accepted width * height in pixels, checked from the header
            before any pixel is decoded.
        min_side: when set, a JPEG may be decoded at a reduced scale (1/2, 1/4 or 1/8,
            done by the JPEG decoder itself, several times faster) as long as its shorter
            side stays at least ``min_side`` pixels. Other formats are decoded in full.
        shrink: with ``min_side``, an image of any format whose shorter side is at least
            twice ``min_side`` is shrunk by an integer box filter right after decoding
            (before colour conversion), to a shorter side of at least ``min_side``: a
            40-megapixel PNG then costs one decoded frame, not three full-size copies.
        decode_budget_s: CPU seconds the decode may take (``None``: unbounded); see
            :mod:`provider.decode_deadline`. A JPEG's markers are checked first
            (:mod:`provider.jpeg_markers`: scan bombs are rejected before decoding).

    Returns:
        A writable, C-contiguous ``(H, W, 3)`` ``uint8`` array in RGB order, with H and W
        the (orientation-corrected) height and width in pixels.

    Raises:
        EmptyImage: zero bytes.
        NotAnImage: not JPEG/PNG/GIF/WebP/BMP/TIFF, or a path that cannot be read.
        ImageTooLarge: more than ``max_bytes`` bytes or more than ``max_pixels`` pixels.
        ImageTooComplex: (an ``ImageTooLarge``) a JPEG with absurdly many scans or marker
            segments, or a decode over ``decode_budget_s``.
        CorruptImage: truncated or undecodable data, or absurd dimensions.
        TypeError: ``src`` is neither bytes-like nor a path (a programming error).
    """
    data = _read_source(src, max_bytes)
    if len(data) == 0:
        raise EmptyImage(MSG_EMPTY)
    if len(data) > max_bytes:
        raise ImageTooLarge(_too_many_bytes_message(len(data), max_bytes))
    fmt = sniff_format(data)
    if fmt is None:
        raise NotAnImage(MSG_NOT_IMAGE)
    _warn_if_truncated_images_allowed()
    structure = check_jpeg_markers(data) if fmt == "jpeg" else None
    try:
        reader = DeadlineReader(data, decode_budget_s)
        with Image.open(reader, formats=[_PIL_FORMAT[fmt]]) as im:
            im.decodermaxblock = BLOCK_BYTES
            full_size = im.size
            _check_dimensions(full_size, max_pixels)
            if min_side and fmt == "jpeg":
                _draft(im, min_side)
            if structure is not None:  # the common JPEG: same pixels, half the time
                fast = decode_sequential_jpeg(
                    data, im, full_size, structure, min_side if shrink else None
                )
                if fast is not None:
                    return fast
            im.load()
            _apply_exif_orientation(im)
            return _to_rgb_array(_shrink(im, min_side) if shrink and min_side else im)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own global guard fired first (only if it is stricter than max_pixels).
        raise ImageTooLarge(MSG_TOO_LARGE_GENERIC) from exc
    except MemoryError as exc:
        raise ImageTooLarge("That image is too large to decode.") from exc
    except Exception as exc:  # untrusted input: any decoder failure is "corrupt"
        log.debug("decode failed for a %s of %d bytes: %r", fmt, len(data), exc)
        raise CorruptImage(MSG_CORRUPT) from exc


def _read_source(src: bytes | os.PathLike[str] | str, max_bytes: int) -> bytes | bytearray:
    """Return the encoded bytes of ``src``, reading at most ``max_bytes + 1`` from a file."""
    if isinstance(src, memoryview):
        return src.tobytes()  # len() of a non-byte view would count items, not bytes
    if isinstance(src, bytes | bytearray):
        return src
    if not isinstance(src, str | os.PathLike):
        raise TypeError(f"decode_image() expects bytes or a path, not {type(src).__name__}")
    try:
        info = os.stat(src)
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL byte in the path
        raise UnreadableFile(MSG_UNREADABLE) from exc
    if not stat.S_ISREG(info.st_mode):  # a directory, FIFO, device...: never open it
        raise UnreadableFile(MSG_UNREADABLE)
    if info.st_size > max_bytes:
        raise ImageTooLarge(_too_many_bytes_message(info.st_size, max_bytes))
    try:
        with open(src, "rb") as fh:
            return fh.read(max_bytes + 1)  # bounded even if the file grew since stat()
    except OSError as exc:
        raise UnreadableFile(MSG_UNREADABLE) from exc


def _draft(im: Image.Image, min_side: int) -> None:
    """Ask the JPEG decoder for the smallest DCT scale keeping the shorter side >= min_side."""
    w, h = im.size
    shorter = min(w, h)
    if shorter <= 2 * min_side:
        return
    scale = min_side / shorter
    im.draft(im.mode, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))


def _shrink(im: Image.Image, min_side: int) -> Image.Image:
    """Box-filter ``im`` by the largest integer factor keeping the shorter side >= min_side.

    Transparent images are reduced premultiplied (``RGBa``), so a fully transparent
    pixel's hidden colour does not bleed into its neighbours before the white composite.
    """
    factor = min(im.size) // min_side
    if factor < 2:
        return im
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        return rgba.convert("RGBa").reduce(factor).convert("RGBA")
    if im.mode.startswith("I;16"):
        return im.convert("I").reduce(factor)
    if im.mode not in ("L", "RGB", "I", "F"):
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise CorruptImage(MSG_UNSUPPORTED_MODE) from exc
    return im.reduce(factor)


def decoded_pixels(src: bytes | os.PathLike[str] | str, min_side: int | None = None) -> int:
    """Pixels :func:`decode_image` would decode for ``src``, read from its header only.

    Used to budget memory before decoding (a decoded pixel costs up to about 11 bytes at
    the decoder's peak). A JPEG counts at the DCT scale ``min_side`` allows. Anything that
    cannot be parsed counts 0: :func:`decode_image` then raises the proper error.
    """
    try:
        if isinstance(src, bytes | bytearray | memoryview):
            fh: io.BufferedIOBase = io.BytesIO(src)
        elif stat.S_ISREG(os.stat(src).st_mode):  # never open a FIFO or a device
            fh = open(src, "rb")  # noqa: SIM115 - closed by the with below
        else:
            return 0
        with fh:
            fmt = sniff_format(fh.read(32))
            if fmt is None:
                return 0
            fh.seek(0)
            with Image.open(fh, formats=[_PIL_FORMAT[fmt]]) as im:
                width, height = im.size
    except Exception:  # untrusted input: decode_image reports it
        return 0
    scale = 1
    if min_side and fmt == "jpeg":
        while scale < 8 and min(width, height) // (2 * scale) >= min_side:
            scale *= 2
    return max(0, width // scale) * max(0, height // scale)


def _check_dimensions(size: tuple[int, int], max_pixels: int) -> None:
    """Reject a header size of zero/negative sides or more than ``max_pixels`` pixels."""
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"That image is damaged (it claims to be {width}x{height} pixels).")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"That image is too large ({width}x{height} pixels; "
            f"the limit is {max_pixels / 1e6:g} megapixels)."
        )


def _apply_exif_orientation(im: Image.Image) -> None:
    """Rotate/flip ``im`` in place as its EXIF orientation says; ignore malformed EXIF.

    The pixels are already decoded at this point, so a broken EXIF block is not a reason
    to reject an image a browser would show: it is logged and the image kept as stored.
    """
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as exc:  # metadata only: the pixels are fine
        log.debug("ignoring malformed EXIF orientation: %r", exc)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a loaded image of any Pillow mode to a writable (H, W, 3) uint8 RGB array."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return _wide_gray_to_rgb(im)
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        rgb = Image.new("RGB", im.size, _WHITE)
        rgb.paste(rgba, mask=rgba)  # out = src * a + white * (1 - a), in C
    elif mode == "RGB":
        rgb = im
    else:  # L, 1, P, CMYK (Adobe-inverted handled by the JPEG plugin), YCbCr, LAB, HSV, RGBX
        try:
            rgb = im.convert("RGB")
        except ValueError as exc:
            raise CorruptImage(MSG_UNSUPPORTED_MODE) from exc
    # __array_interface__ hands numpy an immutable bytes object: one copy makes the result
    # writable (callers may modify it in place); it costs ~2% of a JPEG decode.
    array = np.array(rgb, dtype=np.uint8, copy=True)
    if array.ndim != 3 or array.shape[2] != 3:  # defensive: never hand out another shape
        raise CorruptImage(MSG_UNSUPPORTED_MODE)
    return array


def _wide_gray_to_rgb(im: Image.Image) -> np.ndarray:
    """Scale a 16/32-bit integer or float grayscale image to 8-bit RGB (H, W, 3) uint8.

    ``I;16*`` and ``I`` are taken as 16-bit (0..65535, ``I`` clipped to that range) and
    mapped with ``v >> 8``; ``F`` is taken as 0..1 if its maximum is <= 1, else 0..255.
    A PNG ``tRNS`` gray value (fully transparent) becomes white.
    """
    values = np.asarray(im)
    if im.mode == "F":
        finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.size and float(finite.max()) <= 1.0 else 1.0
        gray = np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    else:
        gray = (np.clip(values, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        transparent = im.info.get("transparency")
        if isinstance(transparent, int):
            gray[values == transparent] = 255
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _too_many_bytes_message(size: int, max_bytes: int) -> str:
    return f"That file is too large ({_human_bytes(size)}; the limit is {_human_bytes(max_bytes)})."


def _human_bytes(n: int) -> str:
    """Format a byte count for users: ``"20 MB"``, ``"25.3 MB"``, ``"900 KB"``, ``"12 bytes"``."""
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _warn_if_truncated_images_allowed() -> None:
    """Log once if some code switched Pillow's global truncated-image tolerance on."""
    global _warned_truncated_global
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated_global:
        _warned_truncated_global = True
        log.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated images will be accepted; "
            "nothing in this project should set it"
        )
