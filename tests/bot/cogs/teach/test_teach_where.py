"""Teaching where the images are, end to end: "Teach as..." on a message, /teach with up
to 10 images (some broken), label autocomplete, and label pickers paged past 25."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.feedback_world import MAX_IMAGE_BYTES, Servers, two_servers
from tests.bot.harness import World, flower_bytes, png_bytes
from tests.bot.images import TEXT_AS_PNG, truncated_jpeg
from tests.discord_sim import CommandRejected, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def s(world: World, tmp_path: Path) -> AsyncIterator[Servers]:
    async for servers in two_servers(world, tmp_path / "data"):
        yield servers


def options_of(message: Message) -> list[str]:
    return [
        o["value"]
        for row in message.components
        for c in row["components"]
        if c["type"] == 3
        for o in c["options"]
    ]


async def teach_as(s: Servers, user: object, target: Message) -> Message:
    ix = await s.sim.message_command(s.bot.app, s.a_chan, user, "Teach as...", target)
    return await s.sim.wait_response(ix)


async def test_teach_as_teaches_every_image_of_a_message(s: Servers):
    sim = s.sim
    attachments = [
        sim.upload(flower_bytes("daisy", 1), "one.jpg", content_type="image/jpeg"),
        sim.upload(flower_bytes("daisy", 2), "two.jpg", content_type="image/jpeg"),
        sim.upload(TEXT_AS_PNG, "fake.png", content_type="image/png"),
        sim.upload(b"%PDF-1.4", "notes.pdf", content_type="application/pdf"),
    ]
    post = await sim.post_message(s.a_chan, s.member, "look", attachments)
    refused = await teach_as(s, s.member, post)
    assert refused.ephemeral and "only for server administrators" in refused.content

    picker = await teach_as(s, s.admin_a, post)
    assert picker.ephemeral and "Teach the 3 image(s) of this message" in picker.content
    ix = await sim.press_button(s.bot.app, picker, s.admin_a, "Something else...")
    await sim.wait_modal(ix)
    await sim.submit_modal(ix, {"label": "Ox Eye"})
    await sim.wait_until(lambda: picker.content.startswith("Taught 2 of 3 image(s) as **ox_eye**"))
    assert "`one.jpg`: learned as **ox_eye**" in picker.content
    assert "`fake.png`: That file is not an image" in picker.content
    assert "new label" in picker.content and picker.components == []
    scope = s.bot.bot.store.guild(s.a.id)
    assert sorted(r.label for r in await scope.taught()) == ["ox_eye", "ox_eye"]
    assert await s.bot.bot.store.guild(s.b.id).taught() == []

    again = await teach_as(s, s.admin_a, post)  # the same images, picked from the select
    await sim.choose(s.bot.app, again, s.admin_a, ["ox_eye"])
    await sim.wait_until(lambda: again.content.startswith("Taught 0 of 3"))
    assert "`two.jpg`: already taught as **ox_eye** (a duplicate)" in again.content

    no_images = await sim.post_message(s.a_chan, s.member, "just words")
    told = await teach_as(s, s.admin_a, no_images)
    assert told.ephemeral and "no image attachments" in told.content

    gone = await teach_as(s, s.admin_a, post)
    post.deleted = True  # deleted before the label is picked
    picked = await sim.choose(s.bot.app, gone, s.admin_a, ["ox_eye"])
    reply = await sim.wait_response(picked, predicate=lambda m: "deleted" in m.content)
    assert reply.ephemeral and reply.content.startswith("That message was deleted")


async def test_teach_takes_ten_images_and_says_what_happened_to_each(s: Servers):
    sim = s.sim
    good = [sim.upload(flower_bytes("sunflower", i), f"s{i}.jpg") for i in range(6)]
    good.append(sim.upload(flower_bytes("sunflower", 0), "dup.jpg"))  # same bytes as s0
    broken = [
        sim.upload(TEXT_AS_PNG, "text.png"),
        sim.upload(truncated_jpeg(), "cut.jpg"),
        sim.upload(png_bytes(), "huge.png", declared_size=MAX_IMAGE_BYTES + 1),
    ]
    images = good + broken
    options = {"label": "sunflower", "image": images[0]}
    options.update({f"image{i + 1}": att for i, att in enumerate(images) if i})
    msg = await s.run(s.admin_a, s.a_chan, "teach images", **options)
    assert msg.ephemeral and msg.content.startswith("Taught 6 of 10 image(s) as **sunflower**")
    lines = msg.content.split("\n")
    assert sum("learned as **sunflower**" in line for line in lines) == 6
    assert any(line.startswith("- `dup.jpg`: already taught") for line in lines)
    assert any(line.startswith("- `text.png`: That file is not an image") for line in lines)
    assert any(line.startswith("- `cut.jpg`:") and "learned" not in line for line in lines)
    assert any(line.startswith("- `huge.png`: That file is too large") for line in lines)
    assert len(await s.bot.bot.store.guild(s.a.id).taught()) == 6
    with pytest.raises(CommandRejected):  # the client refuses an 11th image option
        await s.run(
            s.admin_a, s.a_chan, "teach images", label="x", image=images[0], image11=images[1]
        )


async def test_teach_quota_stops_the_rest_with_its_message(world: World, tmp_path: Path):
    async for s in two_servers(world, tmp_path / "q"):
        await s.bot.stop()
        s.env["GUILD_MAX_TAUGHT_IMAGES"] = "2"
        await s.restart()
        images = [s.sim.upload(flower_bytes("tulip", i), f"t{i}.jpg") for i in range(4)]
        options = {"label": "tulip", "image": images[0]}
        options.update({f"image{i + 1}": att for i, att in enumerate(images) if i})
        msg = await s.run(s.admin_a, s.a_chan, "teach images", **options)
        assert msg.content.startswith("Taught 2 of 4")
        assert msg.content.count("the limit is 2") == 2


async def test_label_autocomplete_offers_the_servers_labels(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    for i, label in enumerate(("tulip_red", "rose", "red_rose")):
        await scope.add_taught(label, png_bytes((8, 8), (i, 0, 0)), "png", user_id=1, user_name="x")
    choices = await s.sim.autocomplete(
        s.bot.app, s.a_chan, s.admin_a, "teach images", {"label": "ro"}, "label"
    )
    assert [c["value"] for c in choices] == ["rose", "red_rose"]  # prefix matches first
    choices = await s.sim.autocomplete(
        s.bot.app, s.a_chan, s.admin_a, "teach images", {"label": "TU"}, "label"
    )
    assert [c["value"] for c in choices] == ["tulip", "tulip_red"]
    in_b = await s.sim.autocomplete(
        s.bot.app, s.b_chan, s.admin_b, "teach images", {"label": ""}, "label"
    )
    assert [c["value"] for c in in_b] == ["daisy", "tulip"]  # A's labels stay in A


async def test_pickers_page_past_discords_25_options(s: Servers):
    scope = s.bot.bot.store.guild(s.a.id)
    for i in range(40):
        data = png_bytes((8, 8), (i, i, 0))
        await scope.add_taught(f"label{i:02d}", data, "png", user_id=1, user_name="x")
    answer = await s.classify(s.a_chan)
    ix = await s.sim.press_button(s.bot.app, answer, s.member, "Wrong...")
    picker = await s.sim.wait_response(ix)
    first = options_of(picker)
    assert len(first) == 25 and "(page 1 of 2)" in picker.content
    await s.sim.press_button(s.bot.app, picker, s.member, "Next")
    await s.sim.wait_until(lambda: "(page 2 of 2)" in picker.content)
    second = options_of(picker)
    assert len(second) == 17 and not set(first) & set(second)  # 42 labels in all
    assert [b.get("disabled") for b in picker.components[1]["components"][:2]] == [False, True]
    await s.sim.choose(s.bot.app, picker, s.member, ["tulip"])
    await s.sim.wait_until(lambda: "review queue" in picker.content)
