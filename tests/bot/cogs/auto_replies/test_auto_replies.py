"""Auto-replies: only in watched channels, persisted /autoclassify, and the intent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import RunningBot, World, flower_bytes, launch_scripted
from tests.discord_sim import Channel, Message, User

pytestmark = pytest.mark.asyncio(loop_scope="session")


def replies_to(bot: RunningBot, msg: Message) -> list[Message]:
    return replies_to_any(bot, [msg])


def replies_to_any(bot: RunningBot, msgs: list[Message]) -> list[Message]:
    ids = {m.id for m in msgs}
    return [
        m
        for m in bot.sim.bot_messages()
        if m.reference_id in ids and m.author.id == bot.app.user.id
    ]


async def post_image(
    bot: RunningBot,
    channel: Channel,
    name: str = "p.jpg",
    index: int = 60,
    user: User | None = None,
) -> Message:
    w = bot.world
    att = w.sim.upload(flower_bytes("daisy", index), name, content_type="image/jpeg")
    return await w.sim.post_message(channel, user or w.alice, "what is this?", [att])


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
    scope = main_bot.bot.store.guild(w.guild.id)

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="on")
    msg = await main_bot.reply(ix)
    assert msg.ephemeral and msg.content.startswith("I'll reply to images")
    assert w.other.id in await scope.watched_channels()
    posted = await post_image(main_bot, w.other, index=64)
    await wait_reply(main_bot, posted)

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="on")
    assert "already watching" in (await main_bot.reply(ix)).content

    ix = await main_bot.slash(w.admin, "autoclassify", channel=w.other, mode="off")
    assert (await main_bot.reply(ix)).content == "I stopped watching this channel."
    assert w.other.id not in await scope.watched_channels()
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


async def test_mentioning_the_bot_is_not_an_error(
    main_bot: RunningBot, caplog: pytest.LogCaptureFixture
):
    """There are no prefix commands: "@Bot what is this?" must not log CommandNotFound."""
    w = main_bot.world
    caplog.set_level(logging.ERROR)
    mention = f"<@{main_bot.app.user.id}> what is this?"
    await w.sim.post_message(w.other, w.alice, mention)
    att = w.sim.upload(flower_bytes("daisy", 68), "m.jpg", content_type="image/jpeg")
    posted = await w.sim.post_message(w.watched, w.alice, mention, [att])
    reply = await wait_reply(main_bot, posted)  # auto-replies still work
    assert "%" in reply.embeds[0]["title"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest_asyncio.fixture(loop_scope="session")
async def burst_bot(
    world: World, tmp_path: Path
) -> AsyncIterator[tuple[RunningBot, ScriptedBackend, Channel]]:
    channel = world.sim.create_channel(world.guild, "burst")
    running, backend = await launch_scripted(
        world,
        "BurstBot",
        tmp_path,
        {
            "AUTOCLASSIFY_CHANNEL_IDS": str(channel.id),
            "COOLDOWN_USES": "1",
            "COOLDOWN_WINDOW_S": "60",
        },
    )
    yield running, backend, channel
    await running.stop()


async def test_a_burst_of_images_gets_one_slow_down_warning(burst_bot):
    running, _, channel = burst_bot
    w = running.world
    user = w.new_member("bursty")
    posted = [await post_image(running, channel, index=90 + i, user=user) for i in range(4)]
    marker = await post_image(running, channel, index=95)  # alice: not on cooldown
    await wait_reply(running, marker)
    await running.sim.wait_until(lambda: len(replies_to_any(running, posted)) >= 2)
    replies = replies_to_any(running, posted)
    warnings = [m for m in replies if m.content.startswith("Slow down")]
    assert len(replies) == 2 and len(warnings) == 1, [m.text for m in replies]


async def test_image_deleted_before_the_reply_is_still_answered(
    burst_bot, caplog: pytest.LogCaptureFixture
):
    running, backend, channel = burst_bot
    w = running.world
    caplog.set_level(logging.WARNING)
    backend.gate, backend.entered = asyncio.Event(), asyncio.Event()
    try:
        posted = await post_image(running, channel, index=96, user=w.new_member("deleter"))
        await asyncio.wait_for(backend.entered.wait(), 10)
        posted.deleted = True  # the user deletes the message while it is classified
        backend.gate.set()
        answer = await running.sim.wait_bot_message(
            lambda m: m.channel_id == channel.id and m.created_mono > posted.created_mono
        )
    finally:
        backend.gate = None
    assert answer.reference_id is None and answer.embeds[0]["title"].startswith("daisy")
    assert "Traceback" not in caplog.text and "Ignoring exception" not in caplog.text


async def test_channel_deleted_before_the_reply_is_logged_not_raised(
    burst_bot, caplog: pytest.LogCaptureFixture
):
    running, backend, channel = burst_bot
    w = running.world
    caplog.set_level(logging.WARNING)
    backend.gate, backend.entered = asyncio.Event(), asyncio.Event()
    posted = await post_image(running, channel, index=97, user=w.new_member("leaver"))
    await asyncio.wait_for(backend.entered.wait(), 10)
    w.sim.channels.pop(channel.id)  # the channel is deleted: replying gives 404
    w.guild.channels.pop(channel.id)
    rejected_before = len(w.sim.rejected)
    backend.gate.set()
    await w.sim.wait_until(
        lambda: any(r[2] == 404 for r in w.sim.rejected[rejected_before:]), timeout_s=10
    )
    await w.sim.wait_until(lambda: "could not reply in channel" in caplog.text, timeout_s=10)
    assert "Ignoring exception" not in caplog.text and replies_to(running, posted) == []
