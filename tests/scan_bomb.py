"""Progressive-JPEG scan bombs, built in memory from a real photo (never committed).

A scan bomb is a valid progressive JPEG in which one scan is repeated many times: each
copy is a few hundred bytes, but the decoder walks every block of the image for each one.
The file's marker segments are rewritten here with a walker of its own (not the
``provider.jpeg_markers`` code under test).
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path

from PIL import Image

PHOTO = Path(__file__).resolve().parents[1] / "provider/data/flowers17/daisy/image_0801.jpg"
_END_OF_ENTROPY = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


@functools.cache
def progressive_jpeg(side: int = 1024, quality: int = 90) -> bytes:
    """The shipped daisy photo, resized to ``side`` x ``side``, saved progressive by libjpeg."""
    photo = Image.open(PHOTO).convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", progressive=True, quality=quality)
    return buf.getvalue()


def segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment after SOI, entropy-coded data included in
    its scan, up to and including EOI."""
    pos, out = 2, []
    while True:
        assert jpeg[pos] == 0xFF, f"no marker at {pos}"
        marker = jpeg[pos + 1]
        if marker == 0xD9:
            out.append((marker, pos, pos + 2))
            return out
        end = pos + 2 + int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            found = _END_OF_ENTROPY.search(jpeg, end)
            assert found is not None, "scan without an end"
            end = found.start()
        out.append((marker, pos, end))
        pos = end


def scan_count(jpeg: bytes) -> int:
    return sum(1 for marker, _, _ in segments(jpeg) if marker == 0xDA)


def scan_bomb(repeats: int, side: int = 1024) -> bytes:
    """A progressive JPEG whose smallest scan is repeated ``repeats`` extra times right
    after itself (so the Huffman tables it was coded with stay in force)."""
    jpeg = progressive_jpeg(side)
    parts = segments(jpeg)
    scans = [(start, end) for marker, start, end in parts if marker == 0xDA]
    start, end = min(scans, key=lambda s: s[1] - s[0])
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]
