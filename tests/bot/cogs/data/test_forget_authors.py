"""``/forget mine`` reaches what other members did with a member's images (issue 19, item
2), through the simulator and the real bot: answers, review items and taught images that
come from a member's message record that message's author, whoever classified ("Classify
image"), taught ("Teach as..."), was answered automatically, corrected or approved it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.cogs.feedback import GONE
from tests.bot.cogs.feedback.test_feedback import choose, wrong
from tests.bot.databases import ENGINES, database_url
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World, flower_bytes
from tests.discord_sim import Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path / "data", {"DATABASE_URL": url}):
            yield servers


async def post(s: Servers, index: int, name: str = "mine.jpg") -> Message:
    att = s.sim.upload(flower_bytes("tulip", index), name, content_type="image/jpeg")
    return await s.sim.post_message(s.a_chan, s.member, "", [att])


async def classify_message(s: Servers, user: object, message: Message) -> Message:
    ix = await s.sim.message_command(s.bot.app, s.a_chan, user, "Classify image", message)
    return await s.sim.wait_response(ix)


async def forget_mine(s: Servers) -> str:
    return (await s.run(s.member, s.a_chan, "forget mine")).content


async def test_classify_image_and_corrections_of_a_members_message(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    answer = await classify_message(s, s.other, await post(s, 0))
    await choose(s, await wrong(s, answer, s.other), s.other, "tulip", "review queue")
    item, _ = await scope.review_queue()
    assert item is not None and (item.user_id, item.author_id) == (s.other.id, s.member.id)
    # an admin's correction of another of the member's messages is taught at once
    taught_answer = await classify_message(s, s.admin_a, await post(s, 1))
    picker = await wrong(s, taught_answer, s.admin_a)
    await choose(s, picker, s.admin_a, "tulip", "is learned as **tulip**")
    [record] = await scope.taught()
    assert (record.user_id, record.author_id) == (s.admin_a.id, s.member.id)

    told = await forget_mine(s)
    assert told.startswith("Forgot the 1 image(s) you taught or posted on this server and 1 ")
    assert await scope.taught() == [] and (await scope.review_queue()) == (None, 0)
    assert list(scope.feedback_dir.iterdir()) == []  # the kept images of both answers
    pressed = await s.press(answer, s.other, "Right")
    notice = await s.sim.wait_response(pressed, predicate=lambda m: m.ephemeral)
    assert notice.content == GONE.format(hours=24)


async def test_teach_as_of_a_members_message(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    message = await post(s, 2)
    ix = await s.sim.message_command(s.bot.app, s.a_chan, s.admin_a, "Teach as...", message)
    picker = await s.sim.wait_response(ix)
    await s.sim.choose(s.bot.app, picker, s.admin_a, ["tulip"])
    await s.sim.wait_until(lambda: picker.content.startswith("Taught 1 of 1"))
    [record] = await scope.taught()
    assert (record.user_id, record.author_id) == (s.admin_a.id, s.member.id)
    # the admin's own message: taught by its author, nothing more to record
    own = await s.sim.post_message(
        s.a_chan,
        s.admin_a,
        "",
        [s.sim.upload(flower_bytes("daisy", 3), "own.jpg", content_type="image/jpeg")],
    )
    ix = await s.sim.message_command(s.bot.app, s.a_chan, s.admin_a, "Teach as...", own)
    picker = await s.sim.wait_response(ix)
    await s.sim.choose(s.bot.app, picker, s.admin_a, ["daisy"])
    await s.sim.wait_until(lambda: picker.content.startswith("Taught 1 of 1"))

    assert (await forget_mine(s)).startswith("Forgot the 1 image(s) you taught or posted")
    [left] = await scope.taught()
    assert (left.label, left.user_id, left.author_id) == ("daisy", s.admin_a.id, None)


async def test_auto_replies_and_approved_corrections_of_a_members_post(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    await s.run(s.admin_a, s.a_chan, "autoclassify", mode="on")
    posted = await post(s, 4, "auto.jpg")
    auto = await s.sim.wait_bot_message(lambda m: m.reference_id == posted.id)
    await choose(s, await wrong(s, auto, s.other), s.other, "tulip", "review queue")
    review = await s.run(s.admin_a, s.a_chan, "review")
    await s.press(review, s.admin_a, "Approve")
    await s.sim.wait_until(lambda: review.content.startswith("Approved"))
    [record] = await scope.taught()
    assert (record.user_id, record.author_id) == (s.other.id, s.member.id)

    assert (await forget_mine(s)).startswith("Forgot the 1 image(s) you taught or posted")
    assert await scope.taught() == [] and list(scope.feedback_dir.iterdir()) == []
