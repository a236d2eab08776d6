"""A progressive-JPEG scan bomb sent to the real bot (real local backend, simulated Discord):
the sender gets a clear message at once, the other images of the same message and other
users' requests are answered, and the bot stays up."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.bot.harness import RunningBot, flower_bytes
from tests.scan_bomb import scan_bomb, scan_count

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOO_COMPLEX = "That image is too complex to decode (it has more than 100 scans)."


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = scan_bomb(1000)  # under the main bot's 1 MB cap
    assert len(data) < 1024 * 1024 and scan_count(data) == 1010
    return data


async def test_a_scan_bomb_gets_a_clear_error_and_others_are_answered(
    main_bot: RunningBot, bomb: bytes
):
    w = main_bot.world
    bob = w.new_member("bomber")
    bomb_att = w.sim.upload(bomb, "innocent.jpg", content_type="image/jpeg")
    good_att = w.sim.upload(flower_bytes("tulip", 40), "tulip.jpg", content_type="image/jpeg")
    started = time.monotonic()
    bomb_ix, good_ix = await asyncio.gather(
        main_bot.slash(bob, "classify", image=bomb_att),
        main_bot.slash(w.alice, "classify", image=good_att),
    )
    bomb_msg, good_msg = await asyncio.gather(main_bot.reply(bomb_ix), main_bot.reply(good_ix))
    elapsed = time.monotonic() - started
    assert bomb_msg.ephemeral and bomb_msg.content == TOO_COMPLEX
    assert good_msg.embeds and "%" in good_msg.embeds[0]["title"], good_msg.text
    assert elapsed < 20  # loose: shared machine; unbounded, the bomb alone takes seconds
    assert not main_bot.task.done()  # the bot is still running


async def test_a_bomb_next_to_good_images_in_a_watched_channel(main_bot: RunningBot, bomb: bytes):
    w = main_bot.world
    atts = [
        w.sim.upload(flower_bytes("daisy", 41), "daisy.jpg", content_type="image/jpeg"),
        w.sim.upload(bomb, "bomb.jpg", content_type="image/jpeg"),
        w.sim.upload(flower_bytes("sunflower", 41), "sun.jpg", content_type="image/jpeg"),
    ]
    msg = await w.sim.post_message(w.watched, w.alice, "", atts)
    reply = await w.sim.wait_bot_message(
        lambda m: m.reference_id == msg.id and m.author.id == main_bot.app.user.id, timeout_s=30
    )
    assert [e["author"]["name"] for e in reply.embeds] == ["daisy.jpg", "bomb.jpg", "sun.jpg"]
    assert "%" in reply.embeds[0]["title"] and "%" in reply.embeds[2]["title"]
    assert reply.embeds[1]["description"] == TOO_COMPLEX
    # and the bot still classifies afterwards
    att = w.sim.upload(flower_bytes("daisy", 42), "after.jpg", content_type="image/jpeg")
    after = await main_bot.reply(await main_bot.slash(w.alice, "classify", image=att))
    assert after.embeds and "%" in after.embeds[0]["title"], after.text
