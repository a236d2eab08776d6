"""``python -m bot db copy TARGET_URL``: SQLite -> PostgreSQL -> SQLite, every table equal
(counts and content hashes), the copy usable by the bot, a target with data refused,
passwords never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.db import Store
from bot.db.copy import TargetNotEmpty, copy_between
from bot.db.repair import check_at_start
from tests.bot.databases import database_url, postgres_url
from tests.bot.db.db_world import A, contents, db_env, populate, run_db, taught_files_intact
from tests.bot.harness import flower_bytes


async def test_sqlite_to_postgresql_and_back_is_equal(tmp_path: Path):
    postgres_url()  # skips (or fails in CI) without a server
    data = tmp_path / "data"
    first = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    back = f"sqlite+aiosqlite:///{tmp_path / 'back.db'}"
    store = Store(first, data)
    await store.open()
    try:
        await populate(store)
        await check_at_start(store, grace_s=0)  # the identity, as a running bot has it
        original = await contents(store)
    finally:
        await store.close()
    assert all(rows for rows, _ in original.values()), original  # every table has rows
    async with database_url("postgresql", tmp_path) as pg:
        env = db_env(data, first)
        code, out, err = await run_db(["copy", pg], env, tmp_path)
        assert code == 0, err
        assert f"copied {len(original)} tables" in out and "sha256 match" in out
        code, out, err = await run_db(["copy", back], db_env(data, pg), tmp_path)
        assert code == 0, err
        on_pg = Store(pg, data)
        await on_pg.open()
        try:
            assert await contents(on_pg) == original
            # the bot starts on the copy with the same folder, and writes new rows (the
            # id sequences were moved past the copied ids)
            report = await check_at_start(on_pg, grace_s=0)
            assert report.marked_missing == [] and report.set_aside == []
            await on_pg.guild(A).add_taught(
                "daisy", flower_bytes("daisy", 7) + b"new", "jpg", user_id=7, user_name="ann"
            )
            assert await taught_files_intact(on_pg) == 9
        finally:
            await on_pg.close()
        # copying into a database that holds data is refused, nothing written
        code, out, err = await run_db(["copy", pg], env, tmp_path)
        assert code == 4 and "already holds data" in err
    again = Store(back, data)
    await again.open()
    try:
        assert await contents(again) == original
    finally:
        await again.close()


async def test_a_target_with_data_is_refused(tmp_path: Path):
    one = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    two = f"sqlite+aiosqlite:///{tmp_path / 'two.db'}"
    for url in (one, two):
        store = Store(url, tmp_path / "data")
        await store.open()
        await store.guild(A).set_watched(1, True)
        await store.close()
    with pytest.raises(TargetNotEmpty, match="already holds data"):
        await copy_between(one, two)


async def test_the_copy_command_never_prints_a_password(tmp_path: Path):
    data = tmp_path / "data"
    store = Store(f"sqlite+aiosqlite:///{data / 'bot.db'}", data)
    await store.open()
    await store.close()
    env = db_env(data, None)
    target = "postgresql://bot:hunter2@127.0.0.1:1/nowhere"
    code, out, err = await run_db(["copy", target], env, tmp_path)
    assert code == 6, err
    assert "hunter2" not in out + err and "bot:***@127.0.0.1:1/nowhere" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = await run_db(["copy", "mysql://u:hunter2@h/d"], env, tmp_path)
    assert code == 2 and "TARGET_URL" in err and "hunter2" not in out + err
    code, _, err = await run_db(
        ["copy", f"sqlite:///{tmp_path / 'nofolder' / 'x.db'}"], env, tmp_path
    )
    assert code == 2 and "does not exist" in err and not (tmp_path / "nofolder").exists()
