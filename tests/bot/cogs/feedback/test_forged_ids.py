"""Ids in the custom ids of the feedback buttons, the review buttons and the label picker
are bounded and range-checked where they are parsed (issue 19, item 7): zero, 2^31 (past
any row), 2^63, 90 digits each get their kind's clear message, never the apology or a
traceback. Discord hands a component's custom id to the bot only if the message carries
it, so each id is planted on one of the bot's own messages and pressed there."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.cogs.feedback import GONE
from bot.core.errors import APOLOGY
from tests.bot.cogs.feedback.test_feedback import choose, wrong
from tests.bot.databases import ENGINES, database_url
from tests.bot.feedback_world import Servers, two_servers
from tests.bot.harness import World
from tests.discord_sim import Message

pytestmark = pytest.mark.asyncio(loop_scope="session")

HUGE = "9" * 90


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def s(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Servers]:
    async with database_url(request.param, tmp_path) as url:
        async for servers in two_servers(world, tmp_path / "data", {"DATABASE_URL": url}):
            yield servers


def plant(message: Message, component: dict[str, Any]) -> None:
    message.components = [{"type": 1, "components": [component]}]


def button(custom_id: str) -> dict[str, Any]:
    return {"type": 2, "style": 2, "label": "forged", "custom_id": custom_id}


async def test_forged_component_ids_get_a_clear_message(
    s: Servers, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    gone = GONE.format(hours=24)
    answer = await s.classify(s.a_chan)
    for custom_id in ("fb:r:0", f"fb:w:{2**31}", f"fb:r:{2**63}", f"fb:w:{HUGE}"):
        plant(answer, button(custom_id))
        ix = await s.press(answer, s.member, "forged")
        told = await s.sim.wait_response(ix, predicate=lambda m: m.ephemeral)
        assert told.content == gone, custom_id
    select = {
        "type": 3,
        "custom_id": f"lp:a{2**64}:{HUGE}",
        "options": [{"label": "tulip", "value": "tulip"}],
    }
    picker = await wrong(s, await s.classify(s.a_chan, 1), s.member)
    plant(picker, select)
    await s.sim.choose(s.bot.app, picker, s.member, ["tulip"])
    await s.sim.wait_until(lambda: picker.content == gone)

    fresh = await s.classify(s.a_chan, 2)
    await choose(s, await wrong(s, fresh, s.other), s.other, "tulip", "review queue")
    review = await s.run(s.admin_a, s.a_chan, "review")
    for custom_id, expected in (
        ("rv:a:0", "That correction was already handled."),
        (f"rv:x:{2**63}", "That correction was already handled."),
        (f"rv:l:{HUGE}", "That correction was already handled."),
        (f"rv:u:{2**31}", "That correction was already handled."),
        (f"rv:m:{2**64}", "Rejected 0 waiting correction(s) from that member."),
        ("rv:m:0", "Rejected 0 waiting correction(s) from that member."),
    ):
        plant(review, button(custom_id))
        review.content = ""  # so that the wait below is for this press's page
        await s.press(review, s.admin_a, "forged")
        await s.sim.wait_until(lambda e=expected: review.content.startswith(e))
        assert review.embeds[0]["title"] == "Correction 1 of 1", custom_id  # still there
    assert (await s.bot.bot.store.guild(s.a.id).review_queue())[1] == 1
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert failures == [], [r.getMessage() for r in failures]
    assert not any(APOLOGY in m.text for m in s.sim.messages.values())
