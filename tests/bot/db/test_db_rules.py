"""The store's rules, options and label renames on real SQLite and PostgreSQL: scoping,
forgetting, the taught-image count behind the auto-retrain, and the upgrade of a database
at revision 0001 (with data) to revision 0003."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from bot.db import ANY_LABEL, LabelRule, Quotas, RuleAction, ServerOptions, Store
from bot.db.engine import alembic_config, make_engine
from bot.db.schema import Base
from bot.db.scope_rules import MAX_RULES
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import png_bytes

A, B = 111_111_111_111, 222_222_222_222


@pytest_asyncio.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(request.param, tmp_path) as url:
        s = Store(url, tmp_path / "data", Quotas(retrains_per_hour=5))
        await s.open()
        try:
            yield s
        finally:
            await s.close()


def rule(label: str, action: RuleAction = RuleAction.NOTHING, **kw: object) -> LabelRule:
    return LabelRule(label, action, float(kw.pop("threshold", 0.5)), **kw)  # type: ignore[arg-type]


async def test_rules_are_scoped_replaced_and_removed(store: Store):
    a, b = store.guild(A), store.guild(B)
    assert not await a.set_rule(rule("tulip", RuleAction.REACT, emoji="🌷"))
    assert await a.set_rule(rule("tulip", RuleAction.DELETE, threshold=0.9))
    assert not await a.set_rule(rule(ANY_LABEL, RuleAction.LOG, log_channel_id=42))
    assert not await b.set_rule(rule("tulip"))
    assert await a.rules() == [
        LabelRule(ANY_LABEL, RuleAction.LOG, 0.5, None, 42),
        LabelRule("tulip", RuleAction.DELETE, 0.9),
    ]
    assert await b.rules() == [LabelRule("tulip", RuleAction.NOTHING, 0.5)]
    assert await b.remove_rule("tulip") and not await b.remove_rule("tulip")
    assert len(await a.rules()) == 2


async def test_a_server_has_at_most_max_rules(store: Store):
    a = store.guild(A)
    for i in range(MAX_RULES):
        await a.set_rule(rule(f"l{i}"))
    with pytest.raises(ValueError, match="at most"):
        await a.set_rule(rule("one-more"))
    assert await a.set_rule(rule("l0", RuleAction.REPLY))  # replacing is still fine


async def test_options_default_set_and_forgotten_with_the_server(store: Store):
    a, b = store.guild(A), store.guild(B)
    assert await a.options() == ServerOptions()
    await a.set_low_confidence(0.7)
    await a.set_auto_retrain(3)
    await b.set_low_confidence(0.2)
    await a.set_rule(rule("tulip"))
    assert await a.options() == ServerOptions(0.7, 3, 0)
    with pytest.raises(ValueError):
        await a.set_low_confidence(1.5)
    with pytest.raises(ValueError):
        await a.set_auto_retrain(-1)
    await a.set_low_confidence(None)
    assert (await a.options()).low_confidence is None
    await a.forget_all()
    assert await a.options() == ServerOptions() and await a.rules() == []
    assert (await b.options()).low_confidence == 0.2


async def test_the_retention_purge_takes_rules_and_options(store: Store):
    a, b = store.guild(A), store.guild(B)
    for scope in (a, b):
        await scope.set_rule(rule("tulip"))
        await scope.set_auto_retrain(5)
    await a.mark_left(dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    purged = await store.operator.purge_departed(dt.timedelta(days=30))
    assert list(purged) == [A]
    assert await a.rules() == [] and await a.options() == ServerOptions()
    assert len(await b.rules()) == 1 and (await b.options()).auto_retrain_after == 5


async def test_new_taught_images_are_counted_until_a_retrain_starts(store: Store):
    a = store.guild(A)
    heard: list[int] = []
    store.taught_listeners.append(heard.append)
    store.taught_listeners.append(lambda _scope: 1 / 0)  # a broken listener is only logged
    image = png_bytes(colour="red")
    assert (await a.add_taught("x", image, "png", user_id=1, user_name="u"))[0]
    assert not (await a.add_taught("x", image, "png", user_id=1, user_name="u"))[0]  # dup
    await a.add_taught("y", image, "png", user_id=1, user_name="u")
    await store.guild(B).add_taught("x", image, "png", user_id=1, user_name="u")
    assert (await a.options()).taught_since_retrain == 2
    assert heard == [A, A, B]
    await a.start_retrain(user_id=0)
    assert (await a.options()).taught_since_retrain == 0
    assert (await store.guild(B).options()).taught_since_retrain == 1


async def test_rename_moves_rows_and_rule_and_refuses_a_collision(store: Store):
    a, b = store.guild(A), store.guild(B)
    red, blue = png_bytes(colour="red"), png_bytes(colour="blue")
    await a.add_taught("old", red, "png", user_id=1, user_name="u")
    await a.add_taught("old", blue, "png", user_id=1, user_name="u")
    await a.add_taught("taken", red, "png", user_id=1, user_name="u")
    await b.add_taught("old", red, "png", user_id=1, user_name="u")
    await a.set_rule(rule("old", RuleAction.REACT, emoji="🌷"))
    with pytest.raises(ValueError, match="already has taught images"):
        await a.rename_label("old", "taken")
    assert await a.rename_label("ghost", "new") == 0
    assert await a.rename_label("old", "new") == 2
    assert await a.label_counts() == {"new": 2, "taken": 1}
    assert [r.label for r in await a.rules()] == ["new"]
    assert all(r.path.is_file() for r in await a.taught())
    assert await b.label_counts() == {"old": 1}
    # the new name's own rule stays; the old name's rule goes
    await a.set_rule(rule("newer", RuleAction.DELETE))
    await a.rename_label("new", "newer")
    assert [(r.label, r.action) for r in await a.rules()] == [("newer", RuleAction.DELETE)]


# --- the migration ------------------------------------------------------------------------
def _upgrade_to(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _schema_differences(connection: Connection) -> list[object]:
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


@pytest.mark.parametrize("engine_name", ENGINES)
async def test_upgrade_from_0001_keeps_the_data(engine_name: str, tmp_path: Path):
    async with database_url(engine_name, tmp_path) as url:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0001")
                await conn.execute(
                    text(
                        "INSERT INTO guilds (id, include_default, created_at) "
                        "VALUES (:g, false, :t)"
                    ),
                    {"g": A, "t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
                )
                await conn.execute(
                    text(
                        "INSERT INTO taught_images (guild_id, sha256, label, user_id, user_name,"
                        " added_at, file_name, size_bytes) VALUES (:g, :s, 'rose', 7, 'ann', :t,"
                        " :f, 3)"
                    ),
                    {
                        "g": A,
                        "s": "a" * 64,
                        "t": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
                        "f": "a" * 64 + ".png",
                    },
                )
                await conn.execute(
                    text(
                        "INSERT INTO watched_channels (guild_id, channel_id, added_at) "
                        "VALUES (:g, 99, :t)"
                    ),
                    {"g": A, "t": dt.datetime(2026, 1, 3, tzinfo=dt.UTC)},
                )
        finally:
            await engine.dispose()
        store = Store(url, tmp_path / "data")
        await store.open()  # migrates 0001 -> head
        try:
            a = store.guild(A)
            [taught] = await a.taught()
            assert (taught.label, taught.user_name) == ("rose", "ann")
            assert await a.watched_channels() == {99}
            assert not (await a.settings()).include_default
            assert await a.options() == ServerOptions() and await a.rules() == []
            await a.set_rule(rule("rose", RuleAction.REACT, emoji="🌹"))
            await a.set_auto_retrain(4)
            assert (await a.options()).auto_retrain_after == 4
            async with store.engine.connect() as conn:
                assert await conn.run_sync(_schema_differences) == []
        finally:
            await store.close()
