"""/teach refuses what it cannot store: bad labels and files that are not images, with
the reason, and nothing is written."""

from __future__ import annotations

import pytest

from tests.bot.harness import RunningBot, flower_bytes, images_dir, taught
from tests.bot.images import TEXT_AS_PNG, truncated_jpeg
from tests.discord_sim import CommandRejected

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    "label", ["../etc", "a/b", "..", "x" * 33, "naïve", "dot.name", "-start", "unknown"]
)
async def test_teach_rejects_bad_labels(main_bot: RunningBot, label: str):
    w = main_bot.world
    att = w.sim.upload(flower_bytes("daisy"), "d.jpg")
    try:
        ix = await main_bot.slash(w.admin, "teach images", label=label, image=att)
    except CommandRejected:
        assert len(label) > 32  # the client enforces the synced max_length
        return
    msg = await main_bot.reply(ix)
    assert msg.ephemeral
    assert "not a valid label" in msg.content or "reserved" in msg.content, msg.content
    assert not images_dir(main_bot).exists() or all(
        p.parent == images_dir(main_bot) for p in images_dir(main_bot).rglob("*")
    )


async def test_teach_rejects_files_that_are_not_images(main_bot: RunningBot):
    w = main_bot.world
    for name, data, expected in (
        ("fake.png", TEXT_AS_PNG, "not an image"),
        ("cut.jpg", truncated_jpeg(), "damaged"),
    ):
        att = w.sim.upload(data, name)
        ix = await main_bot.slash(w.admin, "teach images", label="daisy", image=att)
        msg = await main_bot.reply(ix)
        assert msg.ephemeral and expected in msg.content, msg.content
    assert not [r for r in await taught(main_bot) if r.label == "daisy"]
