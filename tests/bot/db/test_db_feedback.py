"""Answers, votes and the review queue in the store, on SQLite and PostgreSQL: scoping,
the bound on kept images, quotas and forgetting (the start-up check: test_db_repair.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import event, func, select, update

from bot.db import QuotaExceeded, Quotas, Store, answer_book
from bot.db.schema import AnswerRow
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import png_bytes

A, B = 111_111_111_111, 222_222_222_222


@pytest_asyncio.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(request.param, tmp_path) as url:
        quotas = Quotas(max_bytes=40_000, feedback_images=3, feedback_hours=24, review_items=2)
        s = Store(url, tmp_path / "data", quotas)
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def answer(store: Store, guild: int, colour: str = "red", user: int = 7) -> int:
    return await store.guild(guild).record_answer(
        channel_id=1,
        user_id=user,
        model_id="m1",
        label="daisy",
        confidence=0.9,
        data=png_bytes((32, 32), colour),
        extension="png",
    )


async def test_migrations_match_the_schema(store: Store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.db.schema import Base

    def diff(connection: object) -> list[object]:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_answers_are_scoped_and_votes_replace(store: Store):
    a_id = await answer(store, A)
    assert await store.guild(B).answer(a_id) is None  # another server's id
    assert await store.guild(B).vote(a_id, 5, right=True) is None
    first = await store.guild(A).vote(a_id, 5, right=True)
    assert first is not None and (first.right, first.wrong, first.replaced) == (1, 0, False)
    again = await store.guild(A).vote(a_id, 5, right=False, label="tulip")
    assert again is not None and (again.right, again.wrong, again.replaced) == (0, 1, True)
    other = await store.guild(A).vote(a_id, 6, right=True)
    assert other is not None and (other.right, other.wrong) == (1, 1)


async def test_kept_images_are_bounded_by_count_and_age(store: Store):
    scope = store.guild(A)
    ids = [await answer(store, A, c) for c in ("red", "green", "blue", "white", "black")]
    kept = [(await scope.answer(i)).image for i in ids]  # type: ignore[union-attr]
    assert [p is not None for p in kept] == [False, False, True, True, True]
    assert len(list(scope.feedback_dir.iterdir())) == 3
    # an answer past the window is deleted, with its image
    async with store.sessions() as s, s.begin():
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
        await s.execute(update(AnswerRow).where(AnswerRow.id == ids[2]).values(created_at=old))
    await scope.prune_feedback()
    assert await scope.answer(ids[2]) is None
    assert len(list(scope.feedback_dir.iterdir())) == 2


async def test_answers_are_pruned_without_a_count_until_one_is_due(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    """Between counts, each answer is checked against what this process knows (no query
    over the day's answers); the limits hold exactly all the same."""
    counts: list[str] = []

    def count_queries(conn, cursor, statement, *args: object) -> None:
        if "count(" in statement.lower() and "answers" in statement:
            counts.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count_queries)
    scope = store.guild(A)
    colours = ("red", "green", "blue", "white", "black", "yellow")
    for i, colour in enumerate(colours):
        await answer(store, A, colour)
        assert len(list(scope.feedback_dir.iterdir())) == min(i + 1, 3)  # exactly the limit
    # counted at the first answer, then when the limit was near: not at every answer
    assert 1 <= len(counts) < len(colours)
    # an answer past the window goes at the next count: the oldest known is past it ...
    book = store.answer_books[A]
    book.oldest = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    async with store.sessions() as s, s.begin():
        old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
        first = await s.scalar(select(func.min(AnswerRow.id)).where(AnswerRow.guild_id == A))
        await s.execute(update(AnswerRow).where(AnswerRow.id == first).values(created_at=old))
    await answer(store, A, "purple")
    assert await scope.answer(first) is None
    # ... and at the latest ANSWER_BOOK_TTL_S after the last count (another process)
    monkeypatch.setattr(answer_book, "ANSWER_BOOK_TTL_S", 0.0)
    before = len(counts)
    await answer(store, A, "orange")
    assert len(counts) == before + 1


async def test_an_answer_after_forgetting_the_server_is_recorded(store: Store):
    """Forgetting deletes the server's row; the next answer must create it again (the
    answer book of the forgotten server is not trusted)."""
    await answer(store, A, "red")
    await answer(store, A, "green")
    await store.guild(A).forget_all()
    answer_id = await answer(store, A, "blue")
    found = await store.guild(A).answer(answer_id)
    assert found is not None and found.image is not None and found.image.is_file()


async def test_review_queue_keeps_its_image_and_honours_quotas(store: Store):
    scope = store.guild(A)
    first = await scope.answer(await answer(store, A, "red"))
    assert first is not None and first.image is not None
    assert await scope.enqueue_review(first, "tulip", user_id=7, user_name="m") == (True, 1)
    assert await scope.enqueue_review(first, "tulip", user_id=8, user_name="n") == (False, 1)
    # the answer's image goes out of the answer cache, the queued item keeps it
    for colour in ("green", "blue", "white"):
        await answer(store, A, colour)
    assert (await scope.answer(first.answer_id)).image is None  # type: ignore[union-attr]
    item, waiting = await scope.review_queue()
    assert item is not None and waiting == 1 and item.image.is_file()
    assert item.proposed_label == "tulip" and item.model_label == "daisy"
    assert await store.guild(B).review_item(item.item_id) is None
    second = await scope.answer(await answer(store, A, "yellow"))
    assert second is not None
    await scope.enqueue_review(second, "rose", user_id=7, user_name="m")
    third = await scope.answer(await answer(store, A, "purple"))
    assert third is not None
    with pytest.raises(QuotaExceeded, match="review queue is full"):
        await scope.enqueue_review(third, "rose", user_id=7, user_name="m")
    assert await scope.drop_review_item(item.item_id)
    assert not item.image.exists()


async def test_review_items_count_toward_the_bytes_quota(store: Store, tmp_path: Path):
    scope = store.guild(A)
    big = await scope.record_answer(
        channel_id=1,
        user_id=7,
        model_id="m1",
        label="daisy",
        confidence=0.9,
        data=b"\x89PNG" + bytes(50_000),
        extension="png",
    )
    record = await scope.answer(big)
    assert record is not None
    with pytest.raises(QuotaExceeded, match="no room"):
        await scope.enqueue_review(record, "rose", user_id=7, user_name="m")


async def test_forgetting_removes_answers_votes_and_review_items(store: Store):
    scope = store.guild(A)
    mine = await scope.answer(await answer(store, A, "red", user=7))
    theirs = await scope.answer(await answer(store, A, "green", user=8))
    assert mine is not None and theirs is not None
    await scope.enqueue_review(theirs, "rose", user_id=8, user_name="n")
    await scope.vote(mine.answer_id, 8, right=False, label="rose")
    b_answer = await store.guild(B).answer(await answer(store, B, "red", user=8))
    out = await scope.forget_user(8)
    assert out.reviews == 1
    assert await scope.answer(theirs.answer_id) is None
    assert (await scope.review_queue()) == (None, 0)
    tally = await scope.vote(mine.answer_id, 9, right=True)
    assert tally is not None and tally.wrong == 0  # user 8's vote is gone
    assert b_answer is not None and await store.guild(B).answer(b_answer.answer_id) is not None
    await scope.enqueue_review(mine, "tulip", user_id=7, user_name="m")
    assert (await scope.forget_label("tulip")).reviews == 1
    await scope.forget_all()
    assert await scope.answer(mine.answer_id) is None and not scope.folder.exists()


async def test_forget_all_and_the_retention_purge_leave_other_servers_alone(store: Store):
    a, b = store.guild(A), store.guild(B)
    a_answer = await a.answer(await answer(store, A, "red"))
    b_answer = await b.answer(await answer(store, B, "red"))
    assert a_answer is not None and b_answer is not None
    await a.enqueue_review(a_answer, "rose", user_id=7, user_name="m")
    await b.enqueue_review(b_answer, "rose", user_id=7, user_name="m")
    await a.vote(a_answer.answer_id, 8, right=True)
    await a.mark_left(dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
    purged = await store.operator.purge_departed(dt.timedelta(days=30))
    assert list(purged) == [A]
    assert await a.answer(a_answer.answer_id) is None and (await a.review_queue()) == (None, 0)
    assert not a.feedback_dir.exists()
    item, waiting = await b.review_queue()
    assert waiting == 1 and item is not None and item.image.is_file()
    assert await b.answer(b_answer.answer_id) is not None


async def test_review_items_are_listed_oldest_first_within_their_server(store: Store):
    a, b = store.guild(A), store.guild(B)
    first, second = await answer(store, A, "red"), await answer(store, A, "blue")
    theirs = await answer(store, B, "green")
    for scope, answer_id, label in ((a, first, "tulip"), (a, second, "rose"), (b, theirs, "x")):
        record = await scope.answer(answer_id)
        assert record is not None
        await scope.enqueue_review(record, label, user_id=7, user_name="m")
    assert [i.proposed_label for i in await a.review_items(10)] == ["tulip", "rose"]
    assert [i.proposed_label for i in await a.review_items(1, offset=1)] == ["rose"]
    assert [i.proposed_label for i in await b.review_items(10)] == ["x"]
