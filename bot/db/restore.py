"""``python -m bot db restore FILE [--force]``: an archive of ``bot.db.backup`` back into
``DATABASE_URL`` and ``DATA_DIR``.

Every member's sha256 is checked against the manifest before anything changes. A target
that holds data is refused unless ``force`` (then the folder's files and a SQLite
database file move to ``DATA_DIR/set-aside/<time>-before-restore/``; a PostgreSQL
database's tables are dropped). The files are written (each hash checked again), the
snapshot is brought to this code's schema and put in place (SQLite: the file; PostgreSQL:
copied table by table), and every table is checked against the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db.backup import (
    CHUNK,
    DATA,
    DATABASE,
    FORMAT,
    MANIFEST,
    VERSION,
    ArchiveInvalid,
    BackupError,
    TargetOccupied,
)
from bot.db.copy import (
    Progress,
    TableSummary,
    copy_database,
    drop_everything,
    rows_in,
    sqlite_path,
    summarise,
)
from bot.db.engine import code_heads, make_engine, safe_url, upgrade
from bot.db.identity import IDENTITY_FILE
from bot.db.repair import SET_ASIDE, SET_ASIDE_STAMP
from bot.db.schema import utcnow


@dataclass
class RestoreReport:
    tables: list[TableSummary]
    files: int
    set_aside: Path | None


def read_manifest(archive: Path, progress: Progress | None = None) -> dict[str, Any]:
    """The verified manifest: every member present, no other, every sha256 equal."""
    if not archive.is_file():
        raise BackupError(f"{archive} does not exist.")
    try:
        with tarfile.open(archive, "r:") as tar:
            names = tar.getnames()
            if MANIFEST not in names:
                raise ArchiveInvalid(f"{archive} is not a backup of this bot (no {MANIFEST}).")
            raw = tar.extractfile(MANIFEST)
            assert raw is not None
            manifest = json.loads(raw.read(256 << 20))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ArchiveInvalid(f"{archive} is not a backup of this bot.")
            if manifest.get("version") != VERSION:
                raise ArchiveInvalid(
                    f"{archive} is a backup format version {manifest.get('version')!r}; this "
                    f"version of the bot reads version {VERSION}."
                )
            members: dict[str, dict[str, Any]] = manifest["members"]
            listed, present = set(members), set(names) - {MANIFEST}
            if listed != present or len(names) != len(set(names)):
                raise ArchiveInvalid(
                    f"{archive} does not hold what its manifest lists "
                    f"({len(listed - present)} missing, {len(present - listed)} unlisted)."
                )
            _check_names(present)
            last = 0.0
            for i, member in enumerate(tar.getmembers(), 1):
                if member.name == MANIFEST:
                    continue
                if not member.isfile():
                    raise ArchiveInvalid(f"{member.name} in {archive} is not a file.")
                f = tar.extractfile(member)
                assert f is not None
                sha = hashlib.sha256()
                while chunk := f.read(CHUNK):
                    sha.update(chunk)
                if sha.hexdigest() != members[member.name]["sha256"]:
                    raise ArchiveInvalid(
                        f"{member.name} in {archive} does not match its sha256 in the manifest: "
                        "the archive is damaged."
                    )
                if progress is not None and time.monotonic() - last >= 2.0:
                    last = time.monotonic()
                    progress("verifying", i, len(names))
    except (tarfile.TarError, OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveInvalid(f"{archive} cannot be read as a backup ({exc}).") from exc
    return manifest


def _check_names(names: set[str]) -> None:
    """Only ``database.sqlite`` and plain relative paths under ``data/`` (no ``..``)."""
    for name in names:
        parts = Path(name).parts
        ok = name == DATABASE or (
            len(parts) >= 2
            and parts[0] == DATA
            and not Path(name).is_absolute()
            and all(p not in ("", ".", "..") for p in parts)
        )
        if not ok:
            raise ArchiveInvalid(f"the archive holds an unexpected member {name!r}")


def _data_files(data_dir: Path) -> list[Path]:
    if not data_dir.is_dir():
        return []
    found = [p for p in (data_dir / "guilds").rglob("*") if p.is_file()]
    identity = data_dir / IDENTITY_FILE
    return [*found, identity] if identity.is_file() else found


async def restore(
    url: str,
    data_dir: Path,
    archive: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> RestoreReport:
    """Restore the archive into ``url`` and ``data_dir`` (see the module docstring)."""
    manifest = await asyncio.to_thread(read_manifest, archive, progress)
    revision = manifest["database"]["revision"]
    from alembic.script import ScriptDirectory

    from bot.db.engine import alembic_config

    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except Exception:
        raise BackupError(
            f"The backup's database is at revision {revision}, which this version of the bot "
            f"does not know (it knows up to {', '.join(code_heads())}): restore it with a "
            "newer version."
        ) from None
    engine = make_engine(url)
    try:
        set_aside = await _clear_target(engine, url, data_dir, force)
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as tmp:
            written = await asyncio.to_thread(
                _extract, archive, manifest, data_dir, Path(tmp), progress
            )
            snapshot = Path(tmp) / DATABASE
            frozen = make_engine(f"sqlite+aiosqlite:///{snapshot}")
            try:
                await upgrade(frozen)  # this code's schema (no-op when it is already)
                if engine.dialect.name == "sqlite":
                    await frozen.dispose()
                    await engine.dispose()
                    target = sqlite_path(url)
                    assert target is not None
                    await asyncio.to_thread(_place_file, snapshot, target)
                    tables = await summarise(engine)
                else:
                    tables = await copy_database(frozen, engine, progress)
            finally:
                await frozen.dispose()
        expected = manifest["database"]["tables"]
        if revision in code_heads():
            got = {t.name: {"rows": t.rows, "sha256": t.sha256} for t in tables}
            if got != expected:
                raise ArchiveInvalid("the restored database does not match the manifest")
        else:
            for t in tables:
                if t.name in expected and expected[t.name]["rows"] != t.rows:
                    raise ArchiveInvalid(f"the restored table {t.name} lacks rows")
        return RestoreReport(tables, written, set_aside)
    finally:
        await engine.dispose()


async def _clear_target(engine: Any, url: str, data_dir: Path, force: bool) -> Path | None:
    """Refuse (or with ``force`` clear) a target that holds data; where old files went. A
    SQLite database file without rows is moved aside too (with its WAL: a stale one
    beside the restored file would be replayed into it)."""
    db_file = sqlite_path(url)
    exists = db_file is None or await asyncio.to_thread(db_file.is_file)
    occupied = await rows_in(engine) if exists else {}
    await engine.dispose()
    existing = await asyncio.to_thread(_data_files, data_dir)
    if (occupied or existing) and not force:
        held = []
        if occupied:
            held.append(f"the database {safe_url(url)} has {sum(occupied.values())} rows")
        if existing:
            held.append(f"{data_dir} holds {len(existing)} data files")
        raise TargetOccupied(
            f"Refusing to restore over existing data: {' and '.join(held)}. Restore into an "
            "empty database and folder, or add --force to replace them (the files and a "
            "SQLite database file are moved to DATA_DIR/set-aside/, a PostgreSQL database's "
            "tables are dropped)."
        )
    move_db = db_file is not None and exists
    if not existing and not move_db:
        if occupied:  # PostgreSQL, --force
            await drop_everything(engine)
        return None
    aside = data_dir / SET_ASIDE / (utcnow().strftime(SET_ASIDE_STAMP) + "-before-restore")
    await asyncio.to_thread(_move_aside, data_dir, aside, db_file if move_db else None)
    if occupied and db_file is None:
        await drop_everything(engine)
    return aside


def _move_aside(data_dir: Path, aside: Path, db_file: Path | None) -> None:
    aside.mkdir(parents=True)
    for name in ("guilds", IDENTITY_FILE):
        if (data_dir / name).exists():
            os.replace(data_dir / name, aside / name)
    if db_file is not None:
        for suffix in ("", "-wal", "-shm"):
            path = db_file.with_name(db_file.name + suffix)
            if path.exists():
                shutil.move(path, aside / path.name)


def _extract(
    archive: Path, manifest: dict[str, Any], data_dir: Path, tmp: Path, progress: Progress | None
) -> int:
    """Write every member (files into ``data_dir``, the database into ``tmp``), checking
    each sha256 again as it is written; the number of data files."""
    members: dict[str, dict[str, Any]] = manifest["members"]
    written = 0
    last = 0.0
    with tarfile.open(archive, "r:") as tar:
        for i, member in enumerate(tar.getmembers(), 1):
            if member.name == MANIFEST:
                continue
            if member.name == DATABASE:
                dest = tmp / DATABASE
            else:
                dest = data_dir / Path(member.name).relative_to(DATA)
                written += 1
            f = tar.extractfile(member)
            assert f is not None
            _write_checked(f, dest, members[member.name]["sha256"])
            if progress is not None and time.monotonic() - last >= 2.0:
                last = time.monotonic()
                progress("writing files", i, len(members))
    return written


def _write_checked(source: Any, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                sha.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha.hexdigest() != sha256:
            raise ArchiveInvalid(f"{dest.name} changed while it was restored")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _place_file(snapshot: Path, target: Path) -> None:
    if not target.parent.is_dir():
        raise BackupError(f"The database's folder {target.parent} does not exist.")
    staged = target.with_name(target.name + ".restoring")
    shutil.copyfile(snapshot, staged)
    with staged.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(staged, target)
