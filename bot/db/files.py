"""Where a scope's files live: ``DATA_DIR/guilds/<id>/images`` and ``.../models``.

Image bytes are content-addressed (``<sha256>.<ext>``); model files are named by the
backend (``<model_id>.model``). Files are written atomically; a file only counts once a
database row names it (``bot.db.store``); ``bot.db.repair`` sets aside any that is not.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from bot.db.schema import DEFAULT_SCOPE

log = logging.getLogger(__name__)


def scope_dir(data_dir: Path, scope_id: int) -> Path:
    name = "default" if scope_id == DEFAULT_SCOPE else str(scope_id)
    return data_dir / "guilds" / name


def scope_id_of(folder_name: str) -> int | None:
    """The scope a folder under ``guilds/`` belongs to; ``None`` if it is not ours."""
    if folder_name == "default":
        return DEFAULT_SCOPE
    return int(folder_name) if folder_name.isdigit() and int(folder_name) > 0 else None


def images_dir(data_dir: Path, scope_id: int) -> Path:
    return scope_dir(data_dir, scope_id) / "images"


def models_dir(data_dir: Path, scope_id: int) -> Path:
    return scope_dir(data_dir, scope_id) / "models"


def feedback_dir(data_dir: Path, scope_id: int) -> Path:
    """Images kept for feedback: answered images (for a while) and the review queue's."""
    return scope_dir(data_dir, scope_id) / "feedback"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def is_file_in(path: Path, folder: Path) -> bool:
    return path.parent.resolve() == folder.resolve() and path.is_file()


def unlink(path: Path) -> None:
    """Remove a file if it is there; a failure is logged, never raised (cleanup paths)."""
    try:
        path.unlink()
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        log.error("could not remove %s: %s", path, exc)
