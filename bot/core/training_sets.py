"""What a retrain trains on, built from the taught images' records.

A taught image is stored by ``ScopedData.add_taught`` (``bot/db``) in its server's folder.
Training follows the database records, never the folder's contents: a server's
``TrainingSet`` lists its recorded images; the default scope's dataset is a folder of
symlinks to the base dataset plus the default scope's recorded images.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from bot.core.errors import UserError
from bot.core.settings import Settings
from bot.db import TaughtRecord
from golem_backend import Example, TrainingSet

log = logging.getLogger(__name__)


def visible(path: Path) -> bool:
    """Not hidden: skips dotfiles such as ``write_atomic``'s ``.<name>.XXXX.tmp``."""
    return not path.name.startswith(".")


def base_dataset(settings: Settings) -> Path:
    """``DATASET_DIR`` if set, else the dataset shipped with the package."""
    if settings.dataset_dir is not None:
        return settings.dataset_dir
    from golem_backend import default_dataset  # the shipped copy (provider.train)

    return Path(default_dataset())


def server_training_set(
    out_dir: Path, records: list[TaughtRecord], include_default: bool
) -> TrainingSet:
    """What a server's /retrain trains on: exactly its recorded images."""
    if not records and not include_default:
        raise UserError(
            "This server has no taught images and does not include the default dataset "
            "(`/settings include_default:`): there is nothing to train on. Add images with "
            "/teach first."
        )
    examples = tuple(Example(r.path, r.label) for r in records)
    return TrainingSet(out_dir=out_dir, examples=examples, include_default=include_default)


def build_default_dataset(settings: Settings, records: list[TaughtRecord]) -> Path:
    """The folder ``/retrain scope:default`` trains on: the base dataset plus the default
    scope's recorded images (taught in DMs by the operators).

    Without such images this is the base dataset itself. Otherwise a fresh
    ``data_dir/training-view/<label>/`` tree of symlinks (copies where symlinks are not
    supported) is built beside the old one and swapped in.
    """
    base = base_dataset(settings)
    if not records:
        return base
    view = settings.data_dir / "training-view"
    tmp = settings.data_dir / f".training-view-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    sources: list[tuple[str, Path, str]] = []
    for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and visible(p)):
        for f in sorted(label_dir.iterdir()):
            if f.is_file() and visible(f):
                sources.append((label_dir.name, f, f.name))
    sources += [(r.label, r.path, f"taught-{r.path.name}") for r in records]
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
    log.info("training view: %d images (%d taught) from %s", len(sources), len(records), base)
    return view
