"""Discord faults: a command sync that fails at start (refused, or answered in a shape that
cannot be read), REST calls that never answer, and a "thinking..." that fails.

The real bot (ScriptedBackend, so no model is needed) against the simulator, which refuses
the sync (400/50035 as Spacebar does, or a 429 Cloudflare ban as Discord does after the
daily command-create limit) or leaves a call unanswered.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
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


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10) -> None:
    """Poll the bot's own state (which notifies nobody) until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if predicate():
            return
        if loop.time() > deadline:
            raise AssertionError(f"still false after {timeout_s} s")
        await asyncio.sleep(0.02)


def without_ids(commands: list[dict[str, object]]) -> list[dict[str, object]]:
    """The commands as a server answered that took them and gave them no ids (Spacebar):
    discord.py raises ``KeyError: 'id'`` reading them."""
    return [{k: v for k, v in c.items() if k != "id"} for c in commands]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("when", ["at start", "in the retry"])
async def test_a_sync_answered_in_a_shape_unread_is_retried_and_shutdown_still_drains(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, when: str
):
    sim = world.sim
    app = sim.create_application(f"SyncShape{when.replace(' ', '')}")
    path = f"/applications/{app.id}/guilds/{world.guild.id}/commands"
    if when == "in the retry":  # refused first (as before), then answered without ids
        sim.fail_next("PUT", path, status=400, code=50035)
    sim.mangle_next("PUT", path, without_ids, times=10**6)
    caplog.set_level(logging.INFO, logger="bot")
    running, backend = await launch_scripted(
        world, "", tmp_path, FAST_RETRY, app=app, wait_synced=False
    )
    try:
        sync = running.bot.command_sync
        await eventually(lambda: sync.failures >= 3)
        assert not sync.synced and sync.retrying and not running.task.done()
        failed = [r.getMessage() for r in caplog.records if "command sync failed" in r.message]
        assert any("KeyError: 'id'" in line for line in failed), failed
        ix = await running.slash(world.alice, "labels")  # the bot serves meanwhile
        assert "daisy" in str((await running.reply(ix)).embeds)
        sim.clear_faults()
        await eventually(lambda: sync.synced and not sync.retrying)
    finally:
        sim.clear_faults()
        await running.stop()
    assert running.task.exception() is None
    assert backend.stopped


@pytest.mark.asyncio(loop_scope="session")
async def test_sigterm_while_a_sync_keeps_failing_drains_stops_and_exits_0(
    world: World, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
):
    """The real process: the first sync refused, every retry answered without ids; SIGTERM
    then stops it cleanly (the retry's error never re-raised in the middle of shutdown)."""
    from tests.bot.core.test_lifecycle import finish, run_bot_process
    from tests.bot.harness import data_dir_with_model

    sim = world.sim
    app = sim.create_application("SyncShapeProcess")
    world.guild.members.setdefault(app.user.id, [])
    path = f"/applications/{app.id}/guilds/{world.guild.id}/commands"
    sim.fail_next("PUT", path, status=400, code=50035)
    sim.mangle_next("PUT", path, without_ids, times=10**6)
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "sync-shape")
    env = {
        **sim.bot_env(app),
        **FAST_RETRY,
        "DATA_DIR": str(data_dir),
        "LOCAL_WORKERS": "1",
        "DEV_GUILD_ID": str(world.guild.id),
    }
    proc = await run_bot_process(env, data_dir)
    try:
        await sim.wait_until(lambda: app.command_syncs >= 3, timeout_s=120)
        assert proc.returncode is None, "the bot exited at start"
        proc.send_signal(signal.SIGTERM)
        code, output = await finish(proc)
    finally:
        sim.clear_faults()
        if proc.returncode is None:
            proc.kill()
    assert code == 0, output
    assert "KeyError: 'id'" in output and "retrying in" in output
    assert "backend stopped" in output
    assert "Traceback" not in output, output


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("refused", ["never answered", "answered unreadably"])
async def test_an_answer_ready_after_a_refused_thinking_is_still_delivered(
    world: World, tmp_path: Path, refused: str
):
    """ "thinking..." fails; the answer ready a moment later reaches the member: as the
    follow-up when Discord took the defer (its answer unreadable), else as a reply in the
    channel naming the member; never replaced by an apology."""
    sim = world.sim
    running, backend = await launch_scripted(
        world, f"Refused{len(sim.apps_by_token)}", tmp_path, {"DISCORD_REQUEST_TIMEOUT_S": "1"}
    )
    try:
        backend.gate = asyncio.Event()  # slow: the bot shows "thinking..." first
        hung_before = len(sim.hung)
        if refused == "never answered":
            sim.hang_next("POST", "/callback")
        else:  # Discord took the defer; its answer cannot be read
            sim.mangle_next("POST", "/callback", lambda answer: {})
        user = world.new_member(f"refused-{refused}")
        image = sim.upload(png_bytes(), "x.png", content_type="image/png")
        ix = await running.slash(user, "classify", image=image)
        if refused == "never answered":
            await sim.wait_until(lambda: len(sim.hung) > hung_before, timeout_s=10)
        else:
            await sim.wait_until(lambda: ix.response_type == 5, timeout_s=10)
        backend.gate.set()
        if refused == "never answered":
            answer = await sim.wait_bot_message(
                lambda m: m.channel_id == world.general.id and f"<@{user.id}>" in m.content,
                timeout_s=15,
            )
            assert answer.content.startswith(f"<@{user.id}> asked /classify:"), answer.content
        else:
            answer = await running.reply(ix)
            assert ix.messages == [answer] and answer is ix.original  # "thinking" replaced
        assert not answer.ephemeral and "daisy" in str(answer.embeds).lower()
        labels = [c.get("label") for row in answer.components for c in row["components"]]
        assert labels == ["Right", "Wrong..."]  # the feedback buttons came along
        assert not any("something went wrong" in m.text for m in sim.bot_messages())
    finally:
        sim.clear_faults()
        await running.stop()
