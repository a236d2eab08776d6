"""Per-server options of /settings through the simulator: the low-confidence threshold
(the global value stays the default) and the auto-retrain after N taught images, within
the server's retrain quota; hostile values; two servers apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import BackendUnavailable
from tests.bot.harness import World, png_bytes
from tests.bot.rules_world import Pair, two_servers
from tests.discord_sim import Channel, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pair(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with two_servers(world, tmp_path, getattr(request, "param", None)) as p:
        yield p


async def title_for(p: Pair, chan: Channel, confidence: float) -> str:
    msg = await p.post(chan, p.image("daisy", confidence))
    reply: Message = await p.replies_to(msg)
    return str(reply.embeds[0]["title"])


async def test_low_confidence_is_per_server_with_the_global_default(pair: Pair):
    p = pair
    assert p.bot.settings.low_confidence == 0.5
    shown = await p.run(p.a.admin, p.a.pics, "settings")
    assert "Answers below **50%** (the bot's default) confidence say they are not sure." in (
        shown.content
    )
    assert await title_for(p, p.a.pics, 0.6) == "daisy (60%)"
    done = await p.run(p.a.admin, p.a.pics, "settings", low_confidence="70%")
    assert "Answers below **70%** (this server's) confidence" in done.content
    assert await title_for(p, p.a.pics, 0.6999) == "Not sure: closest is daisy (70%)"
    assert await title_for(p, p.a.pics, 0.70) == "daisy (70%)"  # at the threshold: sure
    assert await title_for(p, p.a.pics, 0.71) == "daisy (71%)"
    assert await title_for(p, p.b.pics, 0.6) == "daisy (60%)"  # B keeps the default
    # /classify follows the server's threshold too
    att = p.sim.upload(p.image("daisy", 0.65), "c.png")
    answer = await p.run(p.member, p.a.pics, "classify", image=att)
    assert answer.embeds[0]["title"] == "Not sure: closest is daisy (65%)"
    back = await p.run(p.a.admin, p.a.pics, "settings", low_confidence="default")
    assert "**50%** (the bot's default)" in back.content
    assert await title_for(p, p.a.pics, 0.6) == "daisy (60%)"


async def test_hostile_settings_values_change_nothing(pair: Pair):
    p = pair
    for raw in ("abc", "101", "-5", "nan", "inf", "1e400", "70%%", "0x50", "½"):
        msg = await p.run(p.a.admin, p.a.pics, "settings", low_confidence=raw)
        assert msg.content.startswith("low_confidence is a percentage from 0 to 100"), raw
    for n in (-1, 10_001, 2**53):
        msg = await p.run(p.a.admin, p.a.pics, "settings", auto_retrain=n)
        assert msg.content.startswith("auto_retrain is a number of new taught images"), n
    # one bad value refuses the whole command: the good one is not applied either
    msg = await p.run(p.a.admin, p.a.pics, "settings", include_default=False, low_confidence="999")
    assert msg.content.startswith("low_confidence is a percentage")
    options = await p.bot.bot.store.guild(p.a.guild.id).options()
    assert options.low_confidence is None and options.auto_retrain_after == 0
    assert (await p.bot.bot.store.guild(p.a.guild.id).settings()).include_default


async def wait_trained(p: Pair, n: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(p.backend.trained) < n:
        assert loop.time() < deadline, f"{len(p.backend.trained)} retrains, expected {n}"
        await asyncio.sleep(0.02)


async def settings_once(p: Pair, text: str, timeout_s: float = 10.0) -> Message:
    """A's /settings once it shows ``text`` (the auto-retrain runs in the background)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        shown = await p.run(p.a.admin, p.a.pics, "settings")
        if text in shown.content or loop.time() > deadline:
            return shown
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("pair", [{"GUILD_MAX_RETRAINS_PER_HOUR": "1"}], indirect=True)
async def test_auto_retrain_after_n_taught_images_within_the_quota(pair: Pair):
    p = pair
    done = await p.run(p.a.admin, p.a.pics, "settings", auto_retrain=2)
    assert "Auto-retrain: after **2** new taught images (0 since the last retrain)." in (
        done.content
    )
    for i in range(3):
        await p.teach(p.b, "rose", i)  # B has no auto-retrain
    await p.teach(p.a, "bluebell", 0)
    await asyncio.sleep(0.3)
    assert p.backend.trained == []
    await p.teach(p.a, "bluebell", 1)
    await wait_trained(p, 1)
    [training_set] = p.backend.trained
    assert training_set is not None and len(training_set.examples) == 2
    assert training_set.out_dir.parent.name == str(p.a.guild.id)
    shown = await settings_once(p, "Last auto-retrain")  # registered, then noted
    assert "(0 since the last retrain)" in shown.content and ": model " in shown.content
    assert await p.bot.bot.store.guild(p.a.guild.id).current_model() is not None
    # two more: due again, but the server used its one retrain this hour
    await p.teach(p.a, "bluebell", 2)
    await p.teach(p.a, "bluebell", 3)
    shown = await settings_once(p, "not started")
    assert (
        "not started: This server has retrained 1 times in the last hour, the limit is 1 per "
        "hour." in shown.content
    ), shown.content
    assert "(2 since the last retrain)" in shown.content
    assert len(p.backend.trained) == 1
    assert await p.bot.bot.store.guild(p.b.guild.id).current_model() is None


async def test_auto_retrain_counts_images_taught_by_any_path(pair: Pair):
    """Approved corrections and 'Teach as...' record images through the store, not /teach:
    the auto-retrain listens there."""
    p = pair
    await p.run(p.b.admin, p.b.pics, "settings", auto_retrain=2)
    scope = p.bot.bot.store.guild(p.b.guild.id)
    for colour in ("red", "blue"):
        await scope.add_taught("rose", png_bytes(colour=colour), "png", user_id=5, user_name="m")
    await wait_trained(p, 1)
    [training_set] = p.backend.trained
    assert training_set is not None and {e.label for e in training_set.examples} == {"rose"}


async def test_a_failed_auto_retrain_is_tried_again_at_the_next_taught_image(pair: Pair):
    p = pair
    await p.run(p.a.admin, p.a.pics, "settings", auto_retrain=2)
    p.backend.retrain_fails_with = BackendUnavailable("The classifier is not started.")
    for i in range(2):
        taught = await p.teach(p.a, "bluebell", i)
        assert taught.content.startswith("Learned **bluebell**"), taught.content
    await wait_trained(p, 1)  # due, started, failed
    shown = await settings_once(p, "failed")
    assert "failed: The classifier is not started." in shown.content, shown.content
    assert "(2 since the last retrain)" in shown.content  # the failed one gave them back
    p.backend.retrain_fails_with = None
    await p.teach(p.a, "bluebell", 2)  # one more image, not two: due again at once
    await wait_trained(p, 2)
    shown = await settings_once(p, ": model ")
    assert "(0 since the last retrain)" in shown.content, shown.content
    assert await p.bot.bot.store.guild(p.a.guild.id).current_model() is not None
