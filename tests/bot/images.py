"""Attachments for the tests, good and bad, built in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.bot.harness import flower_bytes


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_from_rows(
    width: int,
    height: int,
    bit_depth: int,
    colour_type: int,
    raw_rows: bytes | None = None,
    *,
    zero_rows_len: int = 0,
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    comp = zlib.compressobj(9)
    if raw_rows is not None:
        idat = comp.compress(raw_rows) + comp.flush()
    else:  # ``height`` rows of zeros, streamed so the bomb never exists in memory
        row = b"\x00" * zero_rows_len
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit ``side`` x ``side`` PNG of a few tens of KB (400 megapixels)."""
    return png_from_rows(side, side, 1, 0, zero_rows_len=1 + (side + 7) // 8)


def png_16bit_rgba(label: str = "sunflower") -> bytes:
    """A real photo as a 16-bit-per-channel RGBA PNG (alpha gradient)."""
    im = Image.open(io.BytesIO(flower_bytes(label))).convert("RGB").resize((160, 120))
    rgb = np.asarray(im, dtype=np.uint16) * 257
    h, w, _ = rgb.shape
    alpha = np.linspace(65535, 20000, w, dtype=np.uint16)[None, :].repeat(h, 0)[..., None]
    rgba = np.concatenate([rgb, alpha], axis=2).astype(">u2")
    rows = b"".join(b"\x00" + rgba[y].tobytes() for y in range(h))
    return png_from_rows(w, h, 16, 6, rows)


def gif_of(label: str = "daisy") -> bytes:
    im = Image.open(io.BytesIO(flower_bytes(label))).convert("RGB")
    buf = io.BytesIO()
    im.convert("P", palette=Image.Palette.ADAPTIVE).save(buf, "GIF")
    return buf.getvalue()


def truncated_jpeg(label: str = "tulip") -> bytes:
    data = flower_bytes(label)
    return data[: len(data) // 3]


TEXT_AS_PNG = b"Dear diary, this is not a picture at all.\n" * 20
