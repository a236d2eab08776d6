"""Zips of labelled images for the bulk-teaching and dashboard tests, honest and hostile."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
from PIL import Image

from tests.bot.images import TEXT_AS_PNG


def noisy_image(seed: int, fmt: str = "JPEG", side: int = 48) -> bytes:
    """A small noisy image: distinct per seed, and barely compressible."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def make_zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return out.getvalue()


def mixed_zip() -> bytes:
    """Two labels of good images, and one of each thing an archive must not smuggle in:
    the same image twice, text renamed .jpg, a nested zip, a path leaving the archive, a
    zip bomb entry (a JPEG signature, then 1.5 MB of zeros)."""
    return make_zip(
        [
            ("daisy/1.jpg", noisy_image(1)),
            ("daisy/2.jpg", noisy_image(2)),
            ("Tulip/1.png", noisy_image(3, "PNG")),
            ("tulip/again.jpg", noisy_image(1)),  # the same bytes as daisy/1.jpg
            ("tulip/diary.jpg", TEXT_AS_PNG),
            ("tulip/inner.jpg", make_zip([("a/1.jpg", noisy_image(4))])),
            ("../escape/1.jpg", noisy_image(5)),
            ("tulip/bomb.jpg", b"\xff\xd8\xff" + b"\x00" * 1_500_000),
        ]
    )


def overlapping_zip() -> bytes:
    """The "better zip bomb": two directory records pointing at one local file."""
    data = bytearray(make_zip([("cat/1.jpg", noisy_image(1)), ("cat/2.jpg", noisy_image(2))]))
    records = []
    at = data.find(b"PK\x01\x02")
    while at != -1:
        records.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, records[1] + 42, 0)  # the second record -> offset 0
    return bytes(data)
