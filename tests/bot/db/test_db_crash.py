"""Crash safety (issue 19), on SQLite and PostgreSQL, with real processes killed by SIGKILL:
a process using the store as the bot does (``tests/bot/db/store_worker.py``: teach, retrain,
forget) killed at chosen points and at random times, and ``python -m bot db backup``
killed while it copies files. Each time the next start is consistent (nothing refused,
nothing marked missing, no recorded removal left) and nothing the process had reported
saved is lost; what it had started to forget is gone entirely or kept entirely."""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.db import Store
from bot.db.removals import BACKUP_MARKER, backup_running
from bot.db.repair import SET_ASIDE, check_at_start
from bot.db.schema import PendingRemovalRow
from tests.bot.databases import ENGINES, database_url
from tests.bot.db.db_world import ROOT, db_env, run_db, taught_files_intact

GUILD = 111_111_111_111
KILL_POINTS = ["file-written", "forget-committed", "training", "model-written"]


@dataclass
class Ledger:
    """What the killed processes told their users."""

    saved: dict[str, str] = field(default_factory=dict)  # sha256 -> label
    forgetting: set[str] = field(default_factory=set)
    forgotten: set[str] = field(default_factory=set)
    models: list[str] = field(default_factory=list)

    def read(self, output: str) -> None:
        for line in output.splitlines():
            what, _, rest = line.partition(" ")
            if what == "SAVED":
                sha, label = rest.split()
                self.saved[sha] = label
            elif what == "FORGETTING":
                self.forgetting.add(rest)
            elif what == "FORGOTTEN":
                self.forgotten.add(rest)
            elif what == "MODEL":
                self.models.append(rest)


async def start_worker(url: str, data: Path, seed: int, kill_at: str | None = None):
    args = [url, str(data), str(seed), *([kill_at] if kill_at else [])]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bot.db.store_worker",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def killed_output(proc: asyncio.subprocess.Process) -> str:
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    return out.decode()


def images_under(folder: Path) -> set[str]:
    """The sha256 names of the image files anywhere under ``folder``."""
    return {p.name.split(".")[0] for p in folder.rglob("*.jpg")}


async def start_as_the_bot(url: str, data: Path, ledger: Ledger) -> None:
    """The next start, then everything the ledger says must hold."""
    store = Store(url, data)
    await store.open()
    try:
        report = await check_at_start(store, grace_s=0)  # raises if it would refuse
        assert report.marked_missing == [], report.marked_missing
        rows = {r.sha256: r for r in await store.guild(GUILD).taught(include_missing=True)}
        by_label: dict[str, list[str]] = {}
        for sha, label in ledger.saved.items():
            by_label.setdefault(label, []).append(sha)
        for label, shas in by_label.items():
            kept = [sha in rows for sha in shas]
            if label in ledger.forgotten:
                assert not any(kept), f"{label} was forgotten but {shas} are kept"
            elif label in ledger.forgetting:  # killed mid-forget: all or nothing
                assert all(kept) or not any(kept), (label, kept)
            else:
                assert all(kept), f"saved images of {label} were lost"
        for sha, row in rows.items():
            assert row.path.is_file()
            assert hashlib.sha256(row.path.read_bytes()).hexdigest() == sha
        gone = {sha for sha, label in ledger.saved.items() if sha not in rows}
        on_disk = images_under(data)
        assert not gone & on_disk, "a forgotten image's file survived (maybe set aside)"
        models = {m.model_id: m for m in await store.guild(GUILD).models()}
        if ledger.models:
            last = models.get(ledger.models[-1])
            assert last is not None and last.path.is_file()
        current = await store.guild(GUILD).current_model()
        assert current is None or current.path.is_file()
        async with store.sessions() as s:
            left = await s.scalar(select(func.count()).select_from(PendingRemovalRow))
        assert left == 0
        assert await taught_files_intact(store) == len(rows)
    finally:
        await store.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_killed_while_teaching_retraining_and_forgetting(engine: str, tmp_path: Path):
    async with database_url(engine, tmp_path) as url:
        data = tmp_path / "data"
        ledger = Ledger()
        for seed, point in enumerate(KILL_POINTS):  # chosen points
            proc = await start_worker(url, data, seed, point)
            ledger.read(await killed_output(proc))
            assert ledger.saved and ledger.models
            await start_as_the_bot(url, data, ledger)
        rng = random.Random(19)
        for seed in range(10, 15):  # whatever it was doing
            proc = await start_worker(url, data, seed)
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 120)).strip() == b"STARTED"
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            proc.send_signal(signal.SIGKILL)
            ledger.read(await killed_output(proc))
            await start_as_the_bot(url, data, ledger)
        # only files nobody was told about were ever set aside
        aside = images_under(data / SET_ASIDE)
        assert not aside & set(ledger.saved)


@pytest.mark.parametrize("engine", ENGINES)
async def test_killed_during_a_backup(engine: str, tmp_path: Path):
    async with database_url(engine, tmp_path) as url:
        data = tmp_path / "data"
        ledger = Ledger()
        writer = await start_worker(url, data, 1)  # teaches and forgets throughout
        assert writer.stdout is not None
        assert (await asyncio.wait_for(writer.stdout.readline(), 120)).strip() == b"STARTED"
        await asyncio.sleep(3)  # some data first
        archive = tmp_path / "b.tar"
        backup = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "db",
            "backup",
            str(archive),
            env=db_env(data, url),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert backup.stderr is not None
        while True:  # killed once it copies files (its marker is in DATA_DIR)
            line = await asyncio.wait_for(backup.stderr.readline(), 120)
            assert line, "the backup ended before copying files"
            if b"files:" in line:
                break
        assert (data / BACKUP_MARKER).exists()
        backup.send_signal(signal.SIGKILL)
        await backup.wait()
        await asyncio.sleep(1)  # the writer forgets meanwhile: deletions wait, then not
        writer.send_signal(signal.SIGKILL)
        ledger.read(await killed_output(writer))
        assert not archive.exists()  # never a partial archive under the real name
        assert not backup_running(data)  # the marker of a dead process is stale
        await start_as_the_bot(url, data, ledger)
        code, _, err = await run_db(["backup", str(archive)], db_env(data, url), tmp_path)
        assert code == 0, err
        restored = tmp_path / "restored"
        target = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
        code, _, err = await run_db(["restore", str(archive)], db_env(restored, target), tmp_path)
        assert code == 0, err
        await start_as_the_bot(target, restored, ledger)
