"""The serving state cache (``scope.serving()``: current model and "not sure" threshold)
on SQLite and PostgreSQL: every write of this process is seen at once, an answer's
recording keeps the entry, another process's writes are seen within the TTL, and a read
that raced a write is not kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.db import Store
from bot.db.serving import Serving, ServingCache
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import png_bytes

A, B = 111_111_111_111, 222_222_222_222


@pytest_asyncio.fixture(params=ENGINES)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(request.param, tmp_path) as u:
        yield u


@pytest_asyncio.fixture
async def store(url: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(url, tmp_path / "data")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def model(store: Store, gid: int, name: str) -> str:
    scope = store.guild(gid)
    scope.models_dir.mkdir(parents=True, exist_ok=True)
    path = scope.models_dir / f"{name}.model"
    path.write_bytes(b"model " + name.encode())
    await scope.register_model(name, path, ["daisy", "rose"], {})
    return name


async def current(store: Store, gid: int) -> str | None:
    serving = await store.guild(gid).serving()
    return serving.model.model_id if serving.model else None


async def test_every_write_of_this_process_is_seen_at_once(store: Store):
    a = store.guild(A)
    assert await a.serving() == Serving(None, None)
    await model(store, A, "m1")
    assert await current(store, A) == "m1"
    await a.set_low_confidence(0.7)
    assert (await a.serving()).low_confidence == 0.7
    await model(store, A, "m2")
    assert await current(store, A) == "m2"
    await a.rollback()
    assert await current(store, A) == "m1"
    assert await current(store, B) is None  # B's entry is its own
    await a.forget_all()
    assert await a.serving() == Serving(None, None)


async def test_recording_answers_keeps_the_entry(store: Store):
    await model(store, A, "m1")
    a = store.guild(A)
    await a.serving()
    misses = store.serving.misses
    for i in range(3):
        await a.record_answer(
            channel_id=1,
            user_id=2,
            model_id="m1",
            label="daisy",
            confidence=0.9,
            data=png_bytes(colour=f"#0000{i + 1:02x}"),
            extension="png",
        )
        assert await current(store, A) == "m1"
    assert store.serving.misses == misses  # three answers, no query


async def test_another_process_writes_are_seen_within_the_ttl(url: str, tmp_path: Path):
    mine = Store(url, tmp_path / "data", serving_ttl_s=0.3)
    other = Store(url, tmp_path / "data")  # a second shard, or `python -m bot db`
    await mine.open()
    await other.open()
    try:
        await model(mine, A, "m1")
        assert await current(mine, A) == "m1"
        await model(other, A, "m2")
        assert await current(mine, A) == "m1"  # cached, as documented
        await asyncio.sleep(0.35)
        assert await current(mine, A) == "m2"
    finally:
        await mine.close()
        await other.close()


def test_a_read_that_raced_a_write_is_not_kept():
    now = [0.0]
    cache = ServingCache(ttl_s=10.0, clock=lambda: now[0])
    stale = Serving(None, 0.5)
    generation = cache.generation(A)  # a read starts...
    cache.drop(A)  # ... a write commits ...
    cache.put(A, generation, stale)  # ... the read ends with what it saw before
    assert cache.get(A) is None
    fresh = Serving(None, 0.7)
    cache.put(A, cache.generation(A), fresh)
    assert cache.get(A) == fresh
    generation = cache.generation(A)
    cache.clear()  # the start-up repair may change any server
    cache.put(A, generation, stale)
    assert cache.get(A) is None
    cache.put(A, cache.generation(A), fresh)
    now[0] = 10.0
    assert cache.get(A) is None  # past the TTL
