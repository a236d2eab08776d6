"""/classify and the "Classify image" context menu against the real bot + backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from golem_backend import LabelScore, Prediction
from tests.bot.harness import TINY_LABELS, RunningBot, World, flower_bytes, launch_scripted
from tests.bot.images import (
    TEXT_AS_PNG,
    gif_of,
    png_16bit_rgba,
    png_bomb,
    truncated_jpeg,
)
from tests.discord_sim import OTHER_HOST, Interaction, Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


def assert_prediction(msg: Message, *, label: str | None = None) -> dict:
    assert not msg.ephemeral and len(msg.embeds) == 1, msg.text
    embed = msg.embeds[0]
    title = embed["title"]
    assert "%" in title
    if label is not None:
        assert title.startswith(label) or f"closest is {label}" in title, title
    assert any(title.startswith(t) or f"closest is {t}" in title for t in TINY_LABELS), title
    assert embed["footer"]["text"].startswith("model ") and len(embed["footer"]["text"]) > 8
    assert "█" in embed["fields"][0]["value"] or "░" in embed["fields"][0]["value"]
    return embed


async def error_reply(bot: RunningBot, ix: Interaction) -> Message:
    """The error message of ``ix``: ephemeral, and no public message is left behind."""
    msg = await bot.reply(ix)
    assert msg.ephemeral, f"error not ephemeral: {msg.text}"
    assert all(m.ephemeral for m in ix.messages), [m.text for m in ix.messages]
    return msg


async def test_classify_answers_with_label_bars_model_and_thumbnail(main_bot: RunningBot):
    w = main_bot.world
    att = w.sim.upload(flower_bytes("sunflower", 20), "sun.jpg", content_type="image/jpeg")
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await main_bot.reply(ix)
    assert ix.response_type == 4, "a quick answer is the response itself (no thinking)"
    embed = assert_prediction(msg, label="sunflower")
    assert embed["thumbnail"]["url"] == att.url
    assert embed["author"]["name"] == "sun.jpg"
    assert len(embed["fields"][0]["value"].splitlines()) == 3  # TOP_K default 3


async def test_classify_top_k_option(main_bot: RunningBot):
    w = main_bot.world
    att = w.sim.upload(flower_bytes("daisy", 30), "d.jpg")
    ix = await main_bot.slash(w.alice, "classify", image=att, top_k=2)
    embed = assert_prediction(await main_bot.reply(ix))
    assert len(embed["fields"][0]["value"].splitlines()) == 2


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("empty.png", b"", "That file is empty."),
        ("notes.png", TEXT_AS_PNG, "That file is not an image"),
        ("half.jpg", "truncated", "That image is damaged or incomplete."),
        ("bomb.png", "bomb", "That image is too large"),
    ],
)
async def test_classify_rejects_bad_files(main_bot: RunningBot, name, data, expected):
    w = main_bot.world
    if isinstance(data, str):
        data = {"truncated": truncated_jpeg, "bomb": png_bomb}[data]()
    att = w.sim.upload(data, name, content_type="image/png")
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await error_reply(main_bot, ix)
    assert msg.content.startswith(expected), msg.content


async def test_classify_file_over_the_size_cap_is_refused_before_download(main_bot: RunningBot):
    w = main_bot.world
    big = b"\xff\xd8\xff\xe0" + b"\x00" * (1536 * 1024)
    att = w.sim.upload(big, "huge.jpg", content_type="image/jpeg")
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await error_reply(main_bot, ix)
    assert msg.content == "That file is too large (the limit is 1 MB)."
    assert ix.response_type == 4  # answered at once, nothing downloaded
    assert not any(str(att.id) in path for _, path in w.sim.cdn_requests)


async def test_classify_size_cap_is_enforced_while_streaming(main_bot: RunningBot):
    """The attachment claims 2 KB but streams 3 MB without a Content-Length."""
    w = main_bot.world
    big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 1024 * 1024)
    att = w.sim.upload(big, "liar.png", declared_size=2048, chunked=True)
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await error_reply(main_bot, ix)
    assert msg.content == "That file is too large (the limit is 1 MB)."


async def test_classify_refuses_urls_off_discord_cdn(main_bot: RunningBot):
    w = main_bot.world
    att = w.sim.upload(flower_bytes("daisy"), "elsewhere.jpg", host=OTHER_HOST)
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await error_reply(main_bot, ix)
    assert "only download attachments from Discord" in msg.content
    assert not any(host.startswith(OTHER_HOST) for host, _ in w.sim.cdn_requests)


async def test_classify_does_not_follow_redirects_to_other_hosts(main_bot: RunningBot):
    w = main_bot.world
    att = w.sim.upload(flower_bytes("daisy"), "moved.jpg", redirect_to_host=OTHER_HOST)
    ix = await main_bot.slash(w.alice, "classify", image=att)
    msg = await error_reply(main_bot, ix)
    assert "only download attachments from Discord" in msg.content
    assert any(path == f"/redirect/{att.id}" for _, path in w.sim.cdn_requests)
    assert not any(host.startswith(OTHER_HOST) for host, _ in w.sim.cdn_requests)


async def test_classify_gif_and_16bit_png_with_alpha(main_bot: RunningBot):
    w = main_bot.world
    for name, data in (("flower.gif", gif_of("daisy")), ("deep.png", png_16bit_rgba())):
        att = w.sim.upload(data, name)
        ix = await main_bot.slash(w.alice, "classify", image=att)
        assert_prediction(await main_bot.reply(ix))


async def test_classify_survives_a_rate_limited_response(main_bot: RunningBot):
    """A 429 with a Via header is waited out and retried by discord.py."""
    w = main_bot.world
    before = len(w.sim.rate_limited)
    w.sim.rate_limit_next("POST", "/callback", retry_after=0.3)
    att = w.sim.upload(flower_bytes("tulip", 25), "t.jpg")
    ix = await main_bot.slash(w.alice, "classify", image=att)
    assert_prediction(await main_bot.reply(ix))
    assert len(w.sim.rate_limited) == before + 1


async def test_menu_answers_several_images_together(main_bot: RunningBot):
    w = main_bot.world
    atts = [
        w.sim.upload(flower_bytes("daisy", 40), "a.jpg", content_type="image/jpeg"),
        w.sim.upload(TEXT_AS_PNG, "b.png", content_type="image/png"),
        w.sim.upload(flower_bytes("tulip", 40), "c.jpg", content_type="image/jpeg"),
        w.sim.upload(b"just text", "readme.txt", content_type="text/plain"),
    ]
    target = await w.sim.post_message(w.general, w.alice, "look", atts)
    ix = await main_bot.menu(w.carol, target)
    msg = await main_bot.reply(ix)
    assert not msg.ephemeral
    assert [e["author"]["name"] for e in msg.embeds] == ["a.jpg", "b.png", "c.jpg"]
    assert "%" in msg.embeds[0]["title"] and "%" in msg.embeds[2]["title"]
    assert "not an image" in msg.embeds[1]["description"]


async def test_menu_caps_the_number_of_images(main_bot: RunningBot):
    w = main_bot.world
    atts = [w.sim.upload(flower_bytes("daisy", 50 + i), f"{i}.jpg") for i in range(6)]
    target = await w.sim.post_message(w.general, w.alice, "", atts)
    ix = await main_bot.menu(w.alice, target)
    msg = await main_bot.reply(ix)
    assert len(msg.embeds) == 4
    assert msg.content == "Only the first 4 of 6 images were classified."


async def test_menu_on_a_message_without_images(main_bot: RunningBot):
    w = main_bot.world
    txt = w.sim.upload(b"hello", "notes.txt", content_type="text/plain")
    with_text = await w.sim.post_message(w.general, w.alice, "no pictures", [txt])
    bare = await w.sim.post_message(w.general, w.alice, "nothing attached")
    for target, expected in ((with_text, "no image attachments"), (bare, "no attachments")):
        ix = await main_bot.menu(w.alice, target)
        msg = await error_reply(main_bot, ix)
        assert expected in msg.content


async def test_menu_when_every_image_is_bad(main_bot: RunningBot):
    w = main_bot.world
    atts = [w.sim.upload(b"", "e.png"), w.sim.upload(TEXT_AS_PNG, "t.png")]
    target = await w.sim.post_message(w.general, w.alice, "", atts)
    ix = await main_bot.menu(w.alice, target)
    msg = await error_reply(main_bot, ix)
    assert msg.content.startswith("None of the images could be classified")
    assert "e.png: That file is empty." in msg.content


@pytest_asyncio.fixture(loop_scope="session")
async def verbose_bot(world: World, tmp_path: Path) -> AsyncIterator[RunningBot]:
    """TOP_K=10, 10 images per message, long labels and an unsure (longer) answer."""
    running, backend = await launch_scripted(
        world,
        "VerboseBot",
        tmp_path,
        {"TOP_K": "10", "MAX_IMAGES_PER_MESSAGE": "10", "LOW_CONFIDENCE": "1.0"},
    )
    labels = [f"label_{i:02d}_" + "x_" * 12 for i in range(10)]  # 32 characters
    top = tuple(LabelScore(label, 0.1) for label in labels)
    backend.prediction = Prediction(labels[0], 0.1, top, "scripted-model-" + "0" * 20)
    yield running
    await running.stop()


async def test_ten_answers_with_ten_long_labels_fit_in_one_message(verbose_bot: RunningBot):
    w = verbose_bot.world
    atts = [
        w.sim.upload(flower_bytes("daisy", i), f"{i:02d}-" + "n" * 60 + ".jpg") for i in range(10)
    ]
    target = await w.sim.post_message(w.general, w.alice, "", atts)
    ix = await verbose_bot.menu(w.alice, target)
    msg = await verbose_bot.reply(ix)
    assert not msg.ephemeral and len(msg.embeds) == 10, msg.text
    for e in msg.embeds:
        assert e["title"].startswith("Not sure: closest is label_00_")
        assert "label\\_00\\_" in e["fields"][0]["value"]  # the best score is kept


async def test_none_classified_message_fits_in_one_message(verbose_bot: RunningBot):
    w = verbose_bot.world
    atts = [
        w.sim.upload(b"", f"{i}-" + "e" * 180 + ".png", content_type="image/png") for i in range(10)
    ]
    target = await w.sim.post_message(w.general, w.alice, "", atts)
    ix = await verbose_bot.menu(w.alice, target)
    msg = await error_reply(verbose_bot, ix)
    assert msg.content.startswith("None of the images could be classified")
    assert len(msg.content) <= 2000 and msg.content.count("That file is empty.") == 10
