"""Import of the old JSON state (``bot-state.json``, written by versions before the
database) on first start: watched channels and taught images with who taught them.

Taught images move from ``DATA_DIR/taught/<label>/`` to their server's folder (the DM ones
to the default scope). The import is idempotent (a crash midway is finished by the next
start); when it has completed the file is renamed ``bot-state.json.imported`` and the old
``taught/`` folder is left in place for the operator to delete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from bot.db.schema import LegacyWatchedChannelRow, MetaRow
from bot.db.store import Store

log = logging.getLogger(__name__)

STATE_VERSION = 1
IMPORTED_KEY = "json_state_imported"
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,30}[a-z0-9])?")
_EXTENSIONS = frozenset({"jpg", "png", "gif", "bmp", "tif", "webp"})


@dataclass
class ImportReport:
    images: int = 0
    channels: int = 0
    problems: list[str] = field(default_factory=list)


async def import_json_state(store: Store, state_path: Path) -> ImportReport | None:
    """Import ``state_path`` if it exists and was not imported; ``None`` if nothing to do."""
    if not await asyncio.to_thread(state_path.is_file):
        return None
    async with store.sessions() as s:
        if await s.get(MetaRow, IMPORTED_KEY) is not None:
            return None
    try:
        raw = json.loads(await asyncio.to_thread(state_path.read_text, "utf-8"))
        watched, taught = parse_state(raw)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        kept = set_aside(state_path)
        log.error(
            "state file %s is unusable (%s); kept as %s; nothing imported", state_path, exc, kept
        )
        return ImportReport(problems=[str(exc)])
    report = ImportReport()
    data_dir = store.data_dir.resolve()
    for i, rec in enumerate(taught):
        problem = await _import_image(store, data_dir, rec)
        if problem:
            report.problems.append(f"taught[{i}]: {problem}")
            log.warning("state import: taught[%d] not imported: %s", i, problem)
        else:
            report.images += 1
    async with store.sessions() as s, s.begin():
        known = set(await s.scalars(select(LegacyWatchedChannelRow.channel_id)))
        for cid in sorted(watched - known):
            s.add(LegacyWatchedChannelRow(channel_id=cid))
        report.channels = len(watched)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        s.add(
            MetaRow(
                key=IMPORTED_KEY,
                value=f"{stamp}: {report.images} images, "
                f"{report.channels} channels, {len(report.problems)} problems",
            )
        )
    await asyncio.to_thread(
        os.replace, state_path, state_path.with_name(state_path.name + ".imported")
    )
    store.serving.clear()
    log.info(
        "imported %s: %d taught images, %d watched channels, %d problems",
        state_path,
        report.images,
        report.channels,
        len(report.problems),
    )
    return report


async def _import_image(store: Store, data_dir: Path, rec: dict[str, object]) -> str | None:
    label, rel = str(rec["label"]), str(rec["path"])
    if not _LABEL.fullmatch(label):
        return f"invalid label {label[:40]!r}"
    src = (data_dir / rel).resolve()
    if not src.is_relative_to(data_dir / "taught"):
        return f"path {rel[:80]!r} is outside the taught folder"
    ext = src.suffix.lstrip(".").lower()
    if ext not in _EXTENSIONS:
        return f"{rel[:80]!r} is not an image file name"
    try:
        data = await asyncio.to_thread(src.read_bytes)
    except OSError as exc:
        return f"cannot read {rel[:80]!r}: {exc.strerror or exc}"
    if hashlib.sha256(data).hexdigest() != rec["sha256"]:
        log.warning("state import: %s does not match its recorded sha256; imported by content", rel)
    guild_id = rec["guild_id"]
    scope = (
        store.guild(guild_id)
        if isinstance(guild_id, int) and guild_id > 0
        else (store.default_scope())
    )
    try:
        added_at = dt.datetime.fromisoformat(str(rec["added_at"]))
        if added_at.tzinfo is None:
            added_at = added_at.replace(tzinfo=dt.UTC)
    except ValueError:
        added_at = None
    await scope.add_taught(
        label,
        data,
        ext,
        user_id=int(rec["user_id"]),  # type: ignore[call-overload]
        user_name=str(rec["user_name"]),
        added_at=added_at,
        check_quotas=False,
    )
    return None


def set_aside(path: Path) -> Path | None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    broken = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, broken)
    except OSError:
        return None
    return broken


def parse_state(raw: object) -> tuple[set[int], list[dict[str, object]]]:
    """The state in a decoded file; ``ValueError`` naming what does not fit the schema."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("version", STATE_VERSION) != STATE_VERSION:
        raise ValueError(f"unsupported version {raw['version']!r}")
    channels = raw.get("watched_channels", [])
    if not isinstance(channels, list) or not all(_is_int(c) and c > 0 for c in channels):
        raise ValueError("watched_channels is not a list of channel ids")
    records = raw.get("taught", [])
    if not isinstance(records, list):
        raise ValueError("taught is not a list")
    return set(channels), [_taught(r, i) for i, r in enumerate(records)]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_FIELDS: dict[str, Callable[[object], bool]] = {
    "label": lambda v: isinstance(v, str),
    "sha256": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str),
    "user_id": _is_int,
    "user_name": lambda v: isinstance(v, str),
    "guild_id": lambda v: v is None or _is_int(v),
    "added_at": lambda v: isinstance(v, str),
}


def _taught(raw: object, index: int) -> dict[str, object]:
    if not isinstance(raw, dict) or set(raw) != set(_FIELDS):
        raise ValueError(f"taught[{index}] does not have the fields {', '.join(_FIELDS)}")
    for name, ok in _FIELDS.items():
        if not ok(raw[name]):
            raise ValueError(f"taught[{index}].{name} has the wrong type")
    return raw
