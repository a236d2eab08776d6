"""A rule's notice in the channel when Discord gives no status: a call that never answers
(the bot's own deadline) or an answer that cannot be read. The notice says what happened,
never "Discord said: 0"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.harness import World
from tests.bot.rules_world import Pair, two_servers

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def pair(world: World, tmp_path: Path) -> AsyncIterator[Pair]:
    async with two_servers(world, tmp_path, {"DISCORD_REQUEST_TIMEOUT_S": "1"}) as p:
        yield p


@pytest.mark.parametrize("action", ["react", "log", "delete"])
@pytest.mark.parametrize(
    ("fault", "said"),
    [("hang", "Discord did not answer in time"), ("unreadable", "could not be read")],
)
async def test_a_rules_notice_never_shows_status_0(pair: Pair, action: str, fault: str, said: str):
    p, side = pair, pair.a
    chan = side.mod if action == "delete" else side.pics  # the bot may delete in mod
    if action == "delete":  # every watched channel must allow it: pics does not
        await p.run(side.admin, side.pics, "autoclassify", mode="off")
    options: dict[str, object] = {"label": "tulip", "action": action, "threshold": 0.0}
    if action == "react":
        options["emoji"] = "🌷"
    elif action == "log":
        options["log_channel"] = side.log
    rule = await p.run(side.admin, chan, "rule set", **options)
    assert rule.content.startswith("New rule"), rule.content
    method, path = {
        "react": ("PUT", "/reactions/"),
        "log": ("POST", f"/channels/{side.log.id}/messages"),
        "delete": ("DELETE", f"/channels/{chan.id}/messages/"),
    }[action]
    if fault == "hang":
        p.sim.hang_next(method, path)
    else:  # a body that claims to be JSON and is not (e.g. a proxy's error page)
        p.sim.answer_next(method, path, status=200, body="<html>oops</html>")
    msg = await p.post(chan, p.image("tulip", 0.9))
    notice = await p.sim.wait_bot_message(
        lambda m: m.reference_id == msg.id and m.content.startswith("⚠️"), timeout_s=15
    )
    assert said in notice.content, notice.content
    assert "Discord said: 0" not in notice.content and ": 0)" not in notice.content
    after = await p.post(chan, p.image("daisy", 0.9))  # the bot still serves
    assert (await p.replies_to(after)).embeds[0]["title"] == "daisy (90%)"
    await p.run(side.admin, chan, "rule remove", label="tulip")
    if action == "delete":
        await p.run(side.admin, side.pics, "autoclassify", mode="on")
