"""``python -m bot db backup FILE`` / ``restore FILE`` (issue 19), on SQLite and PostgreSQL:
a backup taken while the store is written to holds a consistent snapshot and every file it
names; a restore into an empty folder (and into the other engine) brings back every row
and file with equal hashes; damaged archives and occupied targets are refused before
anything changes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import socket
import sys
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.db import Store
from bot.db import backup as backups
from bot.db import restore as restores
from bot.db.identity import read_identities
from bot.db.removals import BACKUP_MARKER
from bot.db.repair import check_at_start
from bot.db.schema import PendingRemovalRow
from tests.bot.databases import database_url
from tests.bot.db.db_world import A, contents, db_env, populate, run_db, taught_files_intact
from tests.bot.harness import flower_bytes

PAIRS = [("sqlite", "postgresql"), ("postgresql", "sqlite")]


def image(i: int) -> bytes:
    return flower_bytes("tulip", i % 8) + b"w%d" % i


async def open_source(url: str, data: Path) -> Store:
    store = Store(url, data)
    await store.open()
    await populate(store, images=30)
    await check_at_start(store, grace_s=0)
    return store


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("manifest.json")
        assert f is not None
        return json.loads(f.read())


async def restored_matches(
    archive: Path, url: str, data: Path, source_identity: str | None
) -> Store:
    """Open the restored pair and check it against the manifest, file by file."""
    manifest = manifest_of(archive)
    store = Store(url, data)
    await store.open()
    got = await contents(store)
    assert {k: {"rows": n, "sha256": h} for k, (n, h) in got.items()} == manifest["database"][
        "tables"
    ]
    for name, entry in manifest["members"].items():
        if name.startswith("data/"):
            restored = data / name.removeprefix("data/")
            digest = hashlib.sha256(restored.read_bytes()).hexdigest()
            assert digest == entry["sha256"], name
    assert manifest["missing"] == []
    report = await check_at_start(store, grace_s=0)  # the bot would start
    assert report.marked_missing == report.set_aside == report.rows_removed == []
    assert report.identity == source_identity
    assert await taught_files_intact(store) > 30
    return store


@pytest.mark.parametrize(("source_engine", "target_engine"), PAIRS)
async def test_a_backup_while_writes_happen_restores_into_an_empty_folder(
    tmp_path: Path, source_engine: str, target_engine: str
):
    """The backup command runs as its own process while this one teaches, answers and
    forgets through the store the whole time."""
    async with (
        database_url(source_engine, tmp_path / "src") as src_url,
        database_url(target_engine, tmp_path / "dst") as dst_url,
    ):
        for sub in ("src", "dst"):
            (tmp_path / sub).mkdir(exist_ok=True)
        src_data = tmp_path / "src" / "data"
        store = await open_source(src_url, src_data)
        try:
            identity = (await read_identities(store)).database
            saved_before = {r.sha256 for r in await store.guild(A).taught()}
            archive = tmp_path / "backup.tar"
            backup = asyncio.create_task(
                run_db(["backup", str(archive)], db_env(src_data, src_url), tmp_path)
            )
            forgotten: list[Path] = []
            i = 0
            while not backup.done():
                g = store.guild(A)
                await g.add_taught(f"w{i}", image(i), "jpg", user_id=7, user_name="ann")
                if i >= 2:
                    [old] = [r for r in await g.taught() if r.label == f"w{i - 2}"]
                    await g.forget_label(f"w{i - 2}")
                    forgotten.append(old.path)
                i += 1
                await asyncio.sleep(0.01)
            code, out, err = backup.result()
            assert code == 0, err
            assert "backup written to" in out and i > 5
            assert not (src_data / BACKUP_MARKER).exists()
            # what was forgotten while the backup ran is gone now (its deletion waited)
            await store.removals.run_pending()
            assert not [p for p in forgotten if p.exists()]
        finally:
            await store.close()
        dst_data = tmp_path / "dst" / "data"
        code, out, err = await run_db(
            ["restore", str(archive)], db_env(dst_data, dst_url), tmp_path
        )
        assert code == 0, err
        assert "every table and file matches the manifest" in out
        restored = await restored_matches(archive, dst_url, dst_data, identity)
        try:
            assert saved_before <= {r.sha256 for r in await restored.guild(A).taught()}
        finally:
            await restored.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_files_forgotten_after_the_snapshot_are_still_in_the_backup(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
):
    """Deterministically: between the database snapshot and the copying of files, images
    the snapshot names are forgotten and new ones taught. Their deletion waits for the
    backup, so the archive holds every file its snapshot names."""
    async with database_url(engine, tmp_path) as url:
        data = tmp_path / "data"
        store = await open_source(url, data)
        try:
            g = store.guild(A)
            roses = [r.path for r in await g.taught() if r.label == "rose"]
            original = backups._write_archive

            async def between(*args: object) -> backups.BackupReport:
                await g.forget_label("rose")  # named by the snapshot
                await g.add_taught("late", image(99), "jpg", user_id=7, user_name="ann")
                assert all(p.exists() for p in roses)  # deletion deferred
                return await original(*args)  # type: ignore[arg-type]

            monkeypatch.setattr(backups, "_write_archive", between)
            report = await backups.backup(url, data, tmp_path / "b.tar")
            assert report.missing == []
            names = set(manifest_of(tmp_path / "b.tar")["members"])
            assert all(f"data/{p.relative_to(data).as_posix()}" in names for p in roses)
            async with store.sessions() as s:
                pending = list(await s.scalars(select(PendingRemovalRow.target)))
            assert len([t for t in pending if "images" in t]) == len(roses)
            await store.removals.run_pending()  # what the command does after the backup
            assert not any(p.exists() for p in roses)
        finally:
            await store.close()
        restored_data = tmp_path / "restored"
        restored_url = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
        await restores.restore(restored_url, restored_data, tmp_path / "b.tar")
        again = Store(restored_url, restored_data)
        await again.open()
        try:
            labels = await again.guild(A).label_counts()
            assert labels.get("rose") == len(roses) and "late" not in labels
            assert (await check_at_start(again, grace_s=0)).marked_missing == []
        finally:
            await again.close()


async def make_backup(tmp_path: Path) -> tuple[Path, Path, str]:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'bot.db'}"
    store = await open_source(url, data)
    await store.close()
    archive = tmp_path / "b.tar"
    code, _, err = await run_db(["backup", str(archive)], db_env(data, None), tmp_path)
    assert code == 0, err
    return archive, data, url


async def test_restore_refuses_a_target_with_data_and_force_sets_it_aside(tmp_path: Path):
    archive, data, url = await make_backup(tmp_path)
    before = await contents_of(url, data)
    code, _, err = await run_db(["restore", str(archive)], db_env(data, None), tmp_path)
    assert code == 4 and "Refusing to restore over existing data" in err
    assert "--force" in err and await contents_of(url, data) == before
    store = Store(url, data)  # the target changes meanwhile: --force replaces it
    await store.open()
    await store.guild(A).add_taught("new", image(5), "jpg", user_id=7, user_name="ann")
    await store.close()
    code, _, err = await run_db(["restore", str(archive), "--force"], db_env(data, None), tmp_path)
    assert code == 0, err
    tables = manifest_of(archive)["database"]["tables"]
    restored = await contents_of(url, data)
    assert {k: {"rows": n, "sha256": h} for k, (n, h) in restored.items()} == tables
    [aside] = (data / "set-aside").iterdir()
    assert aside.name.endswith("-before-restore") and (aside / "bot.db").is_file()
    assert any((aside / "guilds").rglob("*.jpg"))


async def contents_of(url: str, data: Path) -> dict[str, tuple[int, str]]:
    store = Store(url, data)
    await store.open()
    try:
        return await contents(store)
    finally:
        await store.close()


def rewrite(archive: Path, out: Path, change: dict[str, bytes | None]) -> None:
    """Copy ``archive`` with members replaced (``None``: left out) or added."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            if member.name in change:
                data = change.pop(member.name)
                if data is None:
                    continue
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member, src.extractfile(member))
        for name, data in change.items():
            assert data is not None
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


async def test_a_damaged_or_hostile_archive_is_refused_before_anything_changes(
    tmp_path: Path,
):
    archive, _, _ = await make_backup(tmp_path)
    manifest = manifest_of(archive)
    member = next(n for n in manifest["members"] if n.endswith(".jpg"))
    evil = json.dumps({**manifest, "members": {**manifest["members"], "data/../../x": {}}})
    cases = {
        "flipped": {member: b"not the image"},
        "dropped": {member: None},
        "extra": {"data/guilds/1/images/extra.jpg": b"x"},
        "traversal": {"manifest.json": evil.encode(), "data/../../x": b"x"},
        "not ours": {"manifest.json": b'{"format": "something else"}'},
    }
    for case, change in cases.items():
        bad = tmp_path / f"{case.replace(' ', '-')}.tar"
        rewrite(archive, bad, dict(change))
        target = tmp_path / f"target-{case.replace(' ', '-')}"
        code, _, err = await run_db(["restore", str(bad)], db_env(target, None), tmp_path)
        assert code == 5, (case, err)
        assert not target.exists(), case  # nothing created
        assert not (tmp_path / "x").exists()
    (tmp_path / "junk.tar").write_bytes(b"\x00" * 1000 + b"garbage")
    code, _, err = await run_db(
        ["restore", str(tmp_path / "junk.tar")], db_env(tmp_path / "t", None), tmp_path
    )
    assert code == 5 and "Traceback" not in err
    code, _, err = await run_db(
        ["restore", str(tmp_path / "none.tar")], db_env(tmp_path / "t", None), tmp_path
    )
    assert code == 3 and "does not exist" in err


async def test_deletions_held_back_by_a_backup_that_died_are_done_by_the_next_forget(
    tmp_path: Path,
):
    """A backup killed before it could carry out what waited: the bot process, which
    held them back, does them at its next forget (not only at its next start)."""
    data = tmp_path / "data"
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", data)
    await store.open()
    try:
        g = store.guild(A)
        for i in range(3):
            await g.add_taught(f"l{i}", image(i), "jpg", user_id=7, user_name="ann")
        paths = {r.label: r.path for r in await g.taught()}
        backup = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(60)"
        )
        (data / BACKUP_MARKER).write_text(f"pid={backup.pid} host={socket.gethostname()}\n")
        await g.forget_label("l0")
        assert paths["l0"].exists()  # held back: a backup runs
        backup.kill()  # it dies; its marker stays, stale
        await backup.wait()
        await g.forget_label("l1")
        assert not paths["l1"].exists()
        await store.removals.stop()  # the sweep it started
        assert not paths["l0"].exists() and paths["l2"].exists()
        async with store.sessions() as s:
            assert list(await s.scalars(select(PendingRemovalRow.target))) == []
    finally:
        await store.close()
