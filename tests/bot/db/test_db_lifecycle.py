"""Forgetting that sticks and a review queue that cannot be flooded, in the store (issue 19),
on SQLite and PostgreSQL: the generation a retrain registers against, the author of an
image, per-member review limits, review items' channels, and the 0003 -> 0004 upgrade."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import Connection, text

from bot.db import QuotaExceeded, Quotas, Store
from bot.db.engine import alembic_config, make_engine
from bot.db.quotas import ReviewLimit
from bot.db.scope_models import ScopeForgotten
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import flower_bytes, png_bytes

A, B = 111_111_111_111, 222_222_222_222
ANN, BOB, CAT = 7, 8, 9  # members


@pytest_asyncio.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(request.param, tmp_path) as url:
        s = Store(url, tmp_path / "data", Quotas(review_items=20, review_per_member=3))
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def trained_file(store: Store, gid: int, name: str) -> Path:
    """A model file as a retrain leaves it in the server's models folder."""
    folder = store.guild(gid).models_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.model"
    path.write_bytes(b"model " + name.encode())
    return path


# --- a retrain registers nothing if its server forgot data while it ran ---------------------
@pytest.mark.parametrize("forget", ["all", "label", "mine", "purge"])
async def test_a_retrain_whose_server_forgot_data_while_it_ran_registers_nothing(
    store: Store, forget: str
):
    g = store.guild(A)
    await g.add_taught("daisy", flower_bytes("daisy", 0), "jpg", user_id=ANN, user_name="ann")
    await g.add_taught("rose", flower_bytes("tulip", 0), "jpg", user_id=ANN, user_name="ann")
    started = await g.generation()  # the retrain starts: reads the generation, then images
    assert len(await g.taught()) == 2
    if forget == "all":
        await g.forget_all()
    elif forget == "label":
        await g.forget_label("daisy")
    elif forget == "mine":
        await g.forget_user(ANN)
    else:
        await g.mark_left(dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
        assert list(await store.operator.purge_departed(dt.timedelta(days=30))) == [A]
    path = await trained_file(store, A, "m-stale")  # the retrain finishes afterwards
    with pytest.raises(ScopeForgotten, match="discarded"):
        await g.register_model("m-stale", path, ["daisy", "rose"], {}, generation=started)
    assert await g.current_model() is None and await g.models() == []
    assert not path.exists()
    # a retrain started now registers
    fresh = await g.generation()
    path = await trained_file(store, A, "m-new")
    record = await g.register_model("m-new", path, ["rose"], {}, generation=fresh)
    assert (await g.current_model()) == record


async def test_teaching_and_other_servers_do_not_invalidate_a_retrain(store: Store):
    g = store.guild(A)
    started = await g.generation()
    assert started == await g.generation()  # reading it changes nothing
    await g.add_taught("daisy", flower_bytes("daisy", 1), "jpg", user_id=ANN, user_name="ann")
    await g.set_watched(5, True)
    await store.guild(B).add_taught("x", flower_bytes("daisy", 2), "jpg", user_id=1, user_name="u")
    await store.guild(B).forget_all()
    path = await trained_file(store, A, "m1")
    assert (await g.register_model("m1", path, ["daisy"], {}, generation=started)).model_id == "m1"


async def test_the_generation_check_is_atomic_with_a_concurrent_forget(store: Store):
    """Another process bumps the generation in a transaction that commits only after the
    registration has started: the registration waits for it and then refuses."""
    g = store.guild(A)
    started = await g.generation()
    path = await trained_file(store, A, "m-race")
    other = make_engine(store.url)
    try:
        async with other.connect() as conn:
            trans = await conn.begin()
            await conn.execute(
                text("UPDATE guilds SET generation = generation + 1 WHERE id = :g"), {"g": A}
            )
            register = asyncio.create_task(
                g.register_model("m-race", path, ["a"], {}, generation=started)
            )
            await asyncio.sleep(0.5)
            assert not register.done()  # waits for the forget's transaction
            await trans.commit()
            with pytest.raises(ScopeForgotten):
                await register
    finally:
        await other.dispose()
    assert await g.models() == [] and not path.exists()


# --- the author of an image -------------------------------------------------------------------
async def test_forget_mine_reaches_what_others_taught_asked_or_corrected_of_my_images(
    store: Store,
):
    """Bob classifies Ann's image ("Classify image") and Cat corrects it; Bob teaches
    another of Ann's images. Ann's /forget mine removes all of it; Bob's own stays."""
    g = store.guild(A)
    anns = png_bytes((40, 40), "red")
    answer_id = await g.record_answer(
        channel_id=50,
        user_id=BOB,
        model_id="m",
        label="daisy",
        confidence=0.8,
        data=anns,
        extension="png",
        author_id=ANN,
    )
    answer = await g.answer(answer_id)
    assert answer is not None and answer.author_id == ANN and answer.user_id == BOB
    assert await g.enqueue_review(answer, "rose", user_id=CAT, user_name="cat") == (True, 1)
    item, _ = await g.review_queue()
    assert item is not None and (item.author_id, item.user_id, item.channel_id) == (ANN, CAT, 50)
    await g.add_taught(
        "tulip", flower_bytes("tulip", 3), "jpg", user_id=BOB, user_name="bob", author_id=ANN
    )
    await g.add_taught("tulip", flower_bytes("tulip", 4), "jpg", user_id=BOB, user_name="bob")
    [taught_of_ann] = [r for r in await g.taught() if r.author_id == ANN]
    out = await g.forget_user(ANN)
    assert (out.images, out.reviews) == (1, 1)
    assert await g.answer(answer_id) is None
    assert await g.review_queue() == (None, 0)
    assert [(r.user_id, r.author_id) for r in await g.taught()] == [(BOB, None)]
    assert not taught_of_ann.path.exists() and not item.image.exists()


# --- the review queue: per-member limits, one per answer, reject all, channels ---------------
async def answer_in(store: Store, channel: int, colour: str, author: int = ANN) -> int:
    return await store.guild(A).record_answer(
        channel_id=channel,
        user_id=author,
        model_id="m",
        label="daisy",
        confidence=0.7,
        data=png_bytes((24, 24), colour),
        extension="png",
        author_id=author,
    )


async def test_one_member_cannot_flood_the_review_queue(store: Store):
    g = store.guild(A)
    answers = []
    for colour in ("red", "green", "blue", "white", "black"):
        record = await g.answer(await answer_in(store, 60, colour))
        assert record is not None
        answers.append(record)
    # one answer, many made-up labels: the second is refused
    await g.enqueue_review(answers[0], "made-up-1", user_id=BOB, user_name="bob")
    with pytest.raises(ReviewLimit, match="already waiting for review"):
        await g.enqueue_review(answers[0], "made-up-2", user_id=BOB, user_name="bob")
    await g.enqueue_review(answers[1], "made-up-3", user_id=BOB, user_name="bob")
    await g.enqueue_review(answers[2], "made-up-4", user_id=BOB, user_name="bob")
    with pytest.raises(ReviewLimit, match=r"3 corrections waiting.*limit is 3 per member"):
        await g.enqueue_review(answers[3], "made-up-5", user_id=BOB, user_name="bob")
    assert isinstance(ReviewLimit("x"), QuotaExceeded)
    # everyone else still gets in
    created, waiting = await g.enqueue_review(answers[3], "rose", user_id=CAT, user_name="cat")
    assert created and waiting == 4
    # an admin rejects every waiting item of Bob at once
    assert await g.reject_reviews_of(BOB) == 3
    item, waiting = await g.review_queue()
    assert waiting == 1 and item is not None and item.user_id == CAT
    assert await store.guild(B).reject_reviews_of(CAT) == 0  # another server's: nothing
    assert (await g.review_queue())[1] == 1
    # Bob may send corrections again
    assert (await g.enqueue_review(answers[4], "rose", user_id=BOB, user_name="bob"))[0]


async def test_review_items_remember_their_channel_for_reviewers(store: Store):
    g = store.guild(A)
    seen = await g.answer(await answer_in(store, 70, "red"))
    hidden = await g.answer(await answer_in(store, 71, "green"))
    assert seen is not None and hidden is not None
    await g.enqueue_review(hidden, "rose", user_id=BOB, user_name="bob")
    await g.enqueue_review(seen, "tulip", user_id=CAT, user_name="cat")
    item, waiting = await g.review_queue()  # an admin: every item
    assert waiting == 2 and item is not None and item.channel_id == 71
    item, waiting = await g.review_queue(channels={70})  # a trainer who sees channel 70 only
    assert waiting == 1 and item is not None and item.channel_id == 70
    assert await g.review_queue(channels=set()) == (None, 0)


async def test_ids_no_row_can_have_find_nothing_instead_of_raising(store: Store):
    """Forged custom ids (issue 19, finding 7): past 2^63, past PostgreSQL's 32-bit ids,
    zero, negative."""
    g = store.guild(A)
    real = await answer_in(store, 80, "red")
    for forged in (2**64 + 5, 2**63, 2**31, 0, -3):
        assert await g.answer(forged) is None
        assert await g.vote(forged, BOB, right=True) is None
        assert await g.review_item(forged) is None
        assert await g.drop_review_item(forged) is False
    assert await g.answer(real) is not None


# --- the upgrade from 0003 ----------------------------------------------------------------------
def _upgrade_to(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


@pytest.mark.parametrize("engine_name", ENGINES)
async def test_upgrade_from_0003_keeps_every_row_as_it_was(engine_name: str, tmp_path: Path):
    t = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    async with database_url(engine_name, tmp_path) as url:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade_to, "0003")
                await conn.execute(
                    text(
                        "INSERT INTO guilds (id, include_default, created_at) VALUES (:g, true, :t)"
                    ),
                    {"g": A, "t": t},
                )
                await conn.execute(
                    text(
                        "INSERT INTO taught_images (guild_id, sha256, label, user_id, user_name,"
                        " added_at, file_name, size_bytes) VALUES (:g, :s, 'rose', 7, 'ann', :t,"
                        " :f, 3)"
                    ),
                    {"g": A, "s": "a" * 64, "t": t, "f": "a" * 64 + ".png"},
                )
                await conn.execute(
                    text(
                        "INSERT INTO answers (guild_id, channel_id, user_id, model_id, label,"
                        " confidence, sha256, file_name, size_bytes, created_at) VALUES (:g, 5,"
                        " 8, 'm', 'rose', 0.5, :s, NULL, 3, :t)"
                    ),
                    {"g": A, "s": "b" * 64, "t": t},
                )
                await conn.execute(
                    text(
                        "INSERT INTO review_items (guild_id, answer_id, sha256, file_name,"
                        " size_bytes, model_label, model_confidence, proposed_label, user_id,"
                        " user_name, created_at) VALUES (:g, NULL, :s, :f, 3, 'rose', 0.5,"
                        " 'tulip', 9, 'cat', :t)"
                    ),
                    {"g": A, "s": "c" * 64, "f": "c" * 64 + ".png", "t": t},
                )
        finally:
            await engine.dispose()
        store = Store(url, tmp_path / "data")
        await store.open()
        try:
            g = store.guild(A)
            [taught] = await g.taught()
            assert (taught.user_id, taught.author_id, taught.missing_since) == (7, None, None)
            [answer_id] = [1]
            answer = await g.answer(answer_id)
            assert answer is not None and answer.author_id is None and answer.user_id == 8
            item, waiting = await g.review_queue()
            assert waiting == 1 and item is not None
            assert (item.author_id, item.channel_id, item.user_id) == (None, None, 9)
            started = await g.generation()
            assert started == 0  # every existing server starts at 0
            await g.forget_user(7)
            assert await g.generation() != started and await g.taught() == []
        finally:
            await store.close()
