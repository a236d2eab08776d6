"""The store on real SQLite and PostgreSQL: scoping, quotas, files, forgetting, models."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from bot.core.errors import UserError
from bot.db import (
    DatabaseTooNew,
    GuildSettings,
    QuotaExceeded,
    Quotas,
    Store,
    StoreWriteError,
    guild_data,
)
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import ROOT, flower_bytes, png_bytes

A, B = 111_111_111_111, 222_222_222_222


@pytest_asyncio.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(request.param, tmp_path) as url:
        s = Store(
            url,
            tmp_path / "data",
            Quotas(max_labels=3, max_images=5, max_bytes=400_000, retrains_per_hour=2),
        )
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def refuse_inserts(store: Store, table: str) -> None:
    """A trigger that makes the database itself refuse every insert into ``table``."""
    async with store.sessions() as s, s.begin():
        if store.engine.dialect.name == "sqlite":
            await s.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            await s.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS "
                    "$$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
                )
            )
            await s.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


async def teach(store: Store, gid: int, label: str, data: bytes, user: int = 7) -> bool:
    added, _ = await store.guild(gid).add_taught(
        label, data, "jpg", user_id=user, user_name=f"u{user}"
    )
    return added


async def test_every_query_is_scoped_to_its_server(store: Store):
    await teach(store, A, "daisy", flower_bytes("daisy", 0))
    await teach(store, A, "daisy", flower_bytes("daisy", 1))
    await teach(store, B, "rose", flower_bytes("tulip", 0))
    await store.guild(A).set_watched(10, True)
    await store.guild(B).set_watched(20, True)
    await store.guild(B).set_include_default(False)
    assert await store.guild(A).label_counts() == {"daisy": 2}
    assert await store.guild(B).label_counts() == {"rose": 1}
    assert await store.guild(A).watched_channels() == {10}
    assert await store.guild(B).watched_channels() == {20}
    assert (await store.guild(A).settings()).include_default
    assert not (await store.guild(B).settings()).include_default
    assert await store.default_scope().label_counts() == {}
    # the same image in two servers: two files, one per server folder
    await teach(store, B, "daisy", flower_bytes("daisy", 0))
    a_files = {r.path for r in await store.guild(A).taught()}
    b_files = {r.path for r in await store.guild(B).taught()}
    assert all(str(A) in str(p) for p in a_files) and all(str(B) in str(p) for p in b_files)
    await store.guild(A).forget_all()
    assert await store.guild(B).label_counts() == {"rose": 1, "daisy": 1}
    assert all(p.is_file() for p in b_files)
    assert not any(p.exists() for p in a_files)


async def test_same_image_same_label_is_not_stored_twice(store: Store):
    data = flower_bytes("daisy")
    assert await teach(store, A, "daisy", data)
    assert not await teach(store, A, "daisy", data)
    assert await teach(store, A, "flower", data)  # another label: another row, same file
    rows = await store.guild(A).taught()
    assert len(rows) == 2 and rows[0].path == rows[1].path
    assert rows[0].path.read_bytes() == data
    assert rows[0].sha256 == hashlib.sha256(data).hexdigest()
    assert (await store.guild(A).usage()).bytes == len(data)  # the file counts once


async def test_quotas_say_the_limit_and_how_to_free_space(store: Store):
    for i, label in enumerate(("a", "b", "c")):
        await teach(store, A, label, png_bytes(colour=("red", "green", "blue")[i]))
    with pytest.raises(QuotaExceeded, match=r"3 labels, the limit is 3.*/forget label:"):
        await teach(store, A, "d", png_bytes(colour="white"))
    await teach(store, A, "a", png_bytes(colour="white"))
    await teach(store, A, "a", png_bytes(colour="black"))
    with pytest.raises(QuotaExceeded, match=r"5 taught images, the limit is 5.*/forget mine"):
        await teach(store, A, "a", png_bytes(colour="yellow"))
    # another server is not affected by A's quota
    assert await teach(store, B, "d", png_bytes(colour="white"))
    big = flower_bytes("sunflower", 0) * 30
    assert len(big) > 400_000
    with pytest.raises(QuotaExceeded, match=r"past the 400.0 KB limit"):
        await teach(store, B, "d", big)
    # the refused images left no file behind
    assert len(list(store.guild(B).images_dir.iterdir())) == 1


async def test_retrain_quota_counts_the_last_hour(store: Store):
    g = store.guild(A)
    for _ in range(2):
        await g.finish_retrain(await g.start_retrain(7), "ok")
    with pytest.raises(QuotaExceeded, match="retrained 2 times in the last hour, the limit is 2"):
        await g.start_retrain(7)
    await store.guild(B).start_retrain(7)  # B has its own count
    async with store.sessions() as s, s.begin():
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        await s.execute(
            text("UPDATE retrains SET started_at = :t WHERE guild_id = :g"), {"t": old, "g": A}
        )
    await g.start_retrain(7)
    last = await g.last_retrain()
    assert last is not None and last.outcome == "running"


async def test_a_failed_retrain_gives_back_the_count_of_new_taught_images(store: Store):
    """The count an auto-retrain waits for restarts when a retrain starts; if that retrain
    fails, the images it would have learned are new again (not N more to wait for)."""
    g = store.guild(A)
    for i in range(3):
        await teach(store, A, "daisy", flower_bytes("daisy", i))
    assert (await g.options()).taught_since_retrain == 3
    failing = await g.start_retrain(7)
    assert (await g.options()).taught_since_retrain == 0
    await teach(store, A, "daisy", flower_bytes("daisy", 3))  # taught while it ran
    await teach(store, B, "rose", flower_bytes("tulip", 0))  # another server's
    await g.finish_retrain(failing, "failed", "the backend is down")
    assert (await g.options()).taught_since_retrain == 4
    assert (await store.guild(B).options()).taught_since_retrain == 1
    ok = await g.start_retrain(7)
    await g.finish_retrain(ok, "ok", "m1")
    assert (await g.options()).taught_since_retrain == 0
    assert store.taught_reset == {}


async def test_forget_label_and_forget_mine_remove_rows_then_unused_files(store: Store):
    g = store.guild(A)
    shared = flower_bytes("daisy", 0)
    await teach(store, A, "daisy", shared, user=1)
    await teach(store, A, "flower", shared, user=2)
    await teach(store, A, "daisy", flower_bytes("daisy", 1), user=2)
    out = await g.forget_label("daisy")
    assert out.images == 2 and out.files == 1  # the shared file is still used by "flower"
    assert await g.label_counts() == {"flower": 1}
    assert [p.name for p in g.images_dir.iterdir()] == [f"{hashlib.sha256(shared).hexdigest()}.jpg"]
    out = await g.forget_user(2)
    assert out.images == 1 and out.files == 1
    assert await g.taught() == [] and list(g.images_dir.iterdir()) == []


async def test_models_current_previous_and_rollback(store: Store):
    g = store.guild(A)
    g.models_dir.mkdir(parents=True)
    for n in (1, 2):
        (g.models_dir / f"m{n}.model").write_bytes(b"model %d" % n)
        await g.register_model(
            f"m{n}", g.models_dir / f"m{n}.model", ["a", "b"], {"accuracy": n / 10}
        )
    current = await g.current_model()
    assert current is not None and current.model_id == "m2" and current.metrics["accuracy"] == 0.2
    assert await store.guild(B).current_model() is None
    back = await g.rollback()
    assert back is not None and back.model_id == "m1" and (await g.current_model()) == back
    assert not (g.models_dir / "m2.model").exists()
    assert await g.rollback() is None  # back to the default model
    assert await g.current_model() is None
    with pytest.raises(UserError, match="default model"):
        await g.rollback()


async def test_old_models_beyond_the_kept_number_are_deleted(store: Store):
    g = store.guild(A)
    g.models_dir.mkdir(parents=True)
    for n in range(guild_data.MODELS_KEPT + 3):
        (g.models_dir / f"m{n}.model").write_bytes(b"x")
        await g.register_model(f"m{n}", g.models_dir / f"m{n}.model", ["a"], {})
    models = await g.models()
    assert len(models) == guild_data.MODELS_KEPT + 1
    assert sorted(p.name for p in g.models_dir.iterdir()) == sorted(m.path.name for m in models)


async def test_register_model_refuses_a_file_outside_the_scope(store: Store, tmp_path: Path):
    (tmp_path / "x.model").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a model file"):
        await store.guild(A).register_model("x", tmp_path / "x.model", ["a"], {})


async def test_a_failed_commit_leaves_no_file(store: Store, monkeypatch: pytest.MonkeyPatch):
    """Issue 9 finding 6: the message 'nothing was stored' is true."""
    g = store.guild(A)
    await teach(store, A, "daisy", flower_bytes("daisy", 0))
    await refuse_inserts(store, "taught_images")
    with pytest.raises(StoreWriteError, match="nothing was stored"):
        await teach(store, A, "daisy", flower_bytes("daisy", 1))
    assert [p.name for p in g.images_dir.iterdir()] == [
        f"{hashlib.sha256(flower_bytes('daisy', 0)).hexdigest()}.jpg"
    ]


async def test_a_failed_file_write_leaves_no_row(store: Store):
    g = store.guild(A)
    g.images_dir.mkdir(parents=True)
    g.images_dir.chmod(0o500)
    try:
        import os

        if os.access(g.images_dir, os.W_OK):  # root ignores the mode: use a file instead
            g.images_dir.chmod(0o700)
            g.images_dir.rmdir()
            g.images_dir.write_bytes(b"not a folder")
        with pytest.raises(StoreWriteError):
            await teach(store, A, "daisy", flower_bytes("daisy"))
    finally:
        if g.images_dir.is_dir():
            g.images_dir.chmod(0o700)
    assert await g.taught() == []


async def test_retention_purge_forgets_servers_left_long_ago(store: Store):
    await teach(store, A, "daisy", flower_bytes("daisy"))
    await teach(store, B, "daisy", flower_bytes("daisy"))
    await store.guild(A).mark_left(dt.datetime.now(dt.UTC) - dt.timedelta(days=31))
    await store.guild(B).mark_left(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    purged = await store.operator.purge_departed(dt.timedelta(days=30))
    assert list(purged) == [A] and purged[A].images == 1
    assert await store.guild(A).taught() == [] and not store.guild(A).folder.exists()
    assert len(await store.guild(B).taught()) == 1
    await store.guild(B).mark_present()  # re-joined: kept however long ago it left
    assert await store.operator.purge_departed(dt.timedelta(0)) == {}


async def test_a_server_the_bot_sees_is_known_even_with_nothing_stored(store: Store):
    assert A not in await store.operator.scope_ids()
    await store.guild(A).mark_present()  # the bot joined, or saw it at start
    assert A in await store.operator.scope_ids()
    assert await store.guild(A).left_at() is None
    assert await store.guild(A).settings() == GuildSettings()  # the defaults
    await store.guild(A).mark_left()
    await store.guild(A).mark_present()
    assert await store.guild(A).left_at() is None


async def test_a_database_newer_than_the_code_is_refused(store: Store):
    async with store.sessions() as s, s.begin():
        await s.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    again = Store(store.url, store.data_dir)
    with pytest.raises(DatabaseTooNew, match=r"f00dfeed.*newer version"):
        await again.open()


async def test_migrations_are_idempotent(store: Store):
    again = Store(store.url, store.data_dir)
    await again.open()
    await again.close()


def test_guild_ids_must_be_snowflakes():
    s = Store("sqlite+aiosqlite:///:memory:", Path("/nonexistent"))
    for bad in (0, -5):
        with pytest.raises(ValueError, match="not a Discord server id"):
            s.guild(bad)


def test_database_url_setting_is_validated_and_kept_secret(tmp_path: Path):
    from pydantic import ValidationError

    from tests.bot.harness import settings_from_env

    base = {"DISCORD_TOKEN": "a.b.c", "DATA_DIR": str(tmp_path)}
    s = settings_from_env(base)
    assert s.database_url_value == f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    s = settings_from_env({**base, "DATABASE_URL": "postgres://bot:hunter2@db/bot"})
    assert s.database_url_value == "postgresql+asyncpg://bot:hunter2@db/bot"
    assert "hunter2" not in repr(s)
    for bad in ("mysql://x", "http://db", "/just/a/path"):
        with pytest.raises(ValidationError, match="DATABASE_URL must be"):
            settings_from_env({**base, "DATABASE_URL": bad})


def test_db_command_never_prints_the_url(tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": "mysql://u:hunter2@h/d"}
    env.pop("DISCORD_TOKEN", None)
    out = subprocess.run(
        [sys.executable, "-m", "bot", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "DATABASE_URL must be" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout


def test_db_command_upgrades_and_reports(tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    root = ROOT
    run = [sys.executable, "-m", "bot", "db"]
    up = subprocess.run(
        [*run, "upgrade"], env=env, capture_output=True, text=True, timeout=60, cwd=root
    )
    from bot.db.engine import code_heads

    [head] = code_heads()
    assert up.returncode == 0 and f"revision {head} (was empty)" in up.stdout
    cur = subprocess.run(
        [*run, "current"], env=env, capture_output=True, text=True, timeout=60, cwd=root
    )
    assert f"database revision: {head}; this code: {head}" in cur.stdout
    assert (tmp_path / "bot.db").is_file()


async def test_a_flood_of_concurrent_teaches_stops_exactly_at_the_quota(store: Store):
    from tests.bot.harness import png_bytes as png

    colours = ["red", "green", "blue", "white", "black", "yellow", "cyan", "magenta", "grey"]
    results = await asyncio.gather(
        *(teach(store, A, "a", png(colour=c)) for c in colours), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert results.count(True) == 5 and len(refused) == 4
    assert (await store.guild(A).usage()).images == 5
    assert len(list(store.guild(A).images_dir.iterdir())) == 5


async def test_sqlite_runs_in_wal_with_normal_sync_and_no_pings(tmp_path: Path) -> None:
    """WAL + synchronous=NORMAL (commits do not wait for fsync) and no pre-ping round trip
    per session on the embedded database; a server database keeps its pings."""
    from bot.db.engine import make_engine

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        async with engine.connect() as conn:
            assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await conn.scalar(text("PRAGMA synchronous"))) == 1  # NORMAL
            assert (await conn.scalar(text("PRAGMA foreign_keys"))) == 1
        assert engine.pool._pre_ping is False
    finally:
        await engine.dispose()
    server = make_engine("postgresql+asyncpg://user@127.0.0.1:1/none")
    assert server.pool._pre_ping is True
    await server.dispose()


async def test_first_writes_of_a_server_racing_each_other_all_succeed(store: Store):
    """The bot seeing a server while a command stores its first settings: one row, no
    error (both create the row if it is missing)."""
    scope = store.guild(A)
    await asyncio.gather(
        *(scope.mark_present() for _ in range(5)),
        *(scope.set_include_default(False) for _ in range(5)),
        *(scope.set_trainer_role(7) for _ in range(5)),
    )
    assert await store.operator.scope_ids() == [A]
    assert await scope.settings() == GuildSettings(False, 7)


async def test_single_images_are_found_listed_and_forgotten_within_their_server(store: Store):
    daisy0, daisy1 = flower_bytes("daisy", 0), flower_bytes("daisy", 1)
    await teach(store, A, "daisy", daisy0, user=7)
    await teach(store, A, "daisy", daisy1, user=8)
    await teach(store, A, "tulip", daisy0, user=7)  # the same file under a second label
    await teach(store, B, "daisy", flower_bytes("daisy", 2), user=7)
    a, b = store.guild(A), store.guild(B)
    sha0, sha1 = (hashlib.sha256(d).hexdigest() for d in (daisy0, daisy1))
    page = await a.taught_of_label("daisy", limit=1)
    assert [r.sha256 for r in page] == [sha1]  # newest first
    assert [r.sha256 for r in await a.taught_of_label("daisy", 5, offset=1)] == [sha0]
    found = await a.taught_image(sha0)
    assert found is not None and found.path.read_bytes() == daisy0
    assert await b.taught_image(sha0) is None  # another server's file is not found
    assert await b.forget_image("daisy", sha0) == 0  # nor removed
    assert await a.forget_image("daisy", sha1, user_id=7) == 0  # 8 taught it, not 7
    assert await a.forget_image("daisy", sha0, user_id=7) == 1
    assert found.path.exists()  # still used by "tulip"
    assert await a.label_counts() == {"daisy": 1, "tulip": 1}
    assert await a.forget_image("tulip", sha0) == 1
    assert not found.path.exists()
