"""Discord faults: a command sync that fails at start, and REST calls that never answer.

The real bot (ScriptedBackend, so no model is needed) against the simulator, which refuses
the sync (400/50035 as Spacebar does, or a 429 Cloudflare ban as Discord does after the
daily command-create limit) or leaves a call unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import discord
import pytest

from bot.core.request_deadline import DiscordRequestTimeout, bounded
from tests.bot.harness import World, launch_scripted, png_bytes
from tests.discord_sim import EPHEMERAL

FAST_RETRY = {"COMMAND_SYNC_RETRY_S": "0.2", "COMMAND_SYNC_RETRY_MAX_S": "0.4"}


async def test_bounded_raises_a_typed_http_error():
    async def never() -> None:
        await asyncio.Event().wait()

    with pytest.raises(DiscordRequestTimeout) as caught:
        await bounded(never, "POST", "/interactions/{webhook_id}/{webhook_token}/callback", 0.05)
    assert isinstance(caught.value, discord.HTTPException)  # handlers of refusals cope
    assert "did not answer POST /interactions" in str(caught.value)
    assert "0.05 s" in caught.value.text

    async def own_timeout() -> None:
        raise TimeoutError("aiohttp's own")

    with pytest.raises(TimeoutError, match="aiohttp's own"):  # not mistaken for ours
        await bounded(own_timeout, "GET", "/x", 5)


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("refusal", ["400", "429-ban"])
async def test_failed_command_sync_is_retried_while_the_bot_serves(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, refusal: str
):
    sim = world.sim
    first, _ = await launch_scripted(world, f"SyncRetry{refusal}", tmp_path)
    app = first.app
    await first.stop()
    path = f"/applications/{app.id}/guilds/{world.guild.id}/commands"
    if refusal == "400":
        sim.fail_next("PUT", path, status=400, code=50035, times=10**6)
    else:
        sim.rate_limit_next("PUT", path, retry_after=0.1, times=10**6, via=False)
    syncs_before = app.command_syncs
    caplog.set_level(logging.INFO, logger="bot")
    running, _ = await launch_scripted(world, "", tmp_path, FAST_RETRY, app=app, wait_synced=False)
    try:
        sync = running.bot.command_sync
        # still failing: the bot serves the commands registered by its previous run
        await sim.wait_until(lambda: sync.failures >= 2, timeout_s=10)
        assert not sync.synced and sync.retrying and app.command_syncs == syncs_before
        ix = await running.slash(world.alice, "labels")
        reply = await running.reply(ix)
        assert "daisy" in str(reply.embeds), reply.text
        failed = [r.getMessage() for r in caplog.records if "command sync failed" in r.message]
        assert failed and ("HTTP 400, code 50035" in failed[0] or "HTTP 429" in failed[0])
        # Discord accepts again: the next retry syncs, and the retry loop ends
        sim.clear_faults()
        await sim.wait_until(lambda: app.command_syncs > syncs_before, timeout_s=10)
        await sim.wait_until(lambda: not sync.retrying, timeout_s=5)
        assert sync.synced and sync.last_error is None
        assert any("command sync succeeded after" in r.getMessage() for r in caplog.records)
    finally:
        sim.clear_faults()
        await running.stop()


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("hung", ["callback", "follow-up"])
async def test_a_call_that_never_answers_holds_nothing_and_ends_within_the_deadline(
    world: World, tmp_path: Path, hung: str
):
    sim = world.sim
    running, backend = await launch_scripted(
        world, f"Hang{hung}", tmp_path, {"DISCORD_REQUEST_TIMEOUT_S": "1"}
    )
    try:
        bot = running.bot
        if hung == "callback":  # the response: the answer itself, as it comes quickly
            sim.hang_next("POST", "/callback")
        else:  # the answer after "thinking", which a slow classification gets first
            sim.hang_next("POST", f"/webhooks/{running.app.id}/")
            backend.gate = asyncio.Event()
        hung_before = len(sim.hung)
        image = sim.upload(png_bytes(), "x.png", content_type="image/png")
        ix = await running.slash(world.new_member(f"hang-{hung}"), "classify", image=image)
        if backend.gate is not None:
            await sim.wait_until(lambda: ix.response_type == 5, timeout_s=10)  # deferred
            backend.gate.set()
        await sim.wait_until(lambda: len(sim.hung) > hung_before, timeout_s=10)
        started = time.monotonic()
        # the turn at the door ended when the backend answered: a reply Discord does not
        # take holds no capacity, and its task (tracked for shutdown) ends at the deadline
        assert bot.admission.stats().released_images == 0
        assert len(bot.admission._tasks) == 1
        reply = await running.reply(
            ix, predicate=lambda m: "did not answer in time" in m.text, timeout_s=10
        )
        await sim.wait_until(lambda: not bot.admission._tasks, timeout_s=5)
        elapsed = time.monotonic() - started
        assert elapsed < 1 + 1.5, f"request held {elapsed:.1f} s with a 1 s deadline"
        assert reply.flags & EPHEMERAL
        # the bot keeps serving: the next request is answered normally
        again = await running.slash(world.new_member(f"after-{hung}"), "classify", image=image)
        answer = await running.reply(again)
        assert "daisy" in str(answer.embeds).lower()
    finally:
        started = time.monotonic()
        await running.stop()
    assert time.monotonic() - started < 10  # shutdown not held up by the hung call


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("outcome", ["answer", "error"])
async def test_a_slow_classification_shows_thinking_then_one_message(
    world: World, tmp_path: Path, outcome: str
):
    """Past DEFER_AFTER_S the user sees "thinking..." (Discord's 3 s limit is kept); the
    answer then replaces it, and an error replaces it privately, leaving nothing public."""
    from bot.core.answering import DEFER_AFTER_S
    from golem_backend.base import BackendUnavailable

    sim = world.sim
    running, backend = await launch_scripted(world, f"Slow{outcome}", tmp_path)
    try:
        backend.gate = asyncio.Event()
        if outcome == "error":
            backend.fail_with = BackendUnavailable("The classifier is restarting.")
        image = sim.upload(png_bytes(), "x.png", content_type="image/png")
        ix = await running.slash(world.new_member(f"slow-{outcome}"), "classify", image=image)
        await sim.wait_until(lambda: ix.response_type == 5, timeout_s=10)
        assert ix.responded_at is not None
        waited = ix.responded_at - ix.created
        assert DEFER_AFTER_S - 0.05 <= waited < 3.0, waited  # thinking, within Discord's 3 s
        backend.gate.set()
        reply = await running.reply(ix)
        if outcome == "answer":
            assert not reply.ephemeral and "daisy" in str(reply.embeds).lower()
        else:
            assert reply.ephemeral and "restarting" in reply.text
            await sim.wait_until(lambda: all(m.ephemeral for m in ix.messages), timeout_s=5)
    finally:
        await running.stop()
