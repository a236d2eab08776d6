"""An answer of Discord that cannot be read, on the error-reply path: a 500 whose HTML body
claims to be JSON, JSON that does not parse, JSON of the wrong shape. The error reply is
logged as not sent, never escapes as "Task exception was never retrieved", and the bot
keeps serving."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from golem_backend import BackendUnavailable
from tests.bot.harness import World, launch_scripted, png_bytes

pytestmark = pytest.mark.asyncio(loop_scope="session")

HTML = "<html><body><h1>500 Internal Server Error</h1></body></html>"


def not_sent(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("could not send an error message to the user")
    ]


@pytest.mark.parametrize("answer", ["500 with an HTML body", "invalid JSON", "wrong shape"])
async def test_an_unreadable_answer_to_an_error_reply_is_logged_never_raised(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, answer: str
):
    sim = world.sim
    running, backend = await launch_scripted(world, f"Unreadable{len(sim.apps_by_token)}", tmp_path)
    caplog.set_level(logging.INFO)
    try:
        backend.fail_with = BackendUnavailable("The classifier is restarting.")
        if answer == "500 with an HTML body":  # a proxy's error page, labelled JSON
            sim.answer_next("POST", "/callback", status=500, body=HTML)
        elif answer == "invalid JSON":
            sim.answer_next("POST", "/callback", status=200, body='{"interaction": {"id"')
        else:  # the reply was taken; the answer is JSON discord.py cannot use
            sim.mangle_next("POST", "/callback", lambda taken: {"interaction": {}})
        image = sim.upload(png_bytes(), "x.png", content_type="image/png")
        await running.slash(world.new_member(f"unreadable-{answer}"), "classify", image=image)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not not_sent(caplog):
            assert loop.time() < deadline, "the error reply's failure was never logged"
            await asyncio.sleep(0.02)
        [line] = not_sent(caplog)
        assert ("KeyError" if answer == "wrong shape" else "could not be read") in line, line
        gc.collect()  # a task that failed unseen is reported when it is collected
        await asyncio.sleep(0)
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
        # the bot keeps serving
        backend.fail_with = None
        ix = await running.slash(world.new_member(f"after-{answer}"), "classify", image=image)
        assert "daisy" in str((await running.reply(ix)).embeds).lower()
    finally:
        sim.clear_faults()
        await running.stop()
