"""/teach storage and the training set for /retrain (shipped dataset + taught images).

Taught images live at ``data_dir/taught/<label>/<sha256>.<ext>``; who taught them and when
is recorded in the bot's state file. ``build_training_dataset`` merges them with the
shipped (or configured) dataset as a folder of symlinks, without copying image bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from bot.download import sniff_image
from bot.errors import UserError
from bot.settings import Settings
from bot.store import TaughtImage, write_atomic
from golem_backend import UNKNOWN

log = logging.getLogger(__name__)

LABEL_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")
LABEL_RULES = (
    "Labels are 1-32 characters: lowercase letters a-z, digits, '_' or '-', "
    "starting and ending with a letter or digit."
)
_EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "tiff": "tif",
    "webp": "webp",
}


def normalize_label(raw: str) -> str:
    """The canonical form of a label typed by a user, or :class:`UserError`.

    Case is folded and inner spaces become ``_``; anything that could escape the taught
    folder (``/``, ``\\``, ``..``, NUL, non-ASCII look-alikes) fails the pattern.
    """
    label = raw.strip().lower().replace(" ", "_")
    if not LABEL_PATTERN.fullmatch(label):
        raise UserError(f"{label[:40]!r} is not a valid label. {LABEL_RULES}")
    if label == UNKNOWN:
        raise UserError(f"'{UNKNOWN}' is reserved for images the model does not recognise.")
    return label


def taught_root(settings: Settings) -> Path:
    return settings.data_dir / "taught"


def save_taught_image(
    settings: Settings,
    label: str,
    data: bytes,
    *,
    user_id: int,
    user_name: str,
    guild_id: int | None,
) -> TaughtImage:
    """Write ``data`` under ``taught/<label>/`` (content-addressed) and describe it."""
    label = normalize_label(label)
    kind = sniff_image(data[:32])
    if kind is None:
        raise UserError("That file is not an image.")
    digest = hashlib.sha256(data).hexdigest()
    folder = taught_root(settings) / label
    path = folder / f"{digest}.{_EXTENSIONS[kind]}"
    if path.resolve().parent != folder.resolve():  # defence in depth; the pattern forbids it
        raise UserError(LABEL_RULES)
    if not path.exists():
        write_atomic(path, data)
    return TaughtImage(
        label=label,
        sha256=digest,
        path=str(path.relative_to(settings.data_dir)),
        user_id=user_id,
        user_name=user_name,
        guild_id=guild_id,
        added_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def visible(path: Path) -> bool:
    """Not hidden: skips dotfiles such as ``write_atomic``'s ``.<name>.XXXX.tmp``."""
    return not path.name.startswith(".")


def taught_files(root: Path) -> list[Path]:
    """The taught images under ``root/<label>/``, without temporary or hidden files."""
    if not root.is_dir():
        return []
    return sorted(
        f
        for label_dir in root.iterdir()
        if label_dir.is_dir() and visible(label_dir)
        for f in label_dir.iterdir()
        if f.is_file() and visible(f)
    )


def base_dataset(settings: Settings) -> Path:
    """``DATASET_DIR`` if set, else the dataset shipped with the package."""
    if settings.dataset_dir is not None:
        return settings.dataset_dir
    from golem_backend import default_dataset  # the shipped copy (provider.train)

    return Path(default_dataset())


def build_training_dataset(settings: Settings) -> Path:
    """The folder /retrain trains on: the base dataset merged with the taught images.

    Without taught images this is the base dataset itself. Otherwise a fresh
    ``data_dir/training-view/<label>/`` tree of symlinks (copies where symlinks are not
    supported) is built beside the old one and swapped in.
    """
    base = base_dataset(settings)
    root = taught_root(settings)
    taught = taught_files(root)
    if not taught:
        return base
    view = settings.data_dir / "training-view"
    tmp = settings.data_dir / f".training-view-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    sources: list[tuple[str, Path, str]] = []
    for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and visible(p)):
        for f in sorted(label_dir.iterdir()):
            if f.is_file() and visible(f):
                sources.append((label_dir.name, f, f.name))
    sources += [(f.parent.name, f, f"taught-{f.name}") for f in taught]
    for label, src, name in sources:
        dest = tmp / label / name
        dest.parent.mkdir(exist_ok=True)
        try:
            os.symlink(src.resolve(), dest)
        except OSError:
            shutil.copyfile(src, dest)
    old = settings.data_dir / f".training-view-old-{uuid.uuid4().hex[:8]}"
    if view.exists():
        os.replace(view, old)
    os.replace(tmp, view)
    shutil.rmtree(old, ignore_errors=True)
    log.info("training view: %d images (%d taught) from %s", len(sources), len(taught), base)
    return view
