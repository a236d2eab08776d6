"""The files the soak sends: good photos, and the hostile files of issue 9, built at run time.

Nothing large is committed: scan bombs are rewritten from the shipped daisy photo
(``tests/scan_bomb.py``), the maximum-size PNGs are drawn with Pillow and cached under
``bench/out/soak/`` (about 40 s to draw once, then reused).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from bench.common import OUT, SHARED_ANIMALS
from tests.scan_bomb import scan_bomb

FLOWERS = Path(__file__).resolve().parents[2] / "provider" / "data" / "flowers17"
CACHE = OUT / "soak"
SIDE = 6324  # 6324 x 6324 = 39.99 megapixels, just under the default 40 MP limit


@dataclass(frozen=True)
class Upload:
    """One attachment to send: ``kind`` names it in the figures."""

    kind: str
    name: str
    data: bytes
    content_type: str | None
    declared_size: int | None = None  # what the attachment claims; None = the truth


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def max_size_pngs() -> dict[str, bytes]:
    """RGBA and 16-bit grey PNGs of 40 MP (small files that decode to the largest buffers)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("max-rgba.png", "max-gray16.png"):
        path = CACHE / name
        if not path.exists():
            print(f"drawing {name} ({SIDE}x{SIDE}) once...", flush=True)
            if name == "max-rgba.png":
                image = Image.new("RGBA", (SIDE, SIDE), (30, 120, 40, 200))
                draw = ImageDraw.Draw(image)
                for i in range(0, SIDE, 400):
                    draw.ellipse((i, i, i + 900, i + 600), fill=(230, 200, 20, 255))
            else:
                image = Image.new("I;16", (SIDE, SIDE), 30000)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_png(image))
            tmp.replace(path)
        out[name] = path.read_bytes()
    return out


class Corpus:
    """Good photos (FLOWERS17, and ``../shared`` animals as other subjects when present),
    the hostile files, and the images admins teach."""

    def __init__(self, max_image_bytes: int, teach_labels: tuple[str, ...]) -> None:
        self.good = sorted(FLOWERS.glob("*/*.jpg"))
        if SHARED_ANIMALS.is_dir():
            self.good += sorted(p for p in SHARED_ANIMALS.glob("*/*") if p.suffix == ".jpg")
        #: images taught per label, in order (each one new to the server)
        self.teachable = {label: sorted((FLOWERS / label).glob("*.jpg")) for label in teach_labels}
        self.hostile = self._hostile(max_image_bytes)

    def good_upload(self, rng: random.Random) -> Upload:
        path = rng.choice(self.good)
        return Upload("good", path.name, path.read_bytes(), "image/jpeg")

    def hostile_upload(self, rng: random.Random) -> Upload:
        return rng.choice(self.hostile)

    def upload(self, rng: random.Random, hostile_share: float) -> Upload:
        if rng.random() < hostile_share:
            return self.hostile_upload(rng)
        return self.good_upload(rng)

    def _hostile(self, max_bytes: int) -> list[Upload]:
        photo = (FLOWERS / "daisy" / "image_0801.jpg").read_bytes()
        pngs = max_size_pngs()
        noise = random.Random(9).randbytes(4096)
        corrupt = bytearray(photo)
        middle = len(corrupt) // 2
        corrupt[middle : middle + len(noise)] = noise
        garbled = photo[:2] + noise[:400] + photo[402:]
        oversized = photo + bytes(max_bytes + 1 - len(photo))
        over_lying = photo + bytes(max_bytes + 64 * 1024 - len(photo))
        return [
            Upload("scan-bomb", "bomb.jpg", scan_bomb(1000), "image/jpeg"),
            Upload("scan-bomb", "bomb-big.jpg", scan_bomb(6000), "image/jpeg"),
            Upload("max-png", "huge-rgba.png", pngs["max-rgba.png"], "image/png"),
            Upload("max-png", "huge-gray16.png", pngs["max-gray16.png"], "image/png"),
            Upload("oversized", "big.jpg", oversized, "image/jpeg"),
            # claims to be small: the size cap must hold while streaming
            Upload("oversized", "liar.jpg", over_lying, "image/jpeg", declared_size=300_000),
            Upload("not-image", "report.pdf", b"%PDF-1.4\n" + noise, "application/pdf"),
            Upload("not-image", "notes.jpg", b"just some text, named .jpg\n" * 40, "image/jpeg"),
            Upload("truncated", "cut.jpg", photo[: len(photo) // 2], "image/jpeg"),
            Upload("corrupt", "noisy.jpg", bytes(corrupt), "image/jpeg"),
            Upload("corrupt", "garbled.jpg", garbled, "image/jpeg"),
        ]
