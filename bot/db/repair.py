"""The start-up consistency check between the database and the files.

Both directions: a row whose file is missing is deleted (a current model that lost its
file hands over to the newest remaining one), and a file no row names is deleted
(including ``write_atomic``'s temporary files, left by a crash). Files younger than the
grace period are left alone, so that another bot process sharing a PostgreSQL database is
never robbed of a file it is about to commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import files
from bot.db.schema import AnswerRow, GuildRow, ModelRow, ReviewItemRow, TaughtImageRow
from bot.db.store import Store

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    rows_removed: list[str] = field(default_factory=list)
    files_removed: list[Path] = field(default_factory=list)


def default_grace_s(store: Store) -> float:
    """SQLite is one process: nothing can be mid-write at start. Elsewhere, 15 minutes."""
    return 0.0 if store.engine.dialect.name == "sqlite" else 900.0


async def repair(store: Store, grace_s: float | None = None) -> RepairReport:
    grace = default_grace_s(store) if grace_s is None else grace_s
    report = RepairReport()
    named: dict[tuple[int, str], set[str]] = {}
    async with store.sessions() as s, s.begin():
        scopes = set(await s.scalars(select(GuildRow.id)))
        for row in list(await s.scalars(select(TaughtImageRow))):
            path = files.images_dir(store.data_dir, row.guild_id) / row.file_name
            if not await asyncio.to_thread(path.is_file):
                report.rows_removed.append(f"taught image {row.sha256} ({row.label})")
                await s.delete(row)
            else:
                named.setdefault((row.guild_id, "images"), set()).add(row.file_name)
        lost_current: set[int] = set()
        for row in list(await s.scalars(select(ModelRow))):
            path = files.models_dir(store.data_dir, row.guild_id) / row.file_name
            if not await asyncio.to_thread(path.is_file):
                report.rows_removed.append(f"model {row.model_id} of scope {row.guild_id}")
                if row.is_current:
                    lost_current.add(row.guild_id)
                await s.delete(row)
            else:
                named.setdefault((row.guild_id, "models"), set()).add(row.file_name)
        await _check_feedback(store, s, report, named)
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
    store.serving.clear()  # current models may have changed above
    removed = await asyncio.to_thread(_remove_unnamed, store.data_dir, named, scopes, grace)
    report.files_removed.extend(removed)
    for what in report.rows_removed:
        log.warning("repair: removed the record of %s: its file was missing", what)
    for path in report.files_removed:
        log.warning("repair: removed %s: no record named it", path)
    return report


async def _check_feedback(
    store: Store, s: AsyncSession, report: RepairReport, named: dict[tuple[int, str], set[str]]
) -> None:
    """Answers whose kept image is missing lose it; review items without theirs go."""
    for answer in list(await s.scalars(select(AnswerRow).where(AnswerRow.file_name.is_not(None)))):
        path = files.feedback_dir(store.data_dir, answer.guild_id) / str(answer.file_name)
        if not await asyncio.to_thread(path.is_file):
            report.rows_removed.append(f"the kept image of answer {answer.id}")
            answer.file_name = None
        else:
            named.setdefault((answer.guild_id, "feedback"), set()).add(str(answer.file_name))
    for item in list(await s.scalars(select(ReviewItemRow))):
        path = files.feedback_dir(store.data_dir, item.guild_id) / item.file_name
        if not await asyncio.to_thread(path.is_file):
            report.rows_removed.append(f"review item {item.id} ({item.proposed_label})")
            await s.delete(item)
        else:
            named.setdefault((item.guild_id, "feedback"), set()).add(item.file_name)


def _remove_unnamed(
    data_dir: Path, named: dict[tuple[int, str], set[str]], scopes: set[int], grace_s: float
) -> list[Path]:
    removed: list[Path] = []
    root = data_dir / "guilds"
    if not root.is_dir():
        return removed
    cutoff = time.time() - grace_s
    for folder in sorted(root.iterdir()):
        scope_id = files.scope_id_of(folder.name)
        if scope_id is None or not folder.is_dir():
            log.warning("repair: %s is not a server folder of this bot; left alone", folder)
            continue
        for kind in ("images", "models", "feedback"):
            sub = folder / kind
            if not sub.is_dir():
                continue
            keep = named.get((scope_id, kind), set())
            for f in sorted(sub.iterdir()):
                if f.name in keep or not f.is_file():
                    continue
                try:
                    if f.stat().st_mtime > cutoff:
                        continue
                    f.unlink()
                except FileNotFoundError:
                    continue
                removed.append(f)
        unknown = scope_id not in scopes and not any(k[0] == scope_id for k in named)
        if unknown and not any(p.is_file() for p in folder.rglob("*")):
            files.remove_tree(folder)
    return removed
