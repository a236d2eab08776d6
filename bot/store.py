"""The bot's small persistent state: watched channels and /teach records (one JSON file).

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.errors import UserError

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


class StateSaveError(UserError):
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

    def load(self) -> None:
        """Read the file if it exists. A file that cannot be read or does not have the
        expected shape is kept aside under a unique name, and the bot starts empty."""
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            watched, taught = parse_state(raw)
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            self._set_aside(exc)
            return
        self.watched, self.taught = watched, taught

    def _set_aside(self, exc: Exception) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        broken = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while broken.exists():
            n += 1
            broken = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, broken)
        except OSError as move_exc:
            log.error(
                "state file %s is unusable (%s) and could not be moved aside (%s); "
                "starting with no watched channels and no taught images",
                self.path,
                exc,
                move_exc,
            )
            return
        log.error(
            "state file %s is unusable (%s); kept as %s; "
            "starting with no watched channels and no taught images",
            self.path,
            exc,
            broken,
        )

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


def parse_state(raw: object) -> tuple[set[int], list[TaughtImage]]:
    """The state in a decoded file; ``ValueError`` naming what does not fit the schema."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("version", STATE_VERSION) != STATE_VERSION:
        raise ValueError(f"unsupported version {raw['version']!r}")
    channels = raw.get("watched_channels", [])
    if not isinstance(channels, list) or not all(_is_int(c) for c in channels):
        raise ValueError("watched_channels is not a list of channel ids")
    records = raw.get("taught", [])
    if not isinstance(records, list):
        raise ValueError("taught is not a list")
    return set(channels), [_taught_image(r, i) for i, r in enumerate(records)]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_optional_int(value: object) -> bool:
    return value is None or _is_int(value)


_TAUGHT_FIELDS: dict[str, Callable[[object], bool]] = {
    "label": _is_str,
    "sha256": _is_str,
    "path": _is_str,
    "user_id": _is_int,
    "user_name": _is_str,
    "guild_id": _is_optional_int,
    "added_at": _is_str,
}


def _taught_image(raw: object, index: int) -> TaughtImage:
    if not isinstance(raw, dict) or set(raw) != set(_TAUGHT_FIELDS):
        raise ValueError(f"taught[{index}] does not have the fields {', '.join(_TAUGHT_FIELDS)}")
    for name, ok in _TAUGHT_FIELDS.items():
        if not ok(raw[name]):
            raise ValueError(f"taught[{index}].{name} has the wrong type")
    return TaughtImage(**raw)


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
