"""A store with a row in every table and its files, and ``python -m bot db`` as a real
process: shared by the backup, copy and crash tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import sys
from pathlib import Path

from sqlalchemy import select

from bot.db import LabelRule, RuleAction, Store
from bot.db.copy import table_digest, tables
from bot.db.schema import LegacyWatchedChannelRow, PendingRemovalRow, TaughtImageRow
from tests.bot.harness import flower_bytes, png_bytes

ROOT = Path(__file__).resolve().parents[3]
A, B = 111_111_111_111, 222_222_222_222


async def populate(store: Store, images: int = 6) -> None:
    """Every table gets rows (the default scope and two servers), with their files."""
    a, b = store.guild(A), store.guild(B)
    for i in range(images):
        await a.add_taught(
            "daisy" if i % 2 else "rose",
            flower_bytes("daisy", i % 8) + bytes([i]),
            "jpg",
            user_id=7,
            user_name="ann",
            author_id=8 if i == 1 else None,
        )
    await b.add_taught("tulip", flower_bytes("tulip", 0), "jpg", user_id=9, user_name="ñandú ✿")
    await store.default_scope().add_taught(
        "sunflower", flower_bytes("sunflower", 0), "jpg", user_id=1, user_name="op"
    )
    a.models_dir.mkdir(parents=True, exist_ok=True)
    for n in (1, 2):
        path = a.models_dir / f"m{n}.model"
        path.write_bytes(b"model %d" % n)
        await a.register_model(
            f"m{n}", path, ["daisy", "rose"], {"accuracy": 0.1 * n, "per_label": {"x": [1, 2]}}
        )
    await a.set_watched(10, True)
    await a.set_trainer_role(55)
    await b.set_include_default(False)
    await a.set_low_confidence(0.625)
    await a.set_auto_retrain(3)
    await a.set_rule(LabelRule("daisy", RuleAction.REACT, 0.75, emoji="🌼", created_by=7))
    retrain = await a.start_retrain(7)
    await a.finish_retrain(retrain, "ok", "m2")
    answer_id = await a.record_answer(
        channel_id=10,
        user_id=8,
        model_id="m2",
        label="daisy",
        confidence=0.8125,
        data=png_bytes((30, 30), "green"),
        extension="png",
        author_id=9,
    )
    await a.vote(answer_id, 7, right=False, label="rose")
    answer = await a.answer(answer_id)
    assert answer is not None
    await a.enqueue_review(answer, "rose", user_id=7, user_name="ann")
    await b.mark_left(dt.datetime(2026, 5, 1, 12, 30, tzinfo=dt.UTC))
    async with store.sessions() as s, s.begin():
        s.add(LegacyWatchedChannelRow(channel_id=4242))
        # a forgotten image's features waiting for the cache (a store without one keeps it)
        s.add(PendingRemovalRow(kind="features", target="e" * 64))


async def contents(store: Store) -> dict[str, tuple[int, str]]:
    """Each table's row count and content hash."""
    async with store.engine.connect() as conn, conn.begin():
        found = {}
        for table in tables():
            summary = await table_digest(conn, table)
            found[table.name] = (summary.rows, summary.sha256)
        return found


async def taught_files_intact(store: Store) -> int:
    """Every taught row's file is there with the sha256 it is named by; how many."""
    async with store.sessions() as s:
        rows = list(await s.scalars(select(TaughtImageRow)))
    for row in rows:
        scope = store.guild(row.guild_id) if row.guild_id else store.default_scope()
        data = (scope.images_dir / row.file_name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256, row.file_name
    return len(rows)


def db_env(data_dir: Path, url: str | None) -> dict[str, str]:
    """The environment of ``python -m bot db``: only what it is given."""
    from bot.core.settings import Settings

    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["DATA_DIR"] = str(data_dir)
    if url is not None:
        env["DATABASE_URL"] = url
    env["PYTHONPATH"] = str(ROOT)
    return env


async def run_db(
    args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 180
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "db",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
