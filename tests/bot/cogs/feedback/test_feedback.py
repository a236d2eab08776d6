"""The feedback loop end to end, through the simulator and the real bot: votes,
corrections, the review queue, the trainer role, restarts, retired buttons, hostile custom
ids, DMs, and two servers that never see each other's feedback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.cogs.feedback import GONE, REPLACED
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World, flower_bytes
from tests.discord_sim import CommandRejected, Message
from tests.discord_sim.components import ComponentRejected
from tests.discord_sim.installs import BOT_DM

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def s(world: World, tmp_path: Path) -> AsyncIterator[Servers]:
    async for servers in two_servers(world, tmp_path / "data"):
        yield servers


def labels_of(message: Message) -> list[str]:
    return [c.get("label", "") for row in message.components for c in row["components"]]


def options_of(message: Message) -> list[str]:
    return [
        o["value"]
        for row in message.components
        for c in row["components"]
        if c["type"] == 3
        for o in c["options"]
    ]


async def wrong(s: Servers, answer: Message, user: object, label: str = "Wrong...") -> Message:
    """Press "Wrong..." and return the private label picker."""
    ix = await s.press(answer, user, label)  # type: ignore[arg-type]
    picker = await s.sim.wait_response(ix)
    assert picker.ephemeral and "Pick the right label" in picker.content, picker.content
    return picker


async def choose(s: Servers, picker: Message, user: object, label: str, expect: str) -> None:
    await s.sim.choose(s.bot.app, picker, user, [label])
    try:
        await s.sim.wait_until(lambda: expect in picker.content)
    except TimeoutError:
        raise AssertionError(f"{expect!r} not in {picker.content!r}") from None


async def test_right_votes_are_counted_once_per_member(s: Servers):
    answer = await s.classify(s.a_chan)
    assert labels_of(answer) == ["Right", "Wrong..."]
    first = await s.sim.wait_response(await s.press(answer, s.member, "Right"))
    assert first.ephemeral and "1 right and 0 wrong" in first.content
    again = await s.sim.wait_response(await s.press(answer, s.member, "Right"))
    assert "replaces your earlier vote" in again.content and "1 right and 0 wrong" in again.content
    picker = await wrong(s, answer, s.member)
    await choose(s, picker, s.member, "tulip", "review queue")  # replaces the right vote
    third = await s.sim.wait_response(await s.press(answer, s.other, "Right"))
    assert "1 right and 1 wrong" in third.content


async def test_a_members_correction_is_reviewed_approved_and_learned(s: Servers):
    answer = await s.classify(s.a_chan)
    picker = await wrong(s, answer, s.member)
    assert options_of(picker) == ["daisy", "tulip"]
    await choose(s, picker, s.member, "tulip", "is in this server's review queue (1 waiting)")
    assert picker.components == []
    scope = s.bot.bot.store.guild(s.a.id)
    assert await scope.taught() == []  # not taught: a plain member
    assert (await s.bot.bot.store.guild(s.b.id).review_queue()) == (None, 0)

    refused = await s.run(s.member, s.a_chan, "review")
    assert refused.ephemeral and "only for server administrators" in refused.content
    review = await s.run(s.admin_a, s.a_chan, "review")
    assert review.ephemeral and review.embeds[0]["title"] == "Correction 1 of 1"
    fields = {f["name"]: f["value"] for f in review.embeds[0]["fields"]}
    assert fields["Proposed label"] == "tulip" and fields["The model said"].startswith("daisy")
    assert str(s.member.id) in fields["Sent by"]
    [image] = review.attachments
    assert image.filename.startswith("review.") and image.data == flower_bytes("tulip", 0)
    assert labels_of(review) == ["Approve", "Reject", "Relabel", "Reject all from this member"]

    await s.press(review, s.admin_a, "Approve")
    await s.sim.wait_until(lambda: "The review queue is empty" in review.content)
    assert review.content.startswith("Approved: the image is learned as **tulip**")
    assert review.components == [] and review.embeds == []
    [taught] = await scope.taught()
    assert taught.label == "tulip" and taught.user_id == s.member.id  # who sent it
    assert taught.path.read_bytes() == flower_bytes("tulip", 0)

    ix = await s.ix(s.admin_a, s.a_chan, "retrain")
    report = await s.sim.wait_response(ix, predicate=lambda m: bool(m.embeds))
    assert report.embeds[0]["title"] == "Retraining finished"
    [training_set] = s.backend.trained
    assert training_set is not None
    assert [(e.label, e.path) for e in training_set.examples] == [("tulip", taught.path)]


async def test_reject_and_relabel(s: Servers):
    for index, label in ((0, "tulip"), (1, "daisy_white")):
        answer = await s.classify(s.a_chan, index)
        picker = await wrong(s, answer, s.member)
        if label in options_of(picker):
            await choose(s, picker, s.member, label, "review queue")
        else:
            ix = await s.press(picker, s.member, "Something else...")
            await s.sim.wait_modal(ix)
            await s.sim.submit_modal(ix, {"label": "Daisy White"})
            await s.sim.wait_until(lambda p=picker: "review queue" in p.content)
    review = await s.run(s.admin_a, s.a_chan, "review")
    assert review.embeds[0]["title"] == "Correction 1 of 2"
    await s.press(review, s.admin_a, "Reject")
    await s.sim.wait_until(lambda: review.content.startswith("Rejected **tulip**"))
    assert review.embeds[0]["title"] == "Correction 1 of 1"
    await s.press(review, s.admin_a, "Relabel")
    await s.sim.wait_until(lambda: review.content.startswith("Relabel"))
    await s.sim.choose(s.bot.app, review, s.admin_a, ["daisy"])
    await s.sim.wait_until(lambda: "The review queue is empty" in review.content)
    [taught] = await s.bot.bot.store.guild(s.a.id).taught()
    assert taught.label == "daisy"


async def test_trainer_role_given_and_taken(s: Servers):
    role = await s.sim.create_role(s.a, "trainers")
    with pytest.raises(CommandRejected, match="hidden"):  # only admins set it
        await s.run(s.member, s.a_chan, "settings", trainer_role=role)
    done = await s.run(s.admin_a, s.a_chan, "settings", trainer_role=role)
    assert f"<@&{role.id}> may teach" in done.content
    scope = s.bot.bot.store.guild(s.a.id)

    # without the role: queued, and /review names the role
    picker = await wrong(s, await s.classify(s.a_chan, 0), s.member)
    await choose(s, picker, s.member, "tulip", "review queue")
    refused = await s.run(s.member, s.a_chan, "review")
    assert f"<@&{role.id}>" in refused.content
    # with the role: taught at once, and /review works
    s.sim.give_role(s.a, s.member, role)
    picker = await wrong(s, await s.classify(s.a_chan, 1), s.member)
    await choose(s, picker, s.member, "tulip", "is learned as **tulip**")
    assert [r.label for r in await scope.taught()] == ["tulip"]
    review = await s.run(s.member, s.a_chan, "review")
    assert review.embeds[0]["title"] == "Correction 1 of 1"
    # the role taken away: queued again, and the open /review refuses
    s.sim.give_role(s.a, s.member, role, on=False)
    refusal = await s.sim.wait_response(await s.press(review, s.member, "Approve"))
    assert refusal.ephemeral and f"<@&{role.id}>" in refusal.content
    picker = await wrong(s, await s.classify(s.a_chan, 2), s.member)
    await choose(s, picker, s.member, "tulip", "review queue (2 waiting)")
    assert len(await scope.taught()) == 1
    # the role is server A's: in server B the member is a plain member
    picker = await wrong(s, await s.classify(s.b_chan, 3), s.member)
    await choose(s, picker, s.member, "tulip", "review queue (1 waiting)")
    cleared = await s.run(s.admin_a, s.a_chan, "settings", no_trainer_role=True)
    assert "no trainer role" in cleared.content


async def test_buttons_and_modals_work_after_a_restart(s: Servers):
    answer = await s.classify(s.a_chan)
    picker = await wrong(s, answer, s.member)
    opened = await s.press(picker, s.member, "Something else...")
    await s.sim.wait_modal(opened)
    await s.restart()
    await s.sim.submit_modal(opened, {"label": "rose"})
    await s.sim.wait_until(lambda: "review queue (1 waiting)" in picker.content)
    voted = await s.sim.wait_response(await s.press(answer, s.other, "Right"))
    assert "0 right and 1 wrong" not in voted.content and "1 right and 1 wrong" in voted.content
    review = await s.run(s.admin_a, s.a_chan, "review")
    await s.restart()
    await s.press(review, s.admin_a, "Approve")
    await s.sim.wait_until(lambda: "The review queue is empty" in review.content)
    [taught] = await s.bot.bot.store.guild(s.a.id).taught()
    assert taught.label == "rose"


async def test_buttons_retire_when_the_model_is_retrained(s: Servers):
    old = await s.classify(s.a_chan)
    picker = await wrong(s, old, s.member)
    for i in range(2):
        att = s.sim.upload(flower_bytes("daisy", i), f"t{i}.jpg")
        await s.run(s.admin_a, s.a_chan, "teach images", label="bluebell", image=att)
    ix = await s.ix(s.admin_a, s.a_chan, "retrain")
    await s.sim.wait_response(ix, predicate=lambda m: bool(m.embeds))
    told = await s.press(old, s.member, "Right")
    await s.sim.wait_until(lambda: old.components == [])
    notice = await s.sim.wait_response(told, predicate=lambda m: m.ephemeral)
    assert notice.ephemeral and notice.content == REPLACED
    await s.sim.choose(s.bot.app, picker, s.member, ["tulip"])  # the open picker too
    await s.sim.wait_until(lambda: picker.content == REPLACED)
    assert (await s.bot.bot.store.guild(s.a.id).review_queue()) == (None, 0)
    fresh = await s.classify(s.a_chan, 1)  # answered by the new model: open
    assert fresh.embeds[0]["title"].startswith("bluebell")
    ok = await s.sim.wait_response(await s.press(fresh, s.member, "Right"))
    assert "1 right" in ok.content


async def test_forgetting_retires_answers_and_review_items(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    answer = await s.classify(s.a_chan, user=s.member)
    picker = await wrong(s, answer, s.member)
    await choose(s, picker, s.member, "tulip", "review queue")
    assert len(list(scope.feedback_dir.iterdir())) == 1
    out = await s.run(s.member, s.a_chan, "forget mine")
    assert "1 correction(s) you sent for review" in out.content
    assert (await scope.review_queue()) == (None, 0)
    assert list(scope.feedback_dir.iterdir()) == []
    told = await s.press(answer, s.other, "Right")
    await s.sim.wait_until(lambda: answer.components == [])
    notice = await s.sim.wait_response(told, predicate=lambda m: m.ephemeral)
    assert notice.content == GONE.format(hours=24)

    answer = await s.classify(s.a_chan, 1, user=s.other)
    picker = await wrong(s, answer, s.other)
    await choose(s, picker, s.other, "tulip", "review queue")
    forgot = await s.run(s.admin_a, s.a_chan, "forget label", label="tulip")
    assert "1 waiting correction(s)" in forgot.content
    assert (await scope.review_queue()) == (None, 0)


async def test_hostile_custom_ids_and_modal_values(s: Servers):
    b_answer = await s.classify(s.b_chan)
    a_answer = await s.classify(s.a_chan)
    b_scope = s.bot.bot.store.guild(s.b.id)
    b_id = int(b_answer.components[0]["components"][0]["custom_id"].split(":")[2])
    # a button that is not on the message: dropped, nothing counted anywhere
    forged = await s.sim.forge_component(s.bot.app, a_answer, s.member, f"fb:r:{b_id}")
    assert (await b_scope.vote(b_id, s.other.id, right=True)).right == 1  # type: ignore[union-attr]
    assert forged.response_type is None
    # a modal submit naming B's answer, from server A: A's scope does not have it
    picker = await wrong(s, a_answer, s.member)
    opened = await s.press(picker, s.member, "Something else...")
    await s.sim.wait_modal(opened)
    await s.sim.submit_modal(opened, {"label": "rose"}, custom_id=f"ml:a{b_id}")
    await s.sim.wait_until(lambda: picker.content.startswith("This answer no longer"))
    assert (await b_scope.review_queue()) == (None, 0)
    # a non-existent answer
    picker = await wrong(s, a_answer, s.member)
    opened = await s.press(picker, s.member, "Something else...")
    await s.sim.wait_modal(opened)
    await s.sim.submit_modal(opened, {"label": "rose"}, custom_id="ml:a987654321")
    await s.sim.wait_until(lambda: picker.content.startswith("This answer no longer"))
    # over-long and invalid labels: the client limits the input, a forged one is refused
    picker = await wrong(s, a_answer, s.member)
    opened = await s.press(picker, s.member, "Something else...")
    modal = await s.sim.wait_modal(opened)
    assert modal["components"][0]["components"][0]["max_length"] == 32
    with pytest.raises(ComponentRejected):
        await s.sim.submit_modal(opened, {"label": "x" * 33})
    for bad in ("x" * 500, "../etc", "unknown"):
        again = await s.sim.submit_modal(opened, {"label": bad}, enforce=False)
        reply = await s.sim.wait_response(again)
        assert reply.ephemeral and (
            "not a valid label" in reply.content or "reserved" in reply.content
        )
    scope = s.bot.bot.store.guild(s.a.id)
    assert (await scope.review_queue()) == (None, 0) and await scope.taught() == []
    # a select value the bot never offered (a forged client)
    picker = await wrong(s, a_answer, s.member)
    select_id = picker.components[0]["components"][0]["custom_id"]
    sneaky = await s.sim.forge_component(
        s.bot.app, picker, s.member, select_id, component_type=3, values=["../../etc"]
    )
    assert "not a valid label" in (await s.sim.wait_response(sneaky)).content


async def test_no_feedback_buttons_outside_servers(s: Servers):
    from tests.discord_sim.installs import user_install_interaction

    att = s.sim.upload(flower_bytes("tulip"), "dm.jpg")
    ix = await user_install_interaction(
        s.sim, s.bot.app, s.member, "classify", context=BOT_DM, options={"image": att}
    )
    reply = await s.sim.wait_response(ix)
    assert reply.embeds and reply.components == []


async def test_auto_replies_carry_feedback_and_servers_stay_apart(s: Servers):
    await s.run(s.admin_a, s.a_chan, "autoclassify", mode="on")
    att = s.sim.upload(flower_bytes("tulip", 4), "p.jpg", content_type="image/jpeg")
    posted = await s.sim.post_message(s.a_chan, s.member, "", [att])
    auto = await s.sim.wait_bot_message(lambda m: m.reference_id == posted.id)
    assert labels_of(auto) == ["Right", "Wrong..."]
    # a label taught in A is not offered in B
    scope_a = s.bot.bot.store.guild(s.a.id)
    from tests.bot.harness import png_bytes

    await scope_a.add_taught("only_in_a", png_bytes((8, 8)), "png", user_id=1, user_name="x")
    picker_a = await wrong(s, auto, s.member)
    assert "only_in_a" in options_of(picker_a)
    picker_b = await wrong(s, await s.classify(s.b_chan), s.member)
    assert "only_in_a" not in options_of(picker_b)
    await choose(s, picker_a, s.member, "only_in_a", "review queue")
    empty = await s.run(s.admin_b, s.b_chan, "review")
    assert empty.content == "The review queue is empty." and not empty.embeds
