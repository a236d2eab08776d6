"""Make the compact FLOWERS17 copy shipped in the package (``provider/data/flowers17``).

Reads the full dataset (one folder per label, e.g. ``daisy/image_0801.jpg``), and writes
every image as ``<out>/<label>/<same name>.jpg``: decoded by the project's one decoder
(:func:`provider.imageio.decode_image`, so EXIF orientation is applied), resized so the
shorter side is 256 px (``cv2.INTER_AREA``; never upscaled), and re-encoded as baseline
JPEG without EXIF/ICC metadata. The JPEG quality is the highest of 85, 80, 75, ... that
keeps the whole folder under the size budget (28 MB by default). It also writes the
folder's ``README.md`` (source, citation, licence situation, how it was made).

Run from anywhere (the default source is ``../shared/datasets/flowers17`` relative to the
repository root)::

    python tools/make_compact_dataset.py [SOURCE] [--out provider/data/flowers17]
"""

from __future__ import annotations

import argparse
import io
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so that `python tools/make_compact_dataset.py` works
    sys.path.insert(0, str(REPO_ROOT))

from provider.errors import ImageError  # noqa: E402
from provider.imageio import decode_image  # noqa: E402

DEFAULT_SOURCE = REPO_ROOT / ".." / "shared" / "datasets" / "flowers17"
DEFAULT_OUT = REPO_ROOT / "provider" / "data" / "flowers17"
SHORTER_SIDE = 256  # pixels
BUDGET_BYTES = 28_000_000  # the whole folder, README included
QUALITIES = (85, 80, 75, 70, 65, 60, 55, 50)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})


def resize_shorter_side(rgb: np.ndarray, shorter: int = SHORTER_SIDE) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image so min(H, W) == ``shorter`` px; never upscale."""
    height, width = rgb.shape[:2]
    if min(height, width) <= shorter:
        return rgb
    scale = shorter / min(height, width)
    if height <= width:
        size = (max(shorter, round(width * scale)), shorter)  # cv2 wants (width, height)
    else:
        size = (shorter, max(shorter, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline (non-progressive) Huffman-optimised JPEG of an RGB array, no metadata."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def list_images(source: Path) -> list[tuple[str, Path]]:
    """(label, path) of every image in ``source/<label>/``, sorted; labels are folder names."""
    return [
        (label_dir.name, path)
        for label_dir in sorted(p for p in source.iterdir() if p.is_dir())
        for path in sorted(label_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]


def compact_images(items: Sequence[tuple[str, Path]]) -> Iterator[tuple[str, Path, np.ndarray]]:
    """Yield (label, source path, resized RGB array) for each decodable image; report others."""
    for label, path in items:
        try:
            rgb = decode_image(path)
        except ImageError as err:
            print(f"skipped {label}/{path.name}: {err}", file=sys.stderr)
            continue
        yield label, path, resize_shorter_side(rgb)


def choose_quality(items: Sequence[tuple[str, Path]], budget: int) -> tuple[int, dict[int, int]]:
    """Highest quality in QUALITIES whose total encoded size fits ``budget`` bytes.

    One pass: every image is decoded and resized once and encoded at every quality, so
    only the sizes are kept in memory. Returns (quality, {quality: total bytes}).
    """
    totals = dict.fromkeys(QUALITIES, 0)
    for _, _, small in compact_images(items):
        for quality in QUALITIES:
            totals[quality] += len(encode_jpeg(small, quality))
    for quality in QUALITIES:
        if totals[quality] <= budget:
            return quality, totals
    raise SystemExit(f"even quality {QUALITIES[-1]} does not fit {budget} bytes: {totals}")


def write_dataset(items: Sequence[tuple[str, Path]], out: Path, quality: int) -> tuple[int, int]:
    """Write every image to ``out/<label>/<stem>.jpg``; delete stale JPEGs. (files, bytes)."""
    written: set[Path] = set()
    total = 0
    for label, path, small in compact_images(items):
        target = out / label / f"{path.stem}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        data = encode_jpeg(small, quality)
        target.write_bytes(data)
        written.add(target)
        total += len(data)
    for stale in out.glob("*/*.jpg"):
        if stale not in written:
            stale.unlink()
    return len(written), total


def readme_text(n_images: int, labels: Sequence[str], quality: int, total_bytes: int) -> str:
    """The README.md of the compact copy (markdown)."""
    classes = textwrap.fill(f"Classes: {', '.join(labels)}.", width=88)
    return f"""# FLOWERS17, compact copy

{n_images} images in {len(labels)} classes, one folder per class, file names as in the
original. {classes}

**Source**: the Oxford 17 Category Flower Dataset by Maria-Elena Nilsback and Andrew
Zisserman, Visual Geometry Group, University of Oxford,
<https://www.robots.ox.ac.uk/~vgg/data/flowers/17/>. Cite: M.-E. Nilsback and
A. Zisserman, "A Visual Vocabulary for Flower Classification", CVPR 2006.

**This is a downscaled copy**, made by `tools/make_compact_dataset.py` from the original
images: EXIF orientation applied, shorter side resized to {SHORTER_SIDE} px with
`cv2.INTER_AREA` (never upscaled), re-encoded as baseline JPEG at quality {quality}
with all metadata (EXIF, ICC) stripped. Total size of the images: {total_bytes / 1e6:.1f} MB.
It is meant for training the default model, for tests and for demos; accuracy measured
on it can differ slightly from results on the full-resolution originals.

**Licence**: the dataset is distributed by the VGG group from the page above for research
use. It does not come with an explicit open licence, and the images were collected from
the web, so the copyright of each photograph stays with its author. This copy is therefore
**not** covered by the licence of this repository (GPL-3.0-or-later); it is included, as a
downscaled research copy, for convenience. Anyone redistributing it, or using it beyond
research and evaluation, should check the terms on the VGG page first (or remove this
folder and point the trainer at their own dataset).
"""


def folder_size(folder: Path) -> int:
    """Total size in bytes of the regular files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--budget", type=int, default=BUDGET_BYTES, help="bytes, whole folder")
    args = parser.parse_args(argv)

    source: Path = args.source.resolve()
    out: Path = args.out.resolve()
    if not source.is_dir():
        print(f"no dataset folder at {source}", file=sys.stderr)
        return 1
    items = list_images(source)
    labels = sorted({label for label, _ in items})
    print(f"{len(items)} images in {len(labels)} labels under {source}")

    start = time.perf_counter()
    readme_allowance = 4096
    quality, totals = choose_quality(items, args.budget - readme_allowance)
    sizes = ", ".join(f"q{q}: {size / 1e6:.1f} MB" for q, size in totals.items())
    print(f"encoded sizes: {sizes}; using quality {quality}")

    n_written, image_bytes = write_dataset(items, out, quality)
    (out / "README.md").write_text(readme_text(n_written, labels, quality, image_bytes))
    total = folder_size(out)
    print(
        f"wrote {n_written} images to {out} in {time.perf_counter() - start:.0f} s: "
        f"{total} bytes ({total / 1e6:.1f} MB) at JPEG quality {quality}"
    )
    if n_written != len(items):
        print(f"{len(items) - n_written} images could not be decoded", file=sys.stderr)
        return 1
    return 0 if total <= args.budget else 1


if __name__ == "__main__":
    raise SystemExit(main())
