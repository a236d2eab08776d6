"""A review queue that one member cannot flood (issue 19, item 4), through the simulator
and the real bot: at most ``REVIEW_MAX_PER_MEMBER`` waiting corrections per member and one
per answer and member, each refusal said in the picker; a per-member cooldown on votes and
corrections; and an admin's "Reject all from this member" (with a confirmation) that
trainers do not get."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.cogs.feedback.test_feedback import choose, labels_of, wrong
from tests.bot.databases import ENGINES, database_url
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World
from tests.discord_sim.components import find_component

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path / "data", {"DATABASE_URL": url}):
            yield servers


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def strict(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        env = {
            "DATABASE_URL": url,
            "FEEDBACK_COOLDOWN_USES": "3",
            "FEEDBACK_COOLDOWN_WINDOW_S": "600",
        }
        async for servers in two_servers(world, tmp_path / "data", env):
            yield servers


async def queue(s: Servers, index: int, user: object, label: str) -> None:
    picker = await wrong(s, await s.classify(s.a_chan, index), user)
    await choose(s, picker, user, label, "is in this server's review queue")


async def test_a_member_has_at_most_three_waiting_and_one_per_answer(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    first = await s.classify(s.a_chan, 0)
    picker = await wrong(s, first, s.member)
    await choose(s, picker, s.member, "tulip", "review queue (1 waiting)")
    # the same answer again under another label: refused, the picker says why
    again = await wrong(s, first, s.member)
    opened = await s.press(again, s.member, "Something else...")
    await s.sim.wait_modal(opened)
    await s.sim.submit_modal(opened, {"label": "rose"})
    await s.sim.wait_until(lambda: "not queued" in again.content)
    assert again.content == (
        "Your vote (**rose**) is counted, but it was not queued: Your correction of this "
        "image (to 'tulip') is already waiting for review: one correction per image and member."
    )
    assert again.components == []
    await queue(s, 1, s.member, "tulip")
    await queue(s, 2, s.member, "tulip")
    fourth = await wrong(s, await s.classify(s.a_chan, 3), s.member)
    await choose(s, fourth, s.member, "tulip", "not queued")
    assert "You have 3 corrections waiting for review, the limit is 3 per member" in (
        fourth.content
    )
    assert (await scope.review_queue())[1] == 3
    # everyone else's corrections still go in
    await queue(s, 4, s.other, "tulip")
    assert (await scope.review_queue())[1] == 4


async def test_votes_and_corrections_have_a_per_member_cooldown(strict: Servers):
    s = strict
    answer = await s.classify(s.a_chan, 0)
    for _ in range(2):
        ok = await s.sim.wait_response(await s.press(answer, s.member, "Right"))
        assert "your vote **right** is counted" in ok.content
    picker = await wrong(s, answer, s.member)  # opening the picker is not counted
    await choose(s, picker, s.member, "tulip", "review queue (1 waiting)")  # the third
    refused = await s.sim.wait_response(await s.press(answer, s.member, "Right"))
    assert refused.ephemeral and refused.content.startswith(
        "Slow down: you have voted or corrected a lot just now. You can give feedback again in"
    )
    picker = await wrong(s, await s.classify(s.a_chan, 1), s.member)
    ix = await s.sim.choose(s.bot.app, picker, s.member, ["tulip"])
    told = await s.sim.wait_response(ix)
    assert told.content.startswith("Slow down:")
    assert (await s.bot.bot.store.guild(s.a.id).review_queue())[1] == 1
    # another member is not slowed down by it
    other = await s.sim.wait_response(await s.press(answer, s.other, "Right"))
    assert "your vote **right** is counted" in other.content


async def test_an_admin_rejects_everything_a_member_sent_at_once(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    await queue(s, 0, s.member, "tulip")
    await queue(s, 1, s.other, "tulip")
    await queue(s, 2, s.member, "tulip")
    await s.make_trainer_role()
    trainer_view = await s.run(s.trainer, s.a_chan, "review")
    assert labels_of(trainer_view) == ["Approve", "Reject", "Relabel"]  # admins only

    review = await s.run(s.admin_a, s.a_chan, "review")
    assert review.embeds[0]["title"] == "Correction 1 of 3"
    assert labels_of(review)[-1] == "Reject all from this member"
    await s.press(review, s.admin_a, "Reject all from this member")
    await s.sim.wait_until(lambda: review.content.startswith("Reject every waiting"))
    assert f"<@{s.member.id}>" in review.content
    assert labels_of(review) == ["Reject all from this member", "Cancel"]
    await s.press(review, s.admin_a, "Cancel")  # changes nothing
    await s.sim.wait_until(lambda: review.content == "Nothing was rejected.")
    assert (await scope.review_queue())[1] == 3

    await s.press(review, s.admin_a, "Reject all from this member")
    await s.sim.wait_until(lambda: review.content.startswith("Reject every waiting"))
    await s.press(review, s.admin_a, "Reject all from this member")
    await s.sim.wait_until(lambda: review.content.startswith("Rejected 2"))
    assert review.content == f"Rejected 2 waiting correction(s) from <@{s.member.id}>."
    assert review.embeds[0]["title"] == "Correction 1 of 1"  # the other member's
    item, waiting = await scope.review_queue()
    assert waiting == 1 and item is not None and item.user_id == s.other.id
    assert await scope.taught() == []

    # a trainer's modified client pressing the admin's button (the message is the admin's
    # own, so only a forged press reaches it): refused
    button = find_component(review.components, label="Reject all from this member")
    forged = await s.sim.forge_component(s.bot.app, review, s.trainer, button["custom_id"])
    ask = await s.sim.wait_response(forged)
    assert ask.ephemeral and "only for server administrators" in ask.content
    assert (await scope.review_queue())[1] == 1
