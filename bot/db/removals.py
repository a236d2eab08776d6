"""Removals that follow a commit, recorded in the commit itself (``pending_removals``).

A change that makes files unused (a forget, pruning, an old model dropped) deletes its
rows and, in the same transaction, records what to remove: files and server folders
(paths relative to ``DATA_DIR``) and taught images' features in the shared feature cache
(sha256 digests). After the commit they are removed and their records dropped. A process
killed in between leaves the records, and the next start (or the next change) finishes
them, so a crash can neither keep a forgotten image nor leave its file looking like an
orphan to the start-up check (``bot.db.repair``). A removal re-checks that no row names
the file (again) before deleting it.

While a backup runs (``bot.db.backup`` holds a marker file in ``DATA_DIR``) files are not
deleted: the records wait, so every file the backup's database snapshot names is still
there when the backup copies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.schema import AnswerRow, ModelRow, PendingRemovalRow, ReviewItemRow, TaughtImageRow

log = logging.getLogger(__name__)

FILE, FOLDER, FEATURES = "file", "folder", "features"

#: ``DATA_DIR/<this>`` exists while a backup copies files (pid, host and start time inside).
BACKUP_MARKER = "backup-running"
#: A marker older than this is stale even if its process cannot be checked (another host).
BACKUP_MARKER_MAX_AGE_S = 24 * 3600.0

#: Evicts digests from the feature cache; raises if it could not (they stay pending).
Evictor = Callable[[list[str]], Awaitable[None]]


class RemovalContext(Protocol):
    """What removals need of the store (``Store`` is one; a protocol, not an import of
    ``Store``, which builds its :class:`Removals`)."""

    data_dir: Path
    evict_features: Evictor | None

    def sessions(self) -> AsyncSession:
        """A new session."""
        ...

    def lock(self, scope_id: int) -> asyncio.Lock:
        """Serialises the writes of one scope in this process."""
        ...


@dataclass
class RemovalReport:
    files: list[Path] = field(default_factory=list)  # deleted
    kept: list[Path] = field(default_factory=list)  # named by a row again: not deleted
    features: int = 0  # digests evicted from the feature cache
    deferred: int = 0  # waiting (a backup runs, or the cache could not be changed)


def backup_running(data_dir: Path) -> bool:
    """A live backup's marker is in ``data_dir`` (a stale one, of a process that died, is
    ignored)."""
    marker = data_dir / BACKUP_MARKER
    try:
        text = marker.read_text("utf-8")
        age = time.time() - marker.stat().st_mtime
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # cannot tell: be safe
    if age > BACKUP_MARKER_MAX_AGE_S:
        return False
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    if fields.get("host") != socket.gethostname():
        return True
    try:
        pid = int(fields.get("pid", ""))
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def relative(data_dir: Path, path: Path) -> str:
    return path.relative_to(data_dir).as_posix()


class Removals:
    """The store's pending removals: :meth:`queue` in a transaction, :meth:`carry_out`
    after its commit, :meth:`run_pending` for whatever is left (at start)."""

    def __init__(self, store: RemovalContext) -> None:
        self._store = store
        self._lock = asyncio.Lock()
        #: records carried out whose rows are dropped by the next :meth:`queue` (in that
        #: transaction: no commit of their own on hot paths such as recording an answer)
        self._done: list[int] = []
        self._evicting: asyncio.Task[None] | None = None
        self._evict_again = False
        self._deferred = False  # this process held back removals while a backup ran
        self._sweep: asyncio.Task[RemovalReport] | None = None

    @property
    def evicts_features(self) -> bool:
        return self._store.evict_features is not None

    async def queue(
        self,
        s: AsyncSession,
        *,
        paths: Iterable[Path] = (),
        folders: Iterable[Path] = (),
        features: Iterable[str] = (),
    ) -> list[PendingRemovalRow]:
        """Record removals in the caller's transaction; hand the result to
        :meth:`carry_out` once it is committed."""
        data_dir = self._store.data_dir
        rows = [PendingRemovalRow(kind=FILE, target=relative(data_dir, p)) for p in paths]
        rows += [PendingRemovalRow(kind=FOLDER, target=relative(data_dir, p)) for p in folders]
        if self.evicts_features:
            rows += [PendingRemovalRow(kind=FEATURES, target=d) for d in sorted(set(features))]
        if self._done:
            done, self._done = self._done, []
            await s.execute(delete(PendingRemovalRow).where(PendingRemovalRow.id.in_(done)))
        if rows:
            s.add_all(rows)
            await s.flush()
        return rows

    async def carry_out(self, rows: list[PendingRemovalRow]) -> None:
        """Remove the files and folders of committed ``rows`` (their features wait for
        :meth:`evict_pending`). The caller holds the scope's lock, so no write of this
        process can name a file again meanwhile."""
        targets = [r for r in rows if r.kind in (FILE, FOLDER)]
        if not targets:
            return
        if backup_running(self._store.data_dir):
            self._deferred = True  # done by the backup at its end, or by the next sweep
            return
        if self._deferred and (self._sweep is None or self._sweep.done()):
            self._deferred = False  # e.g. the backup was killed: do what waited
            self._sweep = asyncio.create_task(self.run_pending(), name="removals-sweep")
        data_dir = self._store.data_dir
        for row in targets:
            path = data_dir / row.target
            if row.kind == FILE:
                await asyncio.to_thread(files.unlink, path)
            else:
                await asyncio.to_thread(files.remove_tree, path)
            self._done.append(row.id)

    def evict_soon(self) -> None:
        """Evict the pending digests in the background (a child process, about a second:
        a forget answers its user without waiting). One run at a time; a forget during a
        run gets another run after it."""
        if self._store.evict_features is None:
            return
        if self._evicting is not None and not self._evicting.done():
            self._evict_again = True
            return
        self._evicting = asyncio.create_task(self._evict_until_done(), name="evict-features")

    async def _evict_until_done(self) -> None:
        while True:
            self._evict_again = False
            try:
                await self.evict_pending()
            except Exception:  # the database went away: the next start tries again
                log.exception("evicting forgotten images from the feature cache failed")
                return
            if not self._evict_again:
                return

    async def evictions_done(self) -> None:
        """Wait until the background eviction (if any) has finished."""
        while self._evicting is not None and not self._evicting.done():
            await asyncio.shield(self._evicting)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """At close: let a running eviction finish (bounded), else cancel it; what it had
        not done stays pending for the next start."""
        for task in (self._sweep, self._evicting):
            if task is None or task.done():
                continue
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except Exception:
                log.exception("a background removal failed; the next start finishes it")

    async def finish_held_back(self) -> RemovalReport | None:
        """If this process held removals back while a backup ran and nothing has done them
        since (the backup was killed), do every pending removal now (unless a backup still
        runs); else only the pending evictions of the feature cache. Files are only touched
        in the first case: a removal another process has just carried out could otherwise
        meet that process teaching the same image again (the start-up check has a grace
        for that on PostgreSQL; this has none). For a periodic task."""
        if not self._deferred:
            await self.evict_pending()
            return None
        self._deferred = False
        report = await self.run_pending()
        if report.deferred:
            self._deferred = True  # the backup still runs: next time
        return report

    async def evict_pending(self) -> int:
        """Evict every pending digest from the feature cache (one call); how many. A
        failure is logged and the digests stay pending for the next call."""
        evict = self._store.evict_features
        if evict is None:
            return 0
        async with self._lock:
            async with self._store.sessions() as s:
                rows = list(
                    await s.execute(
                        select(PendingRemovalRow.id, PendingRemovalRow.target).where(
                            PendingRemovalRow.kind == FEATURES
                        )
                    )
                )
            if not rows:
                return 0
            digests = sorted({target for _, target in rows})
            try:
                await evict(digests)
            except Exception as exc:
                log.warning(
                    "could not evict %d forgotten image(s) from the feature cache (%s); "
                    "will try again",
                    len(digests),
                    exc,
                )
                return 0
            async with self._store.sessions() as s, s.begin():
                ids = [row_id for row_id, _ in rows]
                await s.execute(delete(PendingRemovalRow).where(PendingRemovalRow.id.in_(ids)))
            return len(digests)

    async def run_pending(self) -> RemovalReport:
        """Carry out every recorded removal (at start, after a backup, after deferrals):
        each file or folder is re-checked against its server's rows under that server's
        lock, so no write of this process can name a file again meanwhile."""
        report = RemovalReport()
        data_dir = self._store.data_dir
        async with self._lock:
            async with self._store.sessions() as s:
                rows = list(
                    await s.scalars(
                        select(PendingRemovalRow).where(PendingRemovalRow.kind != FEATURES)
                    )
                )
            if rows and backup_running(data_dir):
                report.deferred += len(rows)
                rows = []
            done: list[int] = []
            for row in rows:
                target = data_dir / row.target
                scope = _scope_of(data_dir, target)
                if scope is not None:
                    async with self._store.lock(scope):
                        async with self._store.sessions() as s:
                            named = await named_files(s, scope)
                        if row.kind == FILE and _named(named, data_dir, target):
                            report.kept.append(target)
                        elif row.kind == FILE and await asyncio.to_thread(target.is_file):
                            await asyncio.to_thread(files.unlink, target)
                            report.files.append(target)
                        elif row.kind == FOLDER:  # a forgotten server's: what no row names
                            removed = await asyncio.to_thread(
                                _clear_folder, data_dir, target, named
                            )
                            report.files.extend(removed)
                done.append(row.id)
            done += self._done
            self._done = []
            if done:
                async with self._store.sessions() as s, s.begin():
                    await s.execute(delete(PendingRemovalRow).where(PendingRemovalRow.id.in_(done)))
        report.features = await self.evict_pending()
        for path in report.files:
            log.info("finished a removal a forget or pruning had recorded: %s", path)
        return report

    async def forget_pending(self) -> int:
        """Drop every recorded removal without carrying it out (``db repair --apply`` on a
        database that belonged to another folder); how many."""
        async with self._lock, self._store.sessions() as s, s.begin():
            result = await s.execute(delete(PendingRemovalRow))
            self._done = []
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def pending_paths(self) -> set[Path]:
        """Files and folders recorded for removal (not orphans: they are on their way)."""
        async with self._store.sessions() as s:
            rows = await s.execute(
                select(PendingRemovalRow.target).where(PendingRemovalRow.kind != FEATURES)
            )
            return {self._store.data_dir / target for (target,) in rows}


async def named_files(s: AsyncSession, scope: int) -> set[tuple[int, str, str]]:
    """(scope, kind, file name) of every file a row of ``scope`` names."""
    named: set[tuple[int, str, str]] = set()
    for kind, table in (
        ("images", TaughtImageRow),
        ("models", ModelRow),
        ("feedback", AnswerRow),
        ("feedback", ReviewItemRow),
    ):
        query = select(table.file_name).where(table.guild_id == scope, table.file_name.is_not(None))
        named.update((scope, kind, name) for name in await s.scalars(query))
    return named


def _scope_of(data_dir: Path, path: Path) -> int | None:
    """The scope of a path under ``DATA_DIR/guilds/<scope>/``; ``None`` if it is not one."""
    try:
        parts = path.relative_to(data_dir).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] != "guilds":
        return None
    return files.scope_id_of(parts[1])


def _named(named: set[tuple[int, str, str]], data_dir: Path, path: Path) -> bool:
    try:
        guilds, folder, kind, name = path.relative_to(data_dir).parts
    except ValueError:
        return False
    scope = files.scope_id_of(folder)
    return guilds == "guilds" and scope is not None and (scope, kind, name) in named


def _clear_folder(data_dir: Path, folder: Path, named: set[tuple[int, str, str]]) -> list[Path]:
    """Delete the files of ``folder`` that no row names, then its empty folders."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not _named(named, data_dir, path):
            files.unlink(path)
            removed.append(path)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
    return removed
