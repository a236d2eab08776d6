"""The consistency check between the database and the data folder: at every start, and on
request (``python -m bot db repair [--apply]``).

No start deletes anything:

- a row whose file is missing is kept and marked (``missing_since``): a taught image is
  left out of training, a model is not served, a review item is not shown; once the file is
  back the next start clears the mark;
- a file no row names is moved to ``DATA_DIR/set-aside/<UTC time>/`` (same relative path),
  never deleted; so are the temporary files of interrupted writes;
- what a committed forget or pruning had recorded for removal is finished
  (``bot.db.removals``): that is the deletion the user asked for, not a repair.

A large mismatch stops the start (:class:`~bot.db.engine.DataMismatch`) before anything is
changed: the database and the folder carry different identities (``bot.db.identity``), an
empty database beside server files, rows none of whose files is there, or more than a
small share of rows or files without their counterpart. The message names the database,
the folder and the command that fixes it: ``python -m bot db repair`` shows what it would
do and ``--apply`` does it (the only place rows whose file is missing are deleted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.engine import DataMismatch, safe_url
from bot.db.identity import UNREADABLE, Identities, read_identities, settle_identity
from bot.db.removals import RemovalReport
from bot.db.schema import (
    AnswerRow,
    ModelRow,
    RetrainRow,
    ReviewItemRow,
    TaughtImageRow,
    utcnow,
)
from bot.db.store import Store

log = logging.getLogger(__name__)

#: A start refuses when more than this share of rows (or files) lacks its counterpart ...
MISMATCH_SHARE = 0.10
#: ... and more than this many do (a crash can leave a few files without their row).
MISMATCH_FLOOR = 5
#: Files no row names go to ``DATA_DIR/<this>/<UTC time>/``.
SET_ASIDE = "set-aside"
SET_ASIDE_STAMP = "%Y-%m-%dT%H%M%S.%fZ"
KINDS = ("images", "models", "feedback")
#: Rows and files that count toward a mismatch: the community's work. Answers' kept
#: images are short-lived copies, and a crash while answering can orphan several.
PRECIOUS_KINDS = ("images", "models")
_TABLES = {
    "taught_images": TaughtImageRow,
    "models": ModelRow,
    "answers": AnswerRow,
    "review_items": ReviewItemRow,
}


@dataclass(frozen=True, slots=True)
class NamedFile:
    """A row that names a file."""

    table: str
    row_id: int
    scope_id: int
    kind: str
    file_name: str
    missing_since: dt.datetime | None
    what: str

    def path(self, data_dir: Path) -> Path:
        return files.scope_dir(data_dir, self.scope_id) / self.kind / self.file_name

    @property
    def precious(self) -> bool:
        return self.table != "answers"


@dataclass
class Survey:
    """What the database and the folder hold, and how they disagree. Nothing changed."""

    identities: Identities
    rows: list[NamedFile] = field(default_factory=list)
    missing: list[NamedFile] = field(default_factory=list)  # file absent
    found_again: list[NamedFile] = field(default_factory=list)  # marked, file back
    orphans: list[Path] = field(default_factory=list)  # no row names them
    leftovers: list[Path] = field(default_factory=list)  # temporary files of crashes
    young: list[Path] = field(default_factory=list)  # unnamed, within the grace period
    files: int = 0  # every file in the servers' folders (not temporary ones)
    precious_files: int = 0  # of which in images/ and models/
    pending: int = 0  # files and folders a committed change recorded for removal
    interrupted_retrains: int = 0

    @property
    def precious_rows(self) -> list[NamedFile]:
        return [r for r in self.rows if r.precious]

    @property
    def precious_missing(self) -> list[NamedFile]:
        return [r for r in self.missing if r.precious]

    @property
    def precious_orphans(self) -> list[Path]:
        return [p for p in self.orphans if p.parent.name in PRECIOUS_KINDS]

    def problem(self) -> str | None:
        """Why a start must not go on with this database and folder (``None``: it may)."""
        ids = self.identities
        if ids.conflict:
            if ids.folder == UNREADABLE:
                return "the data folder's identity file cannot be read"
            return (
                f"the database belongs to the data folder {ids.database}, this folder is "
                f"{ids.folder}"
            )
        rows, missing = self.precious_rows, self.precious_missing
        matched = ids.database is not None and ids.database == ids.folder
        # (files another process is writing count too, unless the identities show that
        # this is the database the folder belongs to)
        if not self.rows and self.files and not matched:
            return (
                f"the database names no file, yet the folder holds {self.files} server "
                "file(s): is it a new, empty database?"
            )
        if rows and not self.files:
            return (
                f"the database names {len(rows)} taught images, models and review items, "
                "yet the folder holds no server file"
            )
        if _large(len(missing), len(rows)):
            return f"{len(missing)} of the {len(rows)} files the database names are missing"
        orphans = self.precious_orphans
        if _large(len(orphans), self.precious_files):
            return (
                f"{len(orphans)} of the {self.precious_files} image and model files in the "
                "folder are named by no row of the database"
            )
        return None


def _large(n: int, total: int) -> bool:
    return n > max(MISMATCH_FLOOR, MISMATCH_SHARE * total)


@dataclass
class RepairReport:
    marked_missing: list[str] = field(default_factory=list)  # rows kept, marked
    found_again: list[str] = field(default_factory=list)  # marks cleared
    rows_removed: list[str] = field(default_factory=list)  # only by ``--apply``
    set_aside: list[Path] = field(default_factory=list)  # the moved files' old paths
    set_aside_to: Path | None = None
    removals: RemovalReport = field(default_factory=RemovalReport)
    retrains_interrupted: int = 0
    identity: str | None = None


def default_grace_s(store: Store) -> float:
    """SQLite is one process: nothing can be mid-write at start. Elsewhere another bot
    process may be about to commit a file it just wrote: 15 minutes."""
    return 0.0 if store.engine.dialect.name == "sqlite" else 900.0


def mismatch_message(store: Store, problem: str) -> str:
    return (
        f"Refusing to start: the database {safe_url(store.url)} and the data folder "
        f"{store.data_dir.resolve()} do not belong together ({problem}). Nothing was "
        "changed. If DATABASE_URL or DATA_DIR is wrong (a typo, a volume not mounted, a "
        "new database without `python -m bot db copy`), correct it and start again; if "
        "the data is really gone, `python -m bot db repair` shows what would change and "
        "`python -m bot db repair --apply` makes them agree (see docs/operating.md)."
    )


async def survey(store: Store, grace_s: float | None = None) -> Survey:
    """Compare the rows with the files; changes nothing."""
    grace = default_grace_s(store) if grace_s is None else grace_s
    found = Survey(await read_identities(store))
    async with store.sessions() as s:
        found.rows = await _named_rows(s)
        found.interrupted_retrains = int(
            await s.scalar(
                select(func.count())
                .select_from(RetrainRow)
                .where(
                    RetrainRow.outcome == "running",
                    RetrainRow.started_at <= utcnow() - dt.timedelta(seconds=grace),
                )
            )
            or 0
        )
    pending = await store.removals.pending_paths()
    found.pending = len(pending)
    on_disk = await asyncio.to_thread(_scan, store.data_dir)
    named: set[Path] = set()
    for row in found.rows:
        path = row.path(store.data_dir)
        named.add(path)
        if path not in on_disk:
            found.missing.append(row)
        elif row.missing_since is not None:
            found.found_again.append(row)
    cutoff = utcnow().timestamp() - grace
    for path, mtime in sorted(on_disk.items()):
        if path in pending or any(parent in pending for parent in path.parents):
            continue  # on its way out (a committed forget or pruning)
        if path.name.startswith("."):
            if mtime <= cutoff:
                found.leftovers.append(path)
            continue
        found.files += 1
        found.precious_files += path.parent.name in PRECIOUS_KINDS
        if path in named:
            continue
        if mtime > cutoff:
            found.young.append(path)
        else:
            found.orphans.append(path)
    return found


async def _named_rows(s: AsyncSession) -> list[NamedFile]:
    rows: list[NamedFile] = []
    q = select(
        TaughtImageRow.id,
        TaughtImageRow.guild_id,
        TaughtImageRow.file_name,
        TaughtImageRow.missing_since,
        TaughtImageRow.label,
    )
    for row_id, scope, name, since, label in await s.execute(q):
        what = f"taught image {name} ({label}) of {_scope(scope)}"
        rows.append(NamedFile("taught_images", row_id, scope, "images", name, since, what))
    q = select(ModelRow.id, ModelRow.guild_id, ModelRow.file_name, ModelRow.missing_since)
    for row_id, scope, name, since in await s.execute(q):
        what = f"model {name} of {_scope(scope)}"
        rows.append(NamedFile("models", row_id, scope, "models", name, since, what))
    q = select(
        AnswerRow.id, AnswerRow.guild_id, AnswerRow.file_name, AnswerRow.missing_since
    ).where(AnswerRow.file_name.is_not(None))
    for row_id, scope, name, since in await s.execute(q):
        what = f"the kept image of answer {row_id} of {_scope(scope)}"
        rows.append(NamedFile("answers", row_id, scope, "feedback", name, since, what))
    q = select(
        ReviewItemRow.id,
        ReviewItemRow.guild_id,
        ReviewItemRow.file_name,
        ReviewItemRow.missing_since,
        ReviewItemRow.proposed_label,
    )
    for row_id, scope, name, since, label in await s.execute(q):
        what = f"review item {row_id} ({label}) of {_scope(scope)}"
        rows.append(NamedFile("review_items", row_id, scope, "feedback", name, since, what))
    return rows


def _scope(scope_id: int) -> str:
    return "the default scope" if scope_id == 0 else f"server {scope_id}"


def _scan(data_dir: Path) -> dict[Path, float]:
    """Every file in the servers' image, model and feedback folders, with its mtime."""
    found: dict[Path, float] = {}
    root = data_dir / "guilds"
    if not root.is_dir():
        return found
    for folder in root.iterdir():
        if files.scope_id_of(folder.name) is None or not folder.is_dir():
            continue  # not a server folder of this bot: left alone
        for kind in KINDS:
            sub = folder / kind
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                try:
                    if path.is_file():
                        found[path] = path.stat().st_mtime
                except FileNotFoundError:
                    continue
    return found


async def check_at_start(store: Store, grace_s: float | None = None) -> RepairReport:
    """The start's check: refuse on a large mismatch (:class:`DataMismatch`, nothing
    changed), else finish recorded removals, mark and unmark rows, set aside what no row
    names, and write the identity to whichever side lacks it."""
    found = await survey(store, grace_s)
    problem = found.problem()
    if problem is not None:
        raise DataMismatch(mismatch_message(store, problem))
    report = RepairReport()
    report.removals = await store.removals.run_pending()
    await _mark(store, found, report)
    await _set_aside(store, found, report)
    report.retrains_interrupted = await _close_interrupted_retrains(store, grace_s)
    report.identity = await settle_identity(store, found.identities)
    store.serving.clear()
    _log(report)
    return report


async def apply_repair(store: Store, found: Survey) -> RepairReport:
    """What ``db repair --apply`` does with a :func:`survey`: deletes the rows whose file
    is missing (a current model hands over to the newest remaining one), sets aside every
    file no row names, finishes recorded removals (only when the identities agreed) and
    gives both sides one identity (the database's)."""
    report = RepairReport()
    if not found.identities.conflict:
        report.removals = await store.removals.run_pending()
    else:  # recorded by a database of another folder: never carried out here
        await store.removals.forget_pending()
    await _delete_missing(store, found, report)
    unmark = Survey(found.identities, found_again=found.found_again)
    await _mark(store, unmark, report)
    await _set_aside(store, found, report)
    report.retrains_interrupted = await _close_interrupted_retrains(store, None)
    report.identity = await settle_identity(store, found.identities)
    store.serving.clear()
    _log(report)
    return report


async def _mark(store: Store, found: Survey, report: RepairReport) -> None:
    now = utcnow()
    async with store.sessions() as s, s.begin():
        for row in found.missing:
            if row.missing_since is None:
                table = _TABLES[row.table]
                await s.execute(
                    update(table).where(table.id == row.row_id).values(missing_since=now)
                )
                report.marked_missing.append(row.what)
        for row in found.found_again:
            table = _TABLES[row.table]
            await s.execute(update(table).where(table.id == row.row_id).values(missing_since=None))
            report.found_again.append(row.what)


async def _delete_missing(store: Store, found: Survey, report: RepairReport) -> None:
    lost_current: set[int] = set()
    async with store.sessions() as s, s.begin():
        for row in found.missing:
            if not await asyncio.to_thread(row.path(store.data_dir).is_file):  # still gone
                table = _TABLES[row.table]
                if row.table == "answers":  # the answer stays, without its image
                    await s.execute(
                        update(table)
                        .where(table.id == row.row_id)
                        .values(file_name=None, missing_since=None)
                    )
                else:
                    if row.table == "models":
                        current = await s.scalar(
                            select(ModelRow.is_current).where(ModelRow.id == row.row_id)
                        )
                        if current:
                            lost_current.add(row.scope_id)
                    await s.execute(delete(table).where(table.id == row.row_id))
                report.rows_removed.append(row.what)
        await s.flush()
        for scope_id in lost_current:
            newest = await s.scalar(
                select(ModelRow)
                .where(ModelRow.guild_id == scope_id)
                .order_by(ModelRow.created_at.desc(), ModelRow.id.desc())
                .limit(1)
            )
            if newest is not None:
                newest.is_current = True


async def _set_aside(store: Store, found: Survey, report: RepairReport) -> None:
    moving = [*found.orphans, *found.leftovers]
    if not moving:
        return
    target = store.data_dir / SET_ASIDE / utcnow().strftime(SET_ASIDE_STAMP)
    moved = await asyncio.to_thread(_move_all, store.data_dir, moving, target)
    report.set_aside.extend(moved)
    report.set_aside_to = target


def _move_all(data_dir: Path, paths: list[Path], target: Path) -> list[Path]:
    moved = []
    for path in paths:
        dest = target / path.relative_to(data_dir)
        n = 0
        while dest.exists():  # never over an earlier one
            n += 1
            dest = dest.with_name(f"{path.name}.{n}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        except FileNotFoundError:
            continue  # gone meanwhile (another process's removal)
        moved.append(path)
    return moved


async def _close_interrupted_retrains(store: Store, grace_s: float | None) -> int:
    """Retrains still "running" from a process that stopped (older than the grace)."""
    grace = default_grace_s(store) if grace_s is None else grace_s
    cutoff = utcnow() - dt.timedelta(seconds=max(grace, 0.0))
    async with store.sessions() as s, s.begin():
        result = await s.execute(
            update(RetrainRow)
            .where(RetrainRow.outcome == "running", RetrainRow.started_at <= cutoff)
            .values(outcome="failed", detail="interrupted: the bot stopped while it ran")
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _log(report: RepairReport) -> None:
    for what in report.marked_missing:
        log.warning("the file of %s is missing: kept and marked, not used until it is back", what)
    for what in report.found_again:
        log.info("the file of %s is back", what)
    for what in report.rows_removed:
        log.warning("repair: deleted the record of %s: its file was missing", what)
    for path in report.set_aside:
        log.warning("no record names %s: moved to %s", path, report.set_aside_to)
    if report.retrains_interrupted:
        log.warning(
            "%d retrain(s) were interrupted by a stop; recorded as failed",
            report.retrains_interrupted,
        )
