"""``python -m bot db backup FILE``: one archive holding a consistent snapshot of the
database, the files its rows name and a manifest with every member's sha256, taken while
the bot runs (``bot.db.restore`` reads it back).

The archive is a tar file: ``database.sqlite`` (the snapshot: SQLite's ``VACUUM INTO``, or
for PostgreSQL a copy made in one ``REPEATABLE READ`` transaction by :mod:`bot.db.copy`),
``data/data-identity``, ``data/guilds/<server>/<kind>/<file>`` for every file a row of
the snapshot names, and last ``manifest.json`` (format, schema revision, each table's row
count and content hash, each member's size and sha256). It is written as ``FILE.partial``
and renamed when complete.

While it copies files a marker in ``DATA_DIR`` (``bot.db.removals.BACKUP_MARKER``) makes
every bot process defer deleting files, so every file the snapshot names is still there
when it is read; the command then carries out what was deferred.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
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
    summarise,
    vacuum_into,
)
from bot.db.engine import make_engine
from bot.db.identity import IDENTITY_FILE, IDENTITY_KEY
from bot.db.removals import BACKUP_MARKER, backup_running
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
