"""TEST FIXTURE: the JSON state writer of the bot before the database (bot/store.py and
``save_taught_image`` of bot/teaching.py at commit 752dc0c, the reading half left out), kept
to write state files exactly as deployed bots did, for the import tests.

The bot's small persistent state: watched channels and /teach records (one JSON file).

Writes are atomic (temporary file + ``os.replace``) and serialised by a lock. The file is
``{"version": 1, "watched_channels": [int, ...], "taught": [TaughtImage fields, ...]}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class TaughtImage:
    label: str
    sha256: str
    path: str  # relative to data_dir
    user_id: int
    user_name: str
    guild_id: int | None
    added_at: str  # ISO 8601, UTC


class StateSaveError(Exception):
    """The state file could not be written; memory was left as it was."""

    def __init__(self) -> None:
        super().__init__(
            "I couldn't save that to my state file, so nothing was changed. "
            "The error has been logged for the bot's operator."
        )


class BotStore:
    """Watched channels and /teach records, kept in memory and in one JSON file.

    Changes are written first and applied in memory only once the write succeeded, so
    memory and disk never disagree.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self.watched: set[int] = set()
        self.taught: list[TaughtImage] = []

    async def _write(self, watched: set[int], taught: list[TaughtImage]) -> None:
        """Write this state (the caller holds the lock); :class:`StateSaveError` on failure."""
        snapshot = {
            "version": STATE_VERSION,
            "watched_channels": sorted(watched),
            "taught": [asdict(t) for t in taught],
        }
        try:
            await asyncio.to_thread(write_atomic, self.path, json.dumps(snapshot, indent=1))
        except OSError as exc:
            log.error("could not write the state file %s: %s", self.path, exc)
            raise StateSaveError() from exc

    async def set_watched(self, channel_id: int, on: bool) -> bool:
        """Watch or unwatch a channel; return whether anything changed."""
        async with self._lock:
            if (channel_id in self.watched) == on:
                return False
            watched = self.watched | {channel_id} if on else self.watched - {channel_id}
            await self._write(watched, self.taught)
            self.watched = watched
            return True

    async def add_taught(self, record: TaughtImage) -> bool:
        """Record a taught image; ``False`` if that image already has that label."""
        async with self._lock:
            if any(t.sha256 == record.sha256 and t.label == record.label for t in self.taught):
                return False
            taught = [*self.taught, record]
            await self._write(self.watched, taught)
            self.taught = taught
            return True


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
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


def save_taught_image(
    data_dir: Path,
    label: str,
    data: bytes,
    *,
    user_id: int,
    user_name: str,
    guild_id: int | None,
) -> TaughtImage:
    """Write ``data`` under ``taught/<label>/`` (content-addressed) and describe it."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    folder = data_dir / "taught" / label
    path = folder / f"{digest}.jpg"
    if not path.exists():
        write_atomic(path, data)
    return TaughtImage(
        label=label,
        sha256=digest,
        path=str(path.relative_to(data_dir)),
        user_id=user_id,
        user_name=user_name,
        guild_id=guild_id,
        added_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
