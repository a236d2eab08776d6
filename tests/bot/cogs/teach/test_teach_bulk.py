"""Bulk teaching in Discord, end to end: ``/teach zip`` (a folder per label) and ``/teach
from-channel`` (a channel's history), honest and hostile: zip bombs, nested archives, path
traversal, duplicates, non-images, quotas, long reports, huge channels, channels the member
or the bot cannot read, expired attachment links; a chunk at a time through the door, and a
channel's images as posted by their authors."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.door_watch import watch_turns
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World, flower_bytes
from tests.bot.images import TEXT_AS_PNG
from tests.bot.zips import make_zip, mixed_zip, noisy_image, overlapping_zip
from tests.discord_sim import READ_MESSAGE_HISTORY, VIEW_CHANNEL, Channel, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    env = {"PROGRESS_INTERVAL_S": "0.1", **getattr(request, "param", {})}
    async for servers in two_servers(world, tmp_path / "data", env):
        yield servers


async def labels_of(s: Servers, guild_id: int) -> dict[str, int]:
    return await s.bot.bot.store.guild(guild_id).label_counts()


def final(message: Message) -> bool:
    """The report or an error, not a progress line."""
    return "…" not in message.content or "whole report is attached" in message.content


async def run(s: Servers, user, name: str, **options) -> Message:
    return await s.sim.wait_response(await s.ix(user, s.a_chan, name, **options), predicate=final)


async def teach_zip(s: Servers, data: bytes, name: str = "photos.zip") -> Message:
    att = s.sim.upload(data, name, content_type="application/zip")
    return await run(s, s.admin_a, "teach zip", archive=att)


def report_file(message: Message) -> str | None:
    found = [a for a in message.attachments if a.filename == "teach-report.txt"]
    return found[0].data.decode() if found and found[0].data is not None else None


# --- /teach zip -----------------------------------------------------------------------------
async def test_a_zip_teaches_each_folder_as_its_label_with_a_line_per_entry(s: Servers):
    msg = await teach_zip(s, mixed_zip())
    assert msg.ephemeral
    text = msg.content
    assert "Learned 3 of 8 image(s) (daisy 2, tulip 1)." in text
    assert "1 duplicate(s), 2 not image(s), 0 over quota, 2 other problem(s)." in text
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert "learned" in lines["- daisy/1.jpg (daisy)"]
    assert "the same image as daisy/1.jpg" in lines["- tulip/again.jpg (tulip)"]
    assert "not an image" in lines["- tulip/diary.jpg (tulip)"]
    assert "archive inside the archive" in lines["- tulip/inner.jpg (tulip)"]
    assert "zip bomb" in lines["- tulip/bomb.jpg (tulip)"]
    assert "unsafe name" in lines["- ../escape/1.jpg"]
    assert await labels_of(s, s.a.id) == {"daisy": 2, "tulip": 1}
    assert await labels_of(s, s.b.id) == {}  # the other server is untouched
    escaped = [p for p in s.bot.settings.data_dir.rglob("*") if "escape" in p.name]
    assert escaped == []


async def test_a_zip_bomb_of_overlapping_entries_is_refused_whole(s: Servers):
    msg = await teach_zip(s, overlapping_zip())
    assert "overlap" in msg.content and "Nothing was read" in msg.content
    assert await labels_of(s, s.a.id) == {}


@pytest.mark.parametrize("s", [{"ARCHIVE_MAX_BYTES": "1000000"}], indirect=True)
async def test_not_a_zip_and_a_zip_over_the_limit_are_refused(s: Servers):
    msg = await teach_zip(s, TEXT_AS_PNG, "notes.zip")
    assert "not a zip archive" in msg.content
    limit = s.bot.settings.archive_max_bytes
    big = s.sim.upload(b"PK\x03\x04" + b"\x00" * 64, "big.zip", declared_size=limit + 1)
    msg = await run(s, s.admin_a, "teach zip", archive=big)
    assert "the limit is" in msg.content
    assert not [r for r in s.sim.cdn_requests if "big.zip" in r[1]]  # never downloaded


async def test_a_plain_member_cannot_teach_a_zip(s: Servers):
    s.a.commands_open_to_everyone = True  # the server opened the command: the bot still checks
    att = s.sim.upload(make_zip([("daisy/1.jpg", noisy_image(1))]), "a.zip")
    msg = await run(s, s.member, "teach zip", archive=att)
    assert msg.ephemeral and "administrator" in msg.content.lower()
    assert await labels_of(s, s.a.id) == {}


@pytest.mark.parametrize("s", [{"GUILD_MAX_TAUGHT_IMAGES": "5"}], indirect=True)
async def test_a_long_report_is_attached_whole_and_the_quota_stops_the_rest(s: Servers):
    entries = [(f"label{i % 3}/{'x' * 60}{i}.jpg", noisy_image(100 + i)) for i in range(40)]
    msg = await teach_zip(s, make_zip(entries))
    assert len(msg.content) <= 2000
    assert "Learned 5 of 40 image(s)" in msg.content and "35 over quota" in msg.content
    assert "the whole report is attached" in msg.content
    full = report_file(msg)
    assert full is not None and full.count("\n- ") == 40
    assert full.count("over quota") + full.count("limit") >= 35
    assert sum((await labels_of(s, s.a.id)).values()) == 5


async def test_progress_is_shown_in_the_one_response_then_the_report(s: Servers):
    entries = [(f"daisy/{i}.jpg", noisy_image(200 + i)) for i in range(25)]
    att = s.sim.upload(make_zip(entries), "p.zip")
    ix = await s.ix(s.admin_a, s.a_chan, "teach zip", archive=att)
    msg = await s.sim.wait_response(ix, predicate=final)
    assert len(ix.messages) == 1  # edited, never a second message
    shown = [content for _, content, _, _ in msg.history]
    assert any("Teaching `p.zip`: 10 of 25 image(s) checked" in c for c in shown), shown
    assert "Learned 25 of 25 image(s) (daisy 25)" in msg.content


# --- /teach from-channel --------------------------------------------------------------------
async def post_images(s: Servers, channel: Channel, n: int, start: int = 0) -> list[Message]:
    posted = []
    for i in range(start, start + n):
        att = s.sim.upload(noisy_image(300 + i), f"p{i}.jpg", content_type="image/jpeg")
        posted.append(await s.sim.post_message(channel, s.member, f"photo {i}", [att]))
    return posted


async def from_channel(s: Servers, channel: Channel, user=None, **options) -> Message:
    return await run(s, user or s.admin_a, "teach from-channel", channel=channel, **options)


async def test_from_channel_teaches_the_newest_images_up_to_the_limit(s: Servers):
    pics = await s.sim.open_channel(s.a, "garden")
    await post_images(s, pics, 12)
    await s.sim.post_message(pics, s.member, "no picture here")
    notes = s.sim.upload(TEXT_AS_PNG, "notes.png", content_type="image/png")
    await s.sim.post_message(pics, s.member, "", [notes])  # an image by its name only
    expired = s.sim.upload(noisy_image(999), "old.jpg", expires_in_s=-60)
    await s.sim.post_message(pics, s.member, "", [expired])
    dup = s.sim.upload(noisy_image(311), "again.jpg")  # the same bytes as p11.jpg
    await s.sim.post_message(pics, s.member, "", [dup])
    msg = await from_channel(s, pics, label="Garden Flowers", limit=10)
    text = msg.content
    assert "as **garden_flowers**" in text
    assert "Learned 7 of 10 image(s) (garden_flowers 7)" in text
    assert "1 duplicate(s), 1 not image(s), 0 over quota, 1 other problem(s)" in text
    assert "old.jpg" in text and "expired" in text
    taught = await s.bot.bot.store.guild(s.a.id).taught()
    assert len(taught) == 7
    # newest first: again.jpg (learned), old.jpg, notes.png, then p11 (again.jpg's twin, a
    # duplicate) down to p5; p0..p4 are past the limit
    names = [line for line in text.splitlines() if line.startswith("- p")]
    assert [n.split(" ")[1] for n in names] == [f"p{i}.jpg" for i in range(11, 4, -1)]


@pytest.mark.parametrize("s", [{"TEACH_CHANNEL_MAX_MESSAGES": "150"}], indirect=True)
async def test_a_huge_channel_is_read_only_up_to_its_limit(s: Servers):
    big = await s.sim.open_channel(s.a, "chatter")
    await post_images(s, big, 2)  # the oldest: out of reach
    for i in range(300):
        await s.sim.post_message(big, s.member, f"chat {i}")
    await post_images(s, big, 3, start=50)
    msg = await from_channel(s, big, label="chat")
    assert "Learned 3 of 3 image(s)" in msg.content
    reads = [q for cid, q in s.sim.history_reads if cid == big.id]
    assert len(reads) == 2 and all(int(q["limit"]) <= 100 for q in reads)


async def test_a_limit_over_the_setting_is_refused(s: Servers):
    pics = await s.sim.open_channel(s.a, "many")
    most = s.bot.settings.teach_channel_max_images
    msg = await from_channel(s, pics, label="x", limit=most + 1)
    assert f"at most {most}" in msg.content
    assert not [cid for cid, _ in s.sim.history_reads if cid == pics.id]


async def test_a_channel_the_member_cannot_read_is_refused_unread(s: Servers):
    s.a.commands_open_to_everyone = True  # trainers see /teach only if the server opens it
    role = await s.sim.create_role(s.a, "trainers")
    s.sim.give_role(s.a, s.member, role)
    await s.run(s.admin_a, s.a_chan, "settings", trainer_role=role)
    secret = await s.sim.open_channel(s.a, "secret", {s.member.id: (0, VIEW_CHANNEL)})
    await post_images(s, secret, 2)
    msg = await from_channel(s, secret, user=s.member, label="secret")
    assert "You can't read the history of" in msg.content
    assert not [cid for cid, _ in s.sim.history_reads if cid == secret.id]
    assert await labels_of(s, s.a.id) == {}
    open_to_all = await s.sim.open_channel(s.a, "open")
    await post_images(s, open_to_all, 1, start=20)
    msg = await from_channel(s, open_to_all, user=s.member, label="open")  # a trainer may
    assert "Learned 1 of 1 image(s)" in msg.content


@pytest.mark.parametrize("denied", [VIEW_CHANNEL, READ_MESSAGE_HISTORY], ids=["view", "history"])
async def test_a_channel_the_bot_cannot_read_is_refused_unread(s: Servers, denied: int):
    closed = await s.sim.open_channel(s.a, "closed", {s.bot.app.user.id: (0, denied)})
    await post_images(s, closed, 2)
    msg = await from_channel(s, closed, label="closed")
    assert "I can't read the history of" in msg.content
    assert "Read Message History" in msg.content
    assert not [cid for cid, _ in s.sim.history_reads if cid == closed.id]


async def test_a_channel_of_another_server_is_refused(s: Servers):
    other = await s.sim.open_channel(s.b, "elsewhere")
    await post_images(s, other, 1)
    msg = await from_channel(s, other, label="x")
    assert "Pick a text channel of this server" in msg.content
    assert await labels_of(s, s.a.id) == {} and await labels_of(s, s.b.id) == {}


async def test_a_channel_without_images_says_so(s: Servers):
    quiet = await s.sim.open_channel(s.a, "quiet")
    await s.sim.post_message(quiet, s.member, "hello")
    att = s.sim.upload(b"%PDF-1.4 not an image", "doc.pdf", content_type="application/pdf")
    await s.sim.post_message(quiet, s.member, "", [att])
    msg = await from_channel(s, quiet, label="x")
    assert "I found no images" in msg.content


async def test_real_photos_are_taught_from_a_channel(s: Servers):
    pics = await s.sim.open_channel(s.a, "real")
    for i in range(3):
        att = s.sim.upload(flower_bytes("daisy", i), f"d{i}.jpg")
        await s.sim.post_message(pics, s.member, "", [att])
    msg = await from_channel(s, pics, label="daisy", limit=2)
    assert "Learned 2 of 2 image(s) (daisy 2)" in msg.content


# --- through the door, as posted --------------------------------------------------------------
async def test_bulk_teaching_goes_through_the_door_a_chunk_at_a_time(s: Servers):
    """/teach zip and /teach from-channel: each chunk (at most 10 images of one label) is
    one turn at the door on the command's own path for the member who asked, and one
    backend request; every turn ends."""
    admission = s.bot.bot.admission
    turns = watch_turns(admission)
    calls_before = len(s.backend.calls)
    entries = [(f"daisy/{i}.jpg", noisy_image(400 + i)) for i in range(12)]
    entries += [(f"tulip/{i}.jpg", noisy_image(450 + i)) for i in range(3)]
    msg = await teach_zip(s, make_zip(entries))
    assert "Learned 15 of 15 image(s) (daisy 12, tulip 3)" in msg.content
    pics = await s.sim.open_channel(s.a, "door")
    await post_images(s, pics, 12, start=500)
    msg = await from_channel(s, pics, label="door", limit=12)
    assert "Learned 12 of 12 image(s) (door 12)" in msg.content
    admin, a = s.admin_a.id, s.a.id
    assert [(t.path, t.member_id, t.images, t.server_id) for t in turns] == [
        ("teach_zip", admin, 10, a),
        ("teach_zip", admin, 2, a),
        ("teach_zip", admin, 3, a),
        ("teach_channel", admin, 10, a),
        ("teach_channel", admin, 2, a),
    ]
    assert s.backend.calls[calls_before:] == [10, 2, 3, 10, 2]
    assert admission.stats().released_images == 0


async def test_images_taught_from_a_channel_are_the_posters_to_forget(s: Servers):
    """A channel's images are taught as posted by their authors: the admin's own stay when
    the member who posted the others runs /forget mine."""
    pics = await s.sim.open_channel(s.a, "mixed")
    await post_images(s, pics, 3, start=600)  # by s.member
    own = s.sim.upload(noisy_image(700), "own.jpg", content_type="image/jpeg")
    await s.sim.post_message(pics, s.admin_a, "mine", [own])
    msg = await from_channel(s, pics, label="mixed")
    assert "Learned 4 of 4 image(s) (mixed 4)" in msg.content
    scope = s.bot.bot.store.guild(s.a.id)
    authors = Counter((r.user_id, r.author_id) for r in await scope.taught())
    member, admin = s.member.id, s.admin_a.id
    assert authors == {(admin, member): 3, (admin, None): 1}
    told = (await s.run(s.member, s.a_chan, "forget mine")).content
    assert told.startswith("Forgot the 3 image(s) you taught or posted on this server"), told
    assert [(r.user_id, r.author_id) for r in await scope.taught()] == [(admin, None)]
