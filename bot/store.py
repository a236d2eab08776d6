"""The bot's small persistent state: watched channels and /teach records (one JSON file).

Writes are atomic (temporary file + ``os.replace``) and serialised by a lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaughtImage:
    label: str
    sha256: str
    path: str  # relative to data_dir
    user_id: int
    user_name: str
    guild_id: int | None
    added_at: str  # ISO 8601, UTC


class BotStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self.watched: set[int] = set()
        self.taught: list[TaughtImage] = []

    def load(self) -> None:
        """Read the file if it exists; a corrupt file is kept aside and replaced."""
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            self.watched = {int(c) for c in raw.get("watched_channels", [])}
            self.taught = [TaughtImage(**t) for t in raw.get("taught", [])]
        except FileNotFoundError:
            return
        except (ValueError, TypeError) as exc:
            broken = self.path.with_suffix(".corrupt")
            log.error("state file %s is unreadable (%s); moved to %s", self.path, exc, broken)
            os.replace(self.path, broken)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "watched_channels": sorted(self.watched),
            "taught": [asdict(t) for t in self.taught],
        }

    async def save(self) -> None:
        async with self._lock:
            await asyncio.to_thread(write_atomic, self.path, json.dumps(self._snapshot(), indent=1))

    async def set_watched(self, channel_id: int, on: bool) -> bool:
        """Watch or unwatch a channel; return whether anything changed."""
        changed = (channel_id in self.watched) != on
        if changed:
            (self.watched.add if on else self.watched.discard)(channel_id)
            await self.save()
        return changed

    async def add_taught(self, record: TaughtImage) -> bool:
        """Record a taught image; ``False`` if that image already has that label."""
        if any(t.sha256 == record.sha256 and t.label == record.label for t in self.taught):
            return False
        self.taught.append(record)
        await self.save()
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
