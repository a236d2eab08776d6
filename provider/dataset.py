"""Folder-per-label datasets: ``DATASET/<label>/<image>``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from provider.errors import DatasetError
from provider.results import UNKNOWN

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MIN_IMAGES_PER_LABEL = 5  # below this, cross-validation and the classifier are unreliable
MAX_LABEL_LENGTH = 64


@dataclass(frozen=True, slots=True)
class DatasetItem:
    path: Path
    label: str


@dataclass(slots=True)
class DatasetScan:
    """What a dataset folder holds. ``items`` are sorted by (label, file name)."""

    root: Path
    labels: tuple[str, ...]
    items: list[DatasetItem]
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # files that are not images, by suffix

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.labels, 0)
        for item in self.items:
            out[item.label] += 1
        return out


def scan_dataset(root: Path | str, min_images: int = MIN_IMAGES_PER_LABEL) -> DatasetScan:
    """List a folder-per-label dataset. Hidden entries are skipped; symlinks are followed.

    Raises :class:`DatasetError` when ``root`` is not a folder or has fewer than two labels
    with images. Labels with fewer than ``min_images`` images are reported in ``warnings``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist or is not a folder.")
    items: list[DatasetItem] = []
    ignored: list[str] = []
    warnings: list[str] = []
    labels: list[str] = []
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"Dataset folder {root} cannot be read ({exc.strerror}).") from exc
    for label_dir in entries:
        if not label_dir.is_dir():
            continue  # files beside the label folders (README, licence) are not data
        label = label_dir.name
        if label.lower() == UNKNOWN:
            warnings.append(f"skipped folder {label!r}: {UNKNOWN!r} is the answer for no label")
            continue
        if len(label) > MAX_LABEL_LENGTH or not label.isprintable():
            warnings.append(f"skipped folder {label[:MAX_LABEL_LENGTH]!r}: not a usable label name")
            continue
        try:
            files = sorted(
                p for p in label_dir.iterdir() if not p.name.startswith(".") and p.is_file()
            )
        except OSError as exc:
            warnings.append(f"skipped folder {label!r}: it cannot be read ({exc.strerror})")
            continue
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored.extend(f"{label}/{p.name}" for p in files if p.suffix.lower() not in IMAGE_SUFFIXES)
        if not images:
            warnings.append(f"label {label!r} has no images and was left out")
            continue
        if len(images) < min_images:
            warnings.append(
                f"label {label!r} has only {len(images)} images (at least {min_images} advised)"
            )
        labels.append(label)
        items.extend(DatasetItem(p, label) for p in images)
    if len(labels) < 2:
        raise DatasetError(
            f"Dataset {root} needs at least two label folders with images; found {len(labels)}."
        )
    return DatasetScan(root, tuple(labels), items, warnings, ignored)


def file_digest(path: Path) -> str:
    """sha256 hex digest of a file's bytes (the feature-cache key)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_fingerprint(digests: list[str], labels: list[str]) -> str:
    """Order-independent fingerprint of (content, label) pairs, 16 hex digits."""
    h = hashlib.sha256()
    for digest, label in sorted(zip(digests, labels, strict=True)):
        h.update(f"{digest}\t{label}\n".encode())
    return h.hexdigest()[:16]
