"""Limits and failures with a strictly configured bot (real backend): cooldown, backend
busy/timeout/unavailable, low confidence, and the message-content intent off (refusals
at the door: tests/bot/core/test_door.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.harness import RunningBot, World, data_dir_with_model, flower_bytes, launch

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def strict_bot(
    world: World, tiny_model: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningBot]:
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "strict-data")
    env = {
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(tiny_dataset),
        "LOCAL_WORKERS": "1",
        "MESSAGE_CONTENT_INTENT": "false",
        "DEV_GUILD_ID": str(world.guild.id),
        "AUTOCLASSIFY_CHANNEL_IDS": str(world.watched.id),
        "COOLDOWN_USES": "2",
        "COOLDOWN_WINDOW_S": "60",
        "QUEUE_SIZE": "2",
        "MAX_IMAGES_PER_MESSAGE": "3",
        "LOW_CONFIDENCE": "1.0",
    }
    running = await launch(world, world.apps["strict"], env)
    yield running
    await running.stop()


def upload(bot: RunningBot, label: str = "daisy", index: int = 70, name: str = "x.jpg"):
    return bot.sim.upload(flower_bytes(label, index), name, content_type="image/jpeg")


async def test_low_confidence_says_not_sure(strict_bot: RunningBot):
    w = strict_bot.world
    ix = await strict_bot.slash(w.new_member("lowconf"), "classify", image=upload(strict_bot))
    msg = await strict_bot.reply(ix)
    title = msg.embeds[0]["title"]
    assert title.startswith("Not sure: closest is "), title
    assert msg.embeds[0]["description"]


async def test_without_message_content_intent(strict_bot: RunningBot, main_bot: RunningBot):
    """Discord strips attachments from MESSAGE_CREATE: no auto-reply; commands still work."""
    w = strict_bot.world
    session = w.sim.session_for(strict_bot.app)
    assert session is not None and not session.message_content
    posted = await w.sim.post_message(w.watched, w.alice, "pic", [upload(strict_bot, index=71)])
    # the main bot (intent on) answers; the strict bot, which got no attachments, does not
    await w.sim.wait_bot_message(
        lambda m: m.reference_id == posted.id and m.author.id == main_bot.app.user.id
    )
    ix = await strict_bot.menu(w.new_member("menu-user"), posted)
    msg = await strict_bot.reply(ix)  # the context menu carries the message in full
    assert not msg.ephemeral and "closest is" in msg.embeds[0]["title"]
    assert not [
        m
        for m in w.sim.bot_messages()
        if m.reference_id == posted.id and m.author.id == strict_bot.app.user.id
    ]

    ix = await strict_bot.slash(w.admin, "autoclassify", channel=w.other, mode="on")
    msg = await strict_bot.reply(ix)
    assert "message content intent is off" in msg.content


async def test_cooldown_per_user(strict_bot: RunningBot):
    w = strict_bot.world
    user, other = w.new_member("eager"), w.new_member("patient")
    for i in range(2):
        ix = await strict_bot.slash(user, "classify", image=upload(strict_bot, index=72 + i))
        assert not (await strict_bot.reply(ix)).ephemeral
    ix = await strict_bot.slash(user, "classify", image=upload(strict_bot, index=74))
    msg = await strict_bot.reply(ix)
    assert msg.ephemeral and msg.content.startswith("Slow down: you can classify again in")
    ix = await strict_bot.slash(other, "classify", image=upload(strict_bot, index=75))
    assert not (await strict_bot.reply(ix)).ephemeral  # cooldowns are per user


async def test_backend_busy_when_its_queue_is_too_small(strict_bot: RunningBot):
    """QUEUE_SIZE=2 and a message with 3 images: the real backend refuses the request."""
    w = strict_bot.world
    atts = [upload(strict_bot, index=82 + i, name=f"{i}.jpg") for i in range(3)]
    posted = await w.sim.post_message(w.general, w.alice, "", atts)
    ix = await strict_bot.menu(w.new_member("many"), posted)
    msg = await strict_bot.reply(ix)
    assert msg.ephemeral and "Too many images at once" in msg.content, msg.content


async def test_backend_timeout(strict_bot: RunningBot):
    settings = strict_bot.bot.settings
    saved = settings.request_timeout_s
    settings.request_timeout_s = 0.0005  # the real backend reads its deadline per request
    try:
        ix = await strict_bot.slash(
            strict_bot.world.new_member("slowpoke"), "classify", image=upload(strict_bot, index=85)
        )
        msg = await strict_bot.reply(ix)
    finally:
        settings.request_timeout_s = saved
    assert msg.ephemeral, msg.text
    assert msg.content == "The classifier did not answer within 0.0005 s; try again."


async def test_backend_unavailable_is_reported(strict_bot: RunningBot):
    """Runs last in this module: it stops the strict bot's real backend."""
    await strict_bot.bot.backend.stop()
    w = strict_bot.world
    att = upload(strict_bot, index=86)
    ix = await strict_bot.slash(w.new_member("late"), "classify", image=att)
    msg = await strict_bot.reply(ix)
    # nothing serves: the door refuses at once, the backend is never reached
    assert msg.ephemeral and msg.content.startswith("No classifier is running right now")
    assert all(m.ephemeral for m in ix.messages)
