"""``python -m bot db backup FILE`` and ``restore FILE``: one archive holding a consistent
snapshot of the database, the files its rows name and a manifest with every member's
sha256, taken while the bot runs.

The archive is a tar file: ``database.sqlite`` (the snapshot: SQLite's ``VACUUM INTO``, or
for PostgreSQL a copy made in one ``REPEATABLE READ`` transaction by :mod:`bot.db.copy`),
``data/data-identity``, ``data/guilds/<server>/<kind>/<file>`` for every file a row of
the snapshot names, and last ``manifest.json`` (format, schema revision, each table's row
count and content hash, each member's size and sha256). It is written as ``FILE.partial``
and renamed when complete.

While it copies files a marker in ``DATA_DIR`` (``bot.db.removals.BACKUP_MARKER``) makes
every bot process defer deleting files, so every file the snapshot names is still there
when it is read; the backup then carries out what was deferred.

Restore verifies every member's hash before it changes anything, refuses a target that
holds data unless ``--force`` (the files there move to ``DATA_DIR/set-aside/``, a SQLite
database file too; a PostgreSQL database's tables are dropped), writes the files, brings
the snapshot to this code's schema and copies it into ``DATABASE_URL``, then checks
every table and file against the manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.db import files
from bot.db.copy import (
    Progress,
    TableSummary,
    copy_database,
    drop_everything,
    rows_in,
    sqlite_path,
    summarise,
    vacuum_into,
)
from bot.db.engine import code_heads, make_engine, safe_url, upgrade
from bot.db.identity import IDENTITY_FILE, IDENTITY_KEY
from bot.db.removals import BACKUP_MARKER, backup_running
from bot.db.repair import SET_ASIDE, SET_ASIDE_STAMP
from bot.db.schema import AnswerRow, MetaRow, ModelRow, ReviewItemRow, TaughtImageRow, utcnow

FORMAT = "golem-image-classifier-bot-backup"
VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "database.sqlite"
DATA = "data"
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why (``code``: the exit code of
    ``python -m bot db``, see ``bot.db.cli``)."""

    code = 3  # nothing to work on: no such archive or folder


class ArchiveInvalid(BackupError):
    """Not an archive of this bot, or a member does not match the manifest."""

    code = 5


class TargetOccupied(BackupError):
    code = 4


@dataclass
class BackupReport:
    archive: Path
    tables: list[TableSummary]
    files: int
    bytes: int
    missing: list[str]  # files the snapshot names that were not there (marked missing)


@dataclass
class RestoreReport:
    tables: list[TableSummary]
    files: int
    set_aside: Path | None


def _sha256_file(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


# --- backup -------------------------------------------------------------------------------------
@contextmanager
def backup_marker(data_dir: Path) -> Iterator[None]:
    marker = data_dir / BACKUP_MARKER
    if backup_running(data_dir):
        raise TargetOccupied(f"Another backup is running (see {marker}); wait for it to end.")
    stamp = utcnow().isoformat(timespec="seconds")
    files.write_atomic(
        marker, f"pid={os.getpid()} host={socket.gethostname()} started={stamp}\n".encode()
    )
    try:
        yield
    finally:
        files.unlink(marker)


async def backup(
    url: str, data_dir: Path, archive: Path, progress: Progress | None = None
) -> BackupReport:
    """Write the archive (see the module docstring); :class:`BackupError`."""
    await asyncio.to_thread(_check_archive_path, archive)
    partial = archive.with_name(archive.name + ".partial")
    engine = make_engine(url)
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f".{archive.name}.", dir=archive.parent) as tmp,
            backup_marker(data_dir),
        ):
            snapshot = Path(tmp) / DATABASE
            if engine.dialect.name == "sqlite":
                await vacuum_into(engine, snapshot)
            else:
                frozen = make_engine(f"sqlite+aiosqlite:///{snapshot}")
                try:
                    await copy_database(engine, frozen, progress)
                finally:
                    await frozen.dispose()
            report = await _write_archive(snapshot, data_dir, partial, progress)
            await asyncio.to_thread(_fsync_and_rename, partial, archive)
            report.archive = archive
    except BaseException:
        files.unlink(partial)
        raise
    finally:
        await engine.dispose()
    return report


def _check_archive_path(archive: Path) -> None:
    if archive.exists():
        raise TargetOccupied(f"{archive} exists already; choose another file name.")
    if not archive.parent.is_dir():
        raise BackupError(f"The folder {archive.parent} does not exist.")


def _fsync_and_rename(partial: Path, archive: Path) -> None:
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, archive)


async def _snapshot_contents(snapshot: Path) -> tuple[list[TableSummary], list[str], str | None]:
    """The snapshot's table summaries, the data files its rows name (relative to
    ``DATA_DIR``) and its identity."""
    engine = make_engine(f"sqlite+aiosqlite:///{snapshot}")
    try:
        summaries = await summarise(engine)
        named: set[str] = set()
        async with engine.connect() as conn:
            for table, kind in (
                (TaughtImageRow, "images"),
                (ModelRow, "models"),
                (AnswerRow, "feedback"),
                (ReviewItemRow, "feedback"),
            ):
                query = select(table.guild_id, table.file_name).where(table.file_name.is_not(None))
                for scope, name in await conn.execute(query):
                    folder = files.scope_dir(Path(), scope)
                    named.add((folder / kind / name).as_posix())
            identity = await conn.scalar(select(MetaRow.value).where(MetaRow.key == IDENTITY_KEY))
        return summaries, sorted(named), identity
    finally:
        await engine.dispose()


async def _write_archive(
    snapshot: Path, data_dir: Path, partial: Path, progress: Progress | None
) -> BackupReport:
    summaries, named, identity = await _snapshot_contents(snapshot)
    return await asyncio.to_thread(
        _write_tar, snapshot, data_dir, partial, summaries, named, identity, progress
    )


def _write_tar(
    snapshot: Path,
    data_dir: Path,
    partial: Path,
    summaries: list[TableSummary],
    named: list[str],
    identity: str | None,
    progress: Progress | None,
) -> BackupReport:
    members: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    total_bytes = 0
    last = 0.0
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        members[DATABASE] = _add(tar, snapshot, DATABASE)
        identity_file = data_dir / IDENTITY_FILE
        if identity_file.is_file():
            members[f"{DATA}/{IDENTITY_FILE}"] = _add(tar, identity_file, f"{DATA}/{IDENTITY_FILE}")
        for i, rel in enumerate(named, 1):
            path = data_dir / rel
            try:
                members[f"{DATA}/{rel}"] = entry = _add(tar, path, f"{DATA}/{rel}")
            except FileNotFoundError:
                missing.append(rel)  # marked missing at a start; nothing to copy
                continue
            total_bytes += entry["size"]
            if progress is not None and (time.monotonic() - last >= 2.0 or i == len(named)):
                last = time.monotonic()
                progress("files", i, len(named))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": utcnow().isoformat(timespec="seconds"),
            "identity": identity,
            "database": {
                "revision": _revision_of_file(snapshot),
                "tables": {t.name: {"rows": t.rows, "sha256": t.sha256} for t in summaries},
            },
            "members": members,
            "missing": missing,
        }
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return BackupReport(partial, summaries, len(members) - 1, total_bytes, missing)


def _add(tar: tarfile.TarFile, path: Path, name: str) -> dict[str, Any]:
    """Add ``path`` as ``name``, hashing exactly the bytes written."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        sha = hashlib.sha256()
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        tar.addfile(info, _Hashing(f, sha, size))
    return {"size": size, "sha256": sha.hexdigest()}


class _Hashing(io.RawIOBase):
    """A file read exactly ``size`` bytes long, hashed as it is read."""

    def __init__(self, f: Any, sha: Any, size: int) -> None:
        self._f, self._sha, self._left = f, sha, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._f.read(n)
        if len(data) != n:
            raise BackupError("a file changed size while it was copied")
        self._left -= n
        self._sha.update(data)
        return data


def _revision_of_file(snapshot: Path) -> str | None:
    import sqlite3

    with sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


# --- restore ------------------------------------------------------------------------------------
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


def describe(report: BackupReport) -> str:
    rows = sum(t.rows for t in report.tables)
    text = (
        f"backup written to {report.archive}: {len(report.tables)} tables, {rows} rows, "
        f"{report.files} files ({report.bytes / 1e6:.1f} MB), every member's sha256 in "
        f"{MANIFEST}"
    )
    if report.missing:
        text += f"; {len(report.missing)} file(s) the database names were missing"
    return text
