"""Auto-replies: only in watched channels, persisted /autoclassify, and the intent."""

from __future__ import annotations

import json

import pytest

from tests.bot.harness import RunningBot, flower_bytes
from tests.discord_sim import Channel, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


def replies_to(bot: RunningBot, msg: Message) -> list[Message]:
    return [
        m
        for m in bot.sim.bot_messages()
        if m.reference_id == msg.id and m.author.id == bot.app.user.id
    ]


async def post_image(
    bot: RunningBot, channel: Channel, name: str = "p.jpg", index: int = 60
) -> Message:
    w = bot.world
    att = w.sim.upload(flower_bytes("daisy", index), name, content_type="image/jpeg")
    return await w.sim.post_message(channel, w.alice, "what is this?", [att])


async def wait_reply(bot: RunningBot, msg: Message) -> Message:
    return await bot.sim.wait_bot_message(
        lambda m: m.reference_id == msg.id and m.author.id == bot.app.user.id, timeout_s=20
    )


async def test_replies_in_watched_channel_only(main_bot: RunningBot):
    w = main_bot.world
    ignored = await post_image(main_bot, w.other)
    watched = await post_image(main_bot, w.watched)
    reply = await wait_reply(main_bot, watched)
    assert len(reply.embeds) == 1 and "%" in reply.embeds[0]["title"]
    assert reply.embeds[0]["thumbnail"]["url"] == watched.attachments[0].url
    # the bot handles events in order; the earlier message got nothing
    assert replies_to(main_bot, ignored) == []


async def test_text_messages_and_other_bots_are_ignored(main_bot: RunningBot):
    w = main_bot.world
    txt = await w.sim.post_message(w.watched, w.alice, "just words")
    other_bot = next(a for k, a in w.apps.items() if k != "main").user
    att = w.sim.upload(flower_bytes("daisy", 61), "bot.jpg")
    from_bot = await w.sim.post_message(w.watched, other_bot, "", [att])
    marker = await post_image(main_bot, w.watched, index=62)
    await wait_reply(main_bot, marker)
    assert replies_to(main_bot, txt) == [] and replies_to(main_bot, from_bot) == []


async def test_several_images_in_one_message(main_bot: RunningBot):
    w = main_bot.world
    atts = [
        w.sim.upload(flower_bytes(lbl, 63), f"{lbl}.jpg", content_type="image/jpeg")
        for lbl in ("daisy", "tulip", "sunflower")
    ]
    msg = await w.sim.post_message(w.watched, w.alice, "", atts)
    reply = await wait_reply(main_bot, msg)
    assert [e["author"]["name"] for e in reply.embeds] == [
        "daisy.jpg",
        "tulip.jpg",
        "sunflower.jpg",
    ]


async def test_bad_image_in_watched_channel_gets_a_short_reply(main_bot: RunningBot):
    w = main_bot.world
    att = w.sim.upload(b"", "empty.png", content_type="image/png")
    msg = await w.sim.post_message(w.watched, w.alice, "", [att])
    reply = await wait_reply(main_bot, msg)
    assert reply.embeds[0]["description"] == "That file is empty."


async def test_autoclassify_on_off_is_persisted(main_bot: RunningBot):
    w = main_bot.world
    path = main_bot.settings.data_dir / "bot-state.json"

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="on")
    msg = await main_bot.reply(ix)
    assert msg.ephemeral and msg.content.startswith("I'll reply to images")
    assert w.other.id in json.loads(path.read_text())["watched_channels"]
    posted = await post_image(main_bot, w.other, index=64)
    await wait_reply(main_bot, posted)

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="on")
    assert "already watching" in (await main_bot.reply(ix)).content

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="off")
    assert (await main_bot.reply(ix)).content == "I stopped watching this channel."
    assert w.other.id not in json.loads(path.read_text())["watched_channels"]
    ignored = await post_image(main_bot, w.other, index=65)
    marker = await post_image(main_bot, w.watched, index=66)
    await wait_reply(main_bot, marker)
    assert replies_to(main_bot, ignored) == []


async def test_configured_channel_cannot_be_turned_off_by_command(main_bot: RunningBot):
    w = main_bot.world
    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.watched, mode="off")
    msg = await main_bot.reply(ix)
    assert msg.ephemeral and "AUTOCLASSIFY_CHANNEL_IDS" in msg.content


async def test_watching_a_channel_where_the_bot_cannot_post(main_bot: RunningBot):
    w = main_bot.world
    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.muted, mode="on")
    msg = await main_bot.reply(ix)
    assert "I don't have permission to send messages here" in msg.content
    rejected_before = len(w.sim.rejected)
    posted = await post_image(main_bot, w.muted, index=67)
    await w.sim.wait_until(
        lambda: any(
            r[2] == 403 and str(w.muted.id) in r[1] for r in w.sim.rejected[rejected_before:]
        ),
        timeout_s=20,
    )
    assert replies_to(main_bot, posted) == []
    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.muted, mode="off")
    await main_bot.reply(ix)
