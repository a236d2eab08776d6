"""/review shows and decides only corrections from channels the reviewer can view (issue
19, item 5), through the simulator and the real bot: the reviewer's permissions in the
item's channel as discord.py computes them from the server's roles and the channel's
overwrites, checked again at every decision (a role taken away meanwhile, a forged form);
a channel that no longer exists is for admins only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.cogs.feedback.test_feedback import choose, wrong
from tests.bot.databases import ENGINES, database_url
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World, flower_bytes

pytestmark = pytest.mark.asyncio(loop_scope="session")

HIDDEN = "That correction comes from a channel you can't view, so you can't review it."


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path / "data", {"DATABASE_URL": url}):
            yield servers


async def test_reviewers_see_and_decide_only_what_they_can_view(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    secret = await s.classify(s.a_secret, 5, user=s.insider)  # the oldest correction
    await choose(s, await wrong(s, secret, s.insider), s.insider, "tulip", "review queue")
    public = await s.classify(s.a_chan, 6, user=s.member)
    await choose(s, await wrong(s, public, s.member), s.member, "tulip", "review queue")
    hidden_item, _ = await scope.review_queue()
    assert hidden_item is not None and hidden_item.channel_id == s.a_secret.id
    await s.make_trainer_role()

    # the trainer cannot view the secret channel: its correction is not shown
    page = await s.run(s.trainer, s.a_chan, "review")
    assert page.embeds[0]["title"] == "Correction 1 of 1"
    assert page.attachments[0].data == flower_bytes("tulip", 6)
    admin_page = await s.run(s.admin_a, s.a_chan, "review")
    assert admin_page.embeds[0]["title"] == "Correction 1 of 2"
    assert admin_page.attachments[0].data == flower_bytes("tulip", 5)

    # with the role that may view it, they see it; the role taken away before deciding:
    s.sim.give_role(s.a, s.trainer, s.insiders)
    page = await s.run(s.trainer, s.a_chan, "review")
    assert page.embeds[0]["title"] == "Correction 1 of 2"
    assert page.attachments[0].data == flower_bytes("tulip", 5)
    s.sim.give_role(s.a, s.trainer, s.insiders, on=False)
    await s.press(page, s.trainer, "Approve")
    await s.sim.wait_until(lambda: page.content.startswith(HIDDEN))
    assert page.embeds[0]["title"] == "Correction 1 of 1"  # the next one they may see
    assert await scope.taught() == []

    # a forged relabel form naming the hidden item: refused, nothing taught
    await s.press(page, s.trainer, "Relabel")
    await s.sim.wait_until(lambda: page.content.startswith("Relabel"))
    opened = await s.press(page, s.trainer, "Something else...")
    await s.sim.wait_modal(opened)
    await s.sim.submit_modal(opened, {"label": "rose"}, custom_id=f"ml:r{hidden_item.item_id}")
    await s.sim.wait_until(lambda: page.content.startswith(HIDDEN))
    assert await scope.taught() == []
    assert (await scope.review_item(hidden_item.item_id)) is not None

    # the channel is deleted: its corrections are for admins only
    s.sim.give_role(s.a, s.trainer, s.insiders)
    await s.sim.delete_channel(s.a_secret)
    await s.sim.wait_until(lambda: s.bot.bot.get_channel(s.a_secret.id) is None)
    page = await s.run(s.trainer, s.a_chan, "review")
    assert page.embeds[0]["title"] == "Correction 1 of 1"
    assert page.attachments[0].data == flower_bytes("tulip", 6)
    admin_page = await s.run(s.admin_a, s.a_chan, "review")
    assert admin_page.embeds[0]["title"] == "Correction 1 of 2"
    await s.press(admin_page, s.admin_a, "Approve")
    await s.sim.wait_until(lambda: admin_page.content.startswith("Approved"))
    [taught] = await scope.taught()
    assert taught.path.read_bytes() == flower_bytes("tulip", 5)


async def test_a_member_cannot_correct_an_answer_from_a_channel_they_cannot_view(s: Servers):
    """A forged correction form naming an answer given in a hidden channel: "no longer
    takes feedback", nothing voted, queued or taught (for a trainer neither)."""
    scope = s.bot.bot.store.guild(s.a.id)
    secret = await s.classify(s.a_secret, 7, user=s.insider)
    answer_id = int(secret.components[0]["components"][0]["custom_id"].split(":")[2])
    await s.make_trainer_role()
    for user in (s.member, s.trainer):
        picker = await wrong(s, await s.classify(s.a_chan, 8), user)
        opened = await s.press(picker, user, "Something else...")
        await s.sim.wait_modal(opened)
        await s.sim.submit_modal(opened, {"label": "rose"}, custom_id=f"ml:a{answer_id}")
        await s.sim.wait_until(lambda p=picker: p.content.startswith("This answer no longer"))
    assert (await scope.review_queue())[1] == 0 and await scope.taught() == []
    told = await s.sim.wait_response(await s.press(secret, s.insider, "Right"))
    assert "1 right and 0 wrong" in told.content  # no vote of theirs was counted
