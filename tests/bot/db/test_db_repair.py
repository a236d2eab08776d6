"""The start-up check between the database and the data folder (issue 19), on SQLite and
PostgreSQL: no start deletes anything; a large mismatch refuses with one message; the
database and the folder carry one identity; ``apply_repair`` is the only deletion."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot.db import DataMismatch, Store
from bot.db import removals as removals_module
from bot.db.identity import IDENTITY_FILE, IDENTITY_KEY, read_identities
from bot.db.repair import SET_ASIDE, SET_ASIDE_STAMP, apply_repair, check_at_start, survey
from bot.db.schema import MetaRow, PendingRemovalRow, RetrainRow
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import flower_bytes, png_bytes

A, B = 111_111_111_111, 222_222_222_222


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def store(engine_name: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(engine_name, tmp_path) as url:
        s = Store(url, tmp_path / "data")
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def teach(store: Store, gid: int, n: int, label: str = "daisy", first: int = 0) -> None:
    for i in range(first, first + n):
        data = flower_bytes("daisy", i % 8) + i.to_bytes(4, "big")  # n different files
        await store.guild(gid).add_taught(label, data, "jpg", user_id=7, user_name="ann")


async def register(store: Store, gid: int, name: str) -> Path:
    g = store.guild(gid)
    g.models_dir.mkdir(parents=True, exist_ok=True)
    path = g.models_dir / f"{name}.model"
    path.write_bytes(b"model " + name.encode())
    await g.register_model(name, path, ["daisy"], {})
    return path


def all_files(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def reopen(store: Store, data_dir: Path | None = None) -> Store:
    again = Store(store.url, data_dir or store.data_dir)
    await again.open()
    return again


# --- no start deletes anything ------------------------------------------------------------------
async def test_a_start_keeps_rows_whose_file_is_missing_and_sets_orphans_aside(store: Store):
    g = store.guild(A)
    await teach(store, A, 3)
    await register(store, A, "m1")
    current = await register(store, A, "m2")
    lost = (await g.taught())[0]
    lost_bytes = lost.path.read_bytes()
    lost.path.unlink()
    current_bytes = current.read_bytes()
    current.unlink()
    stray = g.images_dir / ("0" * 64 + ".jpg")
    stray.write_bytes(b"orphan")
    tmp = g.images_dir / ".abc.jpg.123.tmp"  # an interrupted write_atomic
    tmp.write_bytes(b"half")
    unknown = store.data_dir / "guilds" / "999" / "images" / "x.jpg"
    unknown.parent.mkdir(parents=True)
    unknown.write_bytes(b"x")
    not_ours = store.data_dir / "guilds" / "lost+found" / "keep.me"
    not_ours.parent.mkdir(parents=True)
    not_ours.write_bytes(b"left alone")

    report = await check_at_start(store, grace_s=0)

    assert len(report.marked_missing) == 2 and report.rows_removed == []
    assert sorted(report.set_aside) == sorted([stray, tmp, unknown])
    assert report.set_aside_to is not None
    assert report.set_aside_to.parent == store.data_dir / SET_ASIDE
    for path, data in ((stray, b"orphan"), (tmp, b"half"), (unknown, b"x")):
        assert not path.exists()
        assert (report.set_aside_to / path.relative_to(store.data_dir)).read_bytes() == data
    assert not_ours.read_bytes() == b"left alone"
    # the rows are kept and marked: out of training, the model not served
    assert len(await g.taught()) == 2 and len(await g.taught(include_missing=True)) == 3
    assert await g.missing_files() == {"taught images": 1, "models": 1}
    served = await g.current_model()
    assert served is not None and served.model_id == "m1"
    assert [m.model_id for m in await g.models()] == ["m2", "m1"]
    # the files come back: the next start makes the rows whole
    lost.path.write_bytes(lost_bytes)
    current.write_bytes(current_bytes)
    again = await check_at_start(store, grace_s=0)
    assert len(again.found_again) == 2 and again.marked_missing == [] and again.set_aside == []
    assert len(await g.taught()) == 3 and await g.missing_files() == {}
    served = await g.current_model()
    assert served is not None and served.model_id == "m2"


async def test_teaching_a_missing_image_again_makes_its_row_whole(store: Store):
    g = store.guild(A)
    data = flower_bytes("daisy", 5)
    await g.add_taught("daisy", data, "jpg", user_id=7, user_name="ann")
    await teach(store, A, 2, label="rose")
    [row] = [r for r in await g.taught() if r.label == "daisy"]
    row.path.unlink()
    assert len((await check_at_start(store, grace_s=0)).marked_missing) == 1
    assert [r.label for r in await g.taught()] == ["rose", "rose"]
    added, count = await g.add_taught("daisy", data, "jpg", user_id=9, user_name="bob")
    assert (added, count) == (False, 1) and row.path.read_bytes() == data
    assert await g.missing_files() == {} and len(await g.taught()) == 3


async def test_a_start_leaves_young_unnamed_files_alone(store: Store):
    """Another process sharing the database wrote a file and is about to commit its row."""
    await check_at_start(store, grace_s=0)  # the installation's identity
    g = store.guild(A)
    g.images_dir.mkdir(parents=True)
    young = g.images_dir / ("1" * 64 + ".jpg")
    young.write_bytes(b"being committed by another process")
    found = await survey(store, grace_s=600)
    assert found.young == [young] and found.orphans == []
    report = await check_at_start(store, grace_s=600)
    assert report.set_aside == [] and young.exists()


async def test_missing_feedback_images_are_marked_not_dropped(store: Store):
    g = store.guild(A)
    await teach(store, A, 1)
    answer_id = await g.record_answer(
        channel_id=1,
        user_id=7,
        model_id="m1",
        label="daisy",
        confidence=0.9,
        data=png_bytes((32, 32), "red"),
        extension="png",
    )
    record = await g.answer(answer_id)
    assert record is not None and record.image is not None
    await g.enqueue_review(record, "rose", user_id=7, user_name="m")
    data = record.image.read_bytes()
    record.image.unlink()
    report = await check_at_start(store, grace_s=0)
    assert len(report.marked_missing) == 2  # the answer's image and the review item
    assert (await g.answer(answer_id)).image is None  # type: ignore[union-attr]
    assert await g.review_queue() == (None, 0)  # not shown while its image is missing
    record.image.write_bytes(data)
    assert len((await check_at_start(store, grace_s=0)).found_again) == 2
    item, waiting = await g.review_queue()
    assert waiting == 1 and item is not None and item.image.read_bytes() == data
    assert (await g.answer(answer_id)).image == record.image  # type: ignore[union-attr]


async def test_removals_a_crash_interrupted_are_finished_not_set_aside(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    """Killed between a forget's commit and its file removals: the next start deletes what
    the forget recorded (the user asked for it), and the start does not refuse even when
    the forgotten server was the only one."""
    await teach(store, A, 3, label="daisy")
    await teach(store, A, 2, label="rose", first=10)
    await teach(store, B, 2)

    async def crashed(self: object, rows: object) -> None:  # the process died here
        return None

    monkeypatch.setattr(removals_module.Removals, "carry_out", crashed)
    images = {r.label: r.path for r in await store.guild(A).taught()}
    await store.guild(A).forget_label("daisy")
    await store.guild(B).forget_all()
    monkeypatch.undo()
    assert images["daisy"].exists() and store.guild(B).folder.exists()

    restarted = await reopen(store)
    try:
        report = await check_at_start(restarted, grace_s=0)
        assert report.set_aside == [] and report.marked_missing == []
        assert images["daisy"] in report.removals.files
        assert not images["daisy"].exists() and images["rose"].exists()
        assert not store.guild(B).folder.exists()
        async with restarted.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(PendingRemovalRow)) == 0
    finally:
        await restarted.close()


async def test_an_interrupted_retrain_is_recorded_as_failed(store: Store):
    g = store.guild(A)
    await g.start_retrain(7)  # the process dies while it runs
    report = await check_at_start(store, grace_s=0)
    assert report.retrains_interrupted == 1
    last = await g.last_retrain()
    assert last is not None and last.outcome == "failed" and "interrupted" in last.detail
    async with store.sessions() as s:
        assert (await s.scalar(select(func.count()).select_from(RetrainRow))) == 1


# --- a large mismatch refuses the start ---------------------------------------------------------
def assert_refusal(exc: pytest.ExceptionInfo[DataMismatch], store: Store, why: str) -> None:
    message = str(exc.value)
    assert message.startswith("Refusing to start")
    assert why in message
    assert str(store.data_dir.resolve()) in message
    assert "python -m bot db repair --apply" in message
    assert "hunter2" not in message


async def test_an_empty_database_beside_server_files_refuses(
    store: Store, engine_name: str, tmp_path: Path
):
    await teach(store, A, 6)
    await check_at_start(store, grace_s=0)  # a normal start: identity written
    before = all_files(store.data_dir)
    async with database_url(engine_name, tmp_path / "other") as empty_url:
        (tmp_path / "other").mkdir(exist_ok=True)
        wrong = Store(empty_url, store.data_dir)
        await wrong.open()
        try:
            with pytest.raises(DataMismatch) as exc:
                await check_at_start(wrong, grace_s=0)
            assert_refusal(exc, wrong, "the database names no file, yet the folder holds 6")
            assert wrong.url.split("@")[-1] in str(exc.value)  # names the database
            async with wrong.sessions() as s:
                assert await s.get(MetaRow, IDENTITY_KEY) is None  # nothing written
        finally:
            await wrong.close()
    assert all_files(store.data_dir) == before  # nothing moved, nothing deleted
    assert not (store.data_dir / SET_ASIDE).exists()
    report = await check_at_start(store, grace_s=0)  # the right database again
    assert report.marked_missing == [] and len(await store.guild(A).taught()) == 6


async def test_a_missing_servers_folder_refuses_and_the_data_comes_back(store: Store):
    await teach(store, A, 6)
    await register(store, A, "m1")
    await check_at_start(store, grace_s=0)
    guilds = store.data_dir / "guilds"
    guilds.rename(store.data_dir / "unmounted")
    with pytest.raises(DataMismatch) as exc:
        await check_at_start(store, grace_s=0)
    assert_refusal(exc, store, "names 7 taught images, models and review items, yet the")
    assert len(await store.guild(A).taught()) == 6  # no row deleted, none marked
    (store.data_dir / "unmounted").rename(guilds)
    report = await check_at_start(store, grace_s=0)
    assert report.marked_missing == [] and report.set_aside == []
    assert len(await store.guild(A).taught()) == 6
    assert (await store.guild(A).current_model()) is not None


async def test_more_than_a_small_share_missing_or_orphaned_refuses(store: Store):
    await teach(store, A, 30)
    await check_at_start(store, grace_s=0)
    taught = await store.guild(A).taught()
    kept = {r.path: r.path.read_bytes() for r in taught[:6]}
    for path in kept:
        path.unlink()
    with pytest.raises(DataMismatch) as exc:  # 6 > max(5, 10% of 30)
        await check_at_start(store, grace_s=0)
    assert_refusal(exc, store, "6 of the 30 files the database names are missing")
    path, data = next(iter(kept.items()))
    path.write_bytes(data)  # 5 missing: kept and marked, the start goes on
    report = await check_at_start(store, grace_s=0)
    assert len(report.marked_missing) == 5
    for path, data in kept.items():
        path.write_bytes(data)
    assert len((await check_at_start(store, grace_s=0)).found_again) == 5
    # orphans: six files no row names
    folder = store.guild(B).images_dir
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"{i:064d}.jpg").write_bytes(b"%d" % i)
    with pytest.raises(DataMismatch) as exc:
        await check_at_start(store, grace_s=0)
    assert_refusal(exc, store, "6 of the 36 image and model files in the folder are named by no")
    assert len(list(folder.iterdir())) == 6


async def test_a_database_of_another_folder_refuses(store: Store, tmp_path: Path):
    await teach(store, A, 2)
    await check_at_start(store, grace_s=0)
    other = tmp_path / "other-data"
    other_store = Store(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}", other)
    await other_store.open()
    try:
        await check_at_start(other_store, grace_s=0)  # another installation's identity
    finally:
        await other_store.close()
    shutil.copytree(store.data_dir / "guilds", other / "guilds")  # the same files, even
    wrong = await reopen(store, other)
    try:
        with pytest.raises(DataMismatch) as exc:
            await check_at_start(wrong, grace_s=0)
        assert_refusal(exc, wrong, "the database belongs to the data folder")
    finally:
        await wrong.close()
    (other / IDENTITY_FILE).write_text("garbage")
    wrong = await reopen(store, other)
    try:
        with pytest.raises(DataMismatch, match="identity file cannot be read"):
            await check_at_start(wrong, grace_s=0)
    finally:
        await wrong.close()


# --- the identity ----------------------------------------------------------------------------
async def test_an_existing_installation_gets_an_identity_at_its_first_start(store: Store):
    await teach(store, A, 2)  # written by the previous version: no identity anywhere
    assert (await read_identities(store)) == (await read_identities(store)).__class__(None, None)
    report = await check_at_start(store, grace_s=0)
    ids = await read_identities(store)
    assert ids.database == ids.folder == report.identity and report.identity is not None
    assert (await check_at_start(store, grace_s=0)).identity == report.identity  # stable


async def test_a_new_folder_beside_a_database_without_files_adopts_its_identity(
    store: Store, tmp_path: Path
):
    """A second shard's empty folder beside a shared database that names no file."""
    await store.guild(A).set_watched(5, True)
    first = (await check_at_start(store, grace_s=0)).identity
    second = await reopen(store, tmp_path / "shard-2")
    try:
        assert (await check_at_start(second, grace_s=0)).identity == first
        assert (await read_identities(second)).folder == first
    finally:
        await second.close()


# --- repair --apply: the only deletion, on request ----------------------------------------------
async def test_apply_repair_deletes_what_is_missing_and_counts_right(store: Store):
    g = store.guild(A)
    await teach(store, A, 8)
    await register(store, A, "m1")
    current = await register(store, A, "m2")
    taught = await g.taught()
    for r in taught[:7]:
        r.path.unlink()
    current.unlink()
    stray = g.images_dir / ("0" * 64 + ".jpg")
    stray.write_bytes(b"orphan")
    found = await survey(store, grace_s=0)
    assert found.problem() is not None  # the start would refuse
    assert (len(found.missing), len(found.orphans)) == (8, 1)
    report = await apply_repair(store, found)
    assert len(report.rows_removed) == 8 and report.set_aside == [stray]
    assert [r.path for r in await g.taught(include_missing=True)] == [taught[7].path]
    models = await g.models()
    assert [(m.model_id, m.is_current) for m in models] == [("m1", True)]
    assert report.identity is not None
    assert (await survey(store, grace_s=0)).problem() is None
    again = await check_at_start(store, grace_s=0)
    assert again.marked_missing == again.set_aside == again.rows_removed == []


async def test_set_aside_files_are_dated_and_never_overwritten(store: Store):
    await teach(store, A, 1)
    g = store.guild(A)
    g.images_dir.mkdir(parents=True, exist_ok=True)
    first = g.images_dir / ("2" * 64 + ".jpg")
    first.write_bytes(b"one")
    r1 = await check_at_start(store, grace_s=0)
    first.write_bytes(b"two")  # the same name again, later
    r2 = await check_at_start(store, grace_s=0)
    assert r1.set_aside_to is not None and r2.set_aside_to is not None
    assert r1.set_aside_to != r2.set_aside_to
    one = r1.set_aside_to / first.relative_to(store.data_dir)
    two = r2.set_aside_to / first.relative_to(store.data_dir)
    assert (one.read_bytes(), two.read_bytes()) == (b"one", b"two")
    stamp = dt.datetime.strptime(r2.set_aside_to.name, SET_ASIDE_STAMP)
    assert abs(stamp - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=5)
