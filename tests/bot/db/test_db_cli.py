"""``python -m bot db ...`` as an operator runs it (issue 19, finding 8): outside the bot's
folder one line and nothing created; ``repair`` shows what it would do, ``--apply`` does
it and its counts are what happened; a refused start's fix works."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.db import Store
from bot.db.repair import check_at_start
from tests.bot.databases import ENGINES, database_url
from tests.bot.db.db_world import A, db_env, run_db
from tests.bot.harness import flower_bytes

COMMANDS = [
    ["current"],
    ["upgrade"],
    ["repair"],
    ["repair", "--apply"],
    ["backup", "b.tar"],
    ["restore", "b.tar"],
    ["copy", "sqlite:///copy.db"],
]


def listing(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
async def test_outside_the_bots_folder_one_line_and_nothing_created(tmp_path: Path, args):
    env = db_env(tmp_path, None)
    env.pop("DATA_DIR")  # no .env here, nothing set: the default DATA_DIR ./var
    (tmp_path / "b.tar").write_bytes(b"")  # restore then complains about this folder first
    before = listing(tmp_path)
    code, out, err = await run_db(args, env, tmp_path)
    assert code == 3, (out, err)
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert "Traceback" not in err and "no .env in this folder" in err
    assert listing(tmp_path) == before  # nothing created


async def test_a_data_folder_without_its_database_creates_nothing(tmp_path: Path):
    env = db_env(tmp_path, None)  # DATA_DIR exists, bot.db does not
    for args in (["current"], ["repair"], ["backup", str(tmp_path / "x.tar")]):
        code, _, err = await run_db(args, env, tmp_path)
        assert code == 3 and f"{tmp_path / 'bot.db'} does not exist" in err
        assert listing(tmp_path) == []
    code, _, _ = await run_db(["upgrade"], env, tmp_path)  # the one that creates it
    assert code == 0 and (tmp_path / "bot.db").is_file()


async def test_an_unreachable_database_is_one_line(tmp_path: Path):
    env = db_env(tmp_path, "postgresql://bot:hunter2@127.0.0.1:1/bot")
    for args in (["current"], ["repair"], ["upgrade"]):
        code, out, err = await run_db(args, env, tmp_path)
        assert code == 6, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "hunter2" not in out + err


async def teach(store: Store, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        data = flower_bytes("daisy", i % 8) + i.to_bytes(2, "big")
        await store.guild(A).add_taught("daisy", data, "jpg", user_id=7, user_name="ann")


@pytest.mark.parametrize("engine", ENGINES)
async def test_repair_shows_then_applies_and_counts_right(tmp_path: Path, engine: str):
    async with database_url(engine, tmp_path) as url:
        data = tmp_path / "data"
        store = Store(url, data)
        await store.open()
        await teach(store, 10)
        await check_at_start(store, grace_s=0)
        taught = await store.guild(A).taught()
        await store.close()
        for r in taught[:7]:  # 7 of 10 missing: the start would refuse
            r.path.unlink()
        orphans = [store.guild(A).images_dir / f"{i:064x}.jpg" for i in range(3)]
        hour_ago = time.time() - 3600  # older than PostgreSQL's grace for in-flight files
        for p in orphans:
            p.write_bytes(b"nobody's")
            os.utime(p, (hour_ago, hour_ago))
        env = db_env(data, url)
        code, out, err = await run_db(["repair"], env, tmp_path)
        assert code == 0, err
        assert "as they are, the bot refuses to start: 7 of the 10 files" in out
        assert "7 record(s) whose file is missing would be deleted" in out
        assert "3 file(s) no record names would move to" in out
        assert "nothing was changed" in out
        assert all(p.exists() for p in orphans)
        still = Store(url, data)
        await still.open()
        assert len(await still.guild(A).taught(include_missing=True)) == 10
        await still.close()
        code, out, err = await run_db(["repair", "--apply"], env, tmp_path)
        assert code == 0, err
        assert "deleted 7 record(s) whose file was missing" in out
        assert "moved 3 file(s) no record names to" in out
        assert not any(p.exists() for p in orphans)
        aside = list((data / "set-aside").rglob("*.jpg"))
        assert sorted(p.name for p in aside) == sorted(p.name for p in orphans)
        after = Store(url, data)
        await after.open()
        try:
            assert [r.path for r in await after.guild(A).taught(include_missing=True)] == [
                r.path for r in taught[7:]
            ]
            report = await check_at_start(after, grace_s=0)  # the bot starts now
            assert report.marked_missing == report.set_aside == []
        finally:
            await after.close()
        code, out, _ = await run_db(["repair"], env, tmp_path)
        assert "0 record(s) whose file is missing" in out and "the bot starts" in out
