"""/labels (taught images and recall per label, in pages), /label rename and /label remove
with confirmation, through the simulator; every server sees and changes only its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.harness import TINY_LABELS, RunningBot, World, png_bytes
from tests.bot.rules_world import Pair, two_servers
from tests.discord_sim import CommandRejected, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pair(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with two_servers(world, tmp_path, getattr(request, "param", None)) as p:
        yield p


def lines(msg: Message) -> list[str]:
    return msg.embeds[0]["description"].splitlines()


async def test_labels_show_taught_images_and_recall_from_the_last_retrain(pair: Pair):
    p = pair
    for i in range(3):
        assert (await p.teach(p.a, "bluebell", i)).content.startswith("Learned **bluebell**")
    before = await p.run(p.member, p.a.pics, "labels")
    assert lines(before) == [
        "⚠️ **bluebell**: 3 taught · recall — · not in the model yet",
        "**daisy**: 0 taught · recall —",
        "**tulip**: 0 taught · recall —",
    ]
    report = await p.sim.wait_response(
        await p.ix(p.a.admin, p.a.pics, "retrain"), predicate=lambda m: bool(m.embeds)
    )
    assert report.embeds[0]["title"] == "Retraining finished"
    after = await p.run(p.member, p.a.pics, "labels")
    assert lines(after) == ["⚠️ **bluebell**: 3 taught · recall 50%"]  # the scripted CV
    [field] = after.embeds[0]["fields"]
    assert field["name"] == "Needs more examples" and "1 label(s)" in field["value"]
    assert after.embeds[0]["footer"]["text"].startswith("model ")
    in_b = await p.run(p.member, p.b.pics, "labels")
    assert lines(in_b) == ["**daisy**: 0 taught · recall —", "**tulip**: 0 taught · recall —"]


@pytest.mark.parametrize("pair", [{"GUILD_MAX_LABELS": "200"}], indirect=True)
async def test_labels_of_a_big_server_come_in_pages(pair: Pair):
    p = pair
    scope = p.bot.bot.store.guild(p.a.guild.id)
    image = png_bytes()
    for i in range(70):
        await scope.add_taught(f"label-{i:03d}-{'x' * 20}", image, "png", user_id=1, user_name="t")
    first = await p.run(p.a.admin, p.a.pics, "labels")
    assert first.embeds[0]["title"] == "72 labels"
    assert first.embeds[0]["footer"]["text"].startswith("page 1/4 · ")
    assert len(lines(first)) == 20 and lines(first)[1].startswith("⚠️ **label-000-")
    buttons = {b["label"]: b.get("disabled", False) for b in first.components[0]["components"]}
    assert buttons == {"Previous": True, "Next": False}
    # Discord shows an ephemeral message to its recipient only; a modified client could
    # still send another member's press of its custom id:
    next_id = next(
        b["custom_id"] for b in first.components[0]["components"] if b["label"] == "Next"
    )
    nosy = await p.sim.forge_component(p.bot.app, first, p.member, next_id)
    assert (await p.sim.wait_response(nosy)).content == "Run /labels yourself to turn the pages."
    turned = await p.sim.press_button(p.bot.app, first, p.a.admin, "Next")
    await p.sim.wait_until(lambda: turned.response_type == 7)
    assert first.embeds[0]["footer"]["text"].startswith("page 2/4 · ")
    assert lines(first)[0].startswith("⚠️ **label-019-")
    for _ in range(2):
        ix = await p.sim.press_button(p.bot.app, first, p.a.admin, "Next")
        await p.sim.wait_until(lambda ix=ix: ix.response_type == 7)
    assert first.embeds[0]["footer"]["text"].startswith("page 4/4 · ")
    assert lines(first)[-1] == "**tulip**: 0 taught · recall —"
    buttons = {b["label"]: b.get("disabled", False) for b in first.components[0]["components"]}
    assert buttons == {"Previous": False, "Next": True}


async def test_rename_moves_the_servers_images_and_rule_only(pair: Pair):
    p = pair
    for i in range(2):
        await p.teach(p.a, "bluebell", i)
    await p.teach(p.b, "bluebell", 0)
    await p.teach(p.a, "rose", 5)
    await p.run(p.a.admin, p.a.pics, "rule set", label="bluebell", action="nothing", threshold=1.0)
    done = await p.run(p.a.admin, p.a.pics, "label rename", old="BlueBell", new="harebell")
    assert done.content == (
        "Renamed **bluebell** to **harebell** (2 taught image(s), and its rule if it had one). "
        "The current model keeps answering with the old labels until the next /retrain."
    )
    scope_a = p.bot.bot.store.guild(p.a.guild.id)
    assert await scope_a.label_counts() == {"harebell": 2, "rose": 1}
    assert [r.label for r in await scope_a.rules()] == ["harebell"]
    assert all(r.path.is_file() for r in await scope_a.taught())
    assert await p.bot.bot.store.guild(p.b.guild.id).label_counts() == {"bluebell": 1}
    refusals = {
        ("ghost", "x"): "This server has no taught images labelled **ghost**",
        ("harebell", "daisy"): "**daisy** is already a label of this server",
        ("harebell", "rose"): "**rose** is already a label of this server",
        ("harebell", "Hare Bell!"): "is not a valid label",
        ("harebell", "unknown"): "'unknown' is reserved",
        ("harebell", "HAREBELL"): "**harebell** already has that name.",
        ("../etc", "x"): "is not a valid label",
    }
    for (old, new), expected in refusals.items():
        msg = await p.run(p.a.admin, p.a.pics, "label rename", old=old, new=new)
        assert expected in msg.content, (old, new, msg.content)
    with pytest.raises(CommandRejected):
        await p.ix(p.a.admin, p.a.pics, "label rename", old="harebell", new="h" * 33)
    with pytest.raises(CommandRejected):  # hidden from plain members
        await p.ix(p.member, p.a.pics, "label rename", old="harebell", new="x")
    assert await scope_a.label_counts() == {"harebell": 2, "rose": 1}


async def test_remove_asks_first_and_takes_images_files_and_rule(pair: Pair):
    p = pair
    for i in range(2):
        await p.teach(p.a, "bluebell", i)
    await p.teach(p.b, "bluebell", 0)
    await p.run(p.a.admin, p.a.pics, "rule set", label="bluebell", action="nothing", threshold=1.0)
    scope = p.bot.bot.store.guild(p.a.guild.id)
    files = [r.path for r in await scope.taught()]
    unknown = await p.run(p.a.admin, p.a.pics, "label remove", label="ghost")
    assert unknown.content.startswith("This server has no taught images labelled **ghost**")
    ask = await p.run(p.a.admin, p.a.pics, "label remove", label="bluebell")
    assert ask.content.startswith("This deletes the 2 taught image(s) of **bluebell**")
    remove_id = next(
        b["custom_id"] for b in ask.components[0]["components"] if b["label"] == "Remove"
    )  # ephemeral: only a modified client lets another member press it
    nosy = await p.sim.forge_component(p.bot.app, ask, p.member, remove_id)
    assert "Only the administrator who asked" in (await p.sim.wait_response(nosy)).content
    cancel = await p.sim.press_button(p.bot.app, ask, p.a.admin, "Cancel")
    await p.sim.wait_until(lambda: cancel.response_type == 7)
    assert ask.content == "Nothing was removed." and await scope.label_counts() == {"bluebell": 2}
    ask = await p.run(p.a.admin, p.a.pics, "label remove", label="bluebell")
    sure = await p.sim.press_button(p.bot.app, ask, p.a.admin, "Remove")
    await p.sim.wait_until(lambda: sure.response_type == 7)
    assert ask.content == (
        "Removed **bluebell**: 2 taught image(s) and its rule. "
        "The current model keeps answering with the old labels until the next /retrain."
    )
    assert await scope.label_counts() == {} and await scope.rules() == []
    assert not any(f.exists() for f in files)
    assert await p.bot.bot.store.guild(p.b.guild.id).label_counts() == {"bluebell": 1}


async def test_labels_lists_the_model_labels(main_bot: RunningBot):
    w = main_bot.world
    ix = await main_bot.slash(w.alice, "labels")
    msg = await main_bot.reply(ix)
    assert msg.ephemeral
    for label in TINY_LABELS:
        assert label in msg.embeds[0]["description"]
