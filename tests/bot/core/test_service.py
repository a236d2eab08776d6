"""Running it as a service: /healthz, /readyz, /metrics and JSON logs, end to end.

Readiness follows the real gateway connection (the simulator drops it and refuses new
ones for a while) and the backend's own status; /metrics is parsed with
``prometheus_client.parser`` after real interactions through the simulator, with the real
LocalBackend for classification.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from bot.__main__ import exit_code_for
from bot.core.health import HealthEndpointFailed
from bot.core.logconfig import REDACTED, make_handler, set_request_context
from tests.bot.harness import (
    RunningBot,
    World,
    flower_bytes,
    launch_scripted,
    png_bytes,
    settings_from_env,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

LABEL_NAMES = {"command", "outcome", "source", "reason", "state", "path"}  # fixed sets


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


async def get(session: aiohttp.ClientSession, running: RunningBot, path: str):
    assert running.bot.health is not None
    url = f"http://127.0.0.1:{running.bot.health.port}{path}"
    async with session.get(url) as r:
        return r.status, await r.text()


async def wait_ready(session, running, want: bool, reason: str = "", timeout_s: float = 30):
    """Poll /readyz (an HTTP endpoint has no change notification) until it says ``want``."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        status, body = await get(session, running, "/readyz")
        if (status == 200) == want and reason in body:
            return json.loads(body)
        if loop.time() > deadline:
            raise AssertionError(f"/readyz still {status} {body}")
        await asyncio.sleep(0.05)


async def test_readiness_follows_the_gateway_and_the_backend(world: World, tmp_path: Path):
    running, backend = await launch_scripted(world, "Ready", tmp_path, {"HTTP_PORT": "0"})
    sim = world.sim
    try:
        async with aiohttp.ClientSession() as http:
            assert await get(http, running, "/healthz") == (200, '{"alive": true}')
            await wait_ready(http, running, True)

            backend.ready = False  # e.g. every worker failed
            body = await wait_ready(http, running, False, "backend not ready")
            assert body["reasons"] == ["backend not ready: all workers failed"]
            backend.ready = True
            backend.status_error = RuntimeError("daemon gone")
            body = await wait_ready(http, running, False, "backend status failed")
            assert "daemon gone" in body["reasons"][0]
            backend.status_error = None
            await wait_ready(http, running, True)

            sim.gateway_down = True
            await sim.drop_connections(running.app)
            body = await wait_ready(http, running, False, "gateway disconnected")
            assert body["reasons"] == ["gateway disconnected"]
            assert (await get(http, running, "/healthz"))[0] == 200  # alive all the same
            sim.gateway_down = False
            await wait_ready(http, running, True, timeout_s=60)  # reconnected
            # /readyz turns 200 once the new socket is open; the simulator counts the
            # session from the RESUMED it sends a moment later (as Discord delivers
            # interactions only to a resumed session)
            await sim.wait_connected(running.app, timeout_s=30, synced=False)
            ix = await running.slash(world.alice, "labels")
            assert "daisy" in str((await running.reply(ix)).embeds)
    finally:
        sim.gateway_down = False
        await running.stop()


async def test_metrics_after_real_interactions(main_bot: RunningBot):
    w, sim = main_bot.world, main_bot.sim
    before = samples(main_bot.bot.metrics.render().decode())
    good = sim.upload(flower_bytes("sunflower", 60), "sun.jpg", content_type="image/jpeg")
    ix = await main_bot.slash(w.new_member("metrics-ok"), "classify", image=good)
    await main_bot.reply(ix)
    gone = sim.upload(png_bytes(), "gone.png", content_type="image/png", expires_in_s=-60)
    ix = await main_bot.slash(w.new_member("metrics-gone"), "classify", image=gone)
    await main_bot.reply(ix)
    ix = await main_bot.slash(w.new_member("metrics-labels"), "labels")
    await main_bot.reply(ix)

    page_text = main_bot.bot.metrics.render().decode()
    after = samples(page_text)
    p = "classifier_bot"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(f"{p}_interactions_total", command="classify", outcome="ok") == 1
    assert delta(f"{p}_interactions_total", command="classify", outcome="refused") == 1
    assert delta(f"{p}_interactions_total", command="labels", outcome="ok") == 1
    assert delta(f"{p}_images_classified_total") == 1
    assert delta(f"{p}_classification_seconds_count") == 1
    assert delta(f"{p}_classification_seconds_sum") > 0
    assert delta(f"{p}_download_failures_total", reason="DownloadError") == 1
    # both went through the door (the second's download failed in its turn)
    assert delta(f"{p}_admission_wait_seconds_count", path="classify") == 2
    # the latency buckets resolve milliseconds around the median (11-13 ms)
    assert (f"{p}_classification_seconds_bucket", (("le", "0.0125"),)) in after
    # bounded cardinality: only the fixed label names, no user or server ids anywhere
    for (_, labels), _v in after.items():
        assert {k for k, _ in labels} <= LABEL_NAMES | {"le"}, labels
    for ident in (w.guild.id, w.alice.id, w.general.id):
        assert str(ident) not in page_text


async def test_metrics_endpoint_reads_backend_and_gateway(world: World, tmp_path: Path):
    running, _ = await launch_scripted(world, "Scrape", tmp_path, {"HTTP_PORT": "0"})
    try:
        async with aiohttp.ClientSession() as http:
            status, text = await get(http, running, "/metrics")
        assert status == 200
        page = samples(text)
        assert value(page, "classifier_bot_guilds") == len(world.sim.guilds)
        assert value(page, "classifier_bot_backend_ready") == 1
        assert value(page, "classifier_bot_backend_queue_depth") == 0
        assert ("classifier_bot_gateway_latency_seconds", ()) in page
        assert value(page, "classifier_bot_command_syncs_total", outcome="ok") == 1
    finally:
        await running.stop()


async def test_json_log_lines_parse_and_redact():
    stream = io.StringIO()
    token = "MTIz.secret-token.abcdef"
    handler = make_handler(stream, "json", [token])
    logger = logging.getLogger("bot.test_json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("plain line")
        set_request_context(command="classify", guild_id=42, channel_id=7, interaction_id=9)
        logger.warning("token %s leaked?", token)
        try:
            raise ValueError(f"bad {token}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        set_request_context()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert "command" not in lines[0]
    assert lines[1]["message"] == f"token {REDACTED} leaked?"
    assert (lines[1]["command"], lines[1]["guild_id"], lines[1]["level"]) == (
        "classify",
        42,
        "WARNING",
    )
    assert token not in stream.getvalue() and "exc_info" in lines[2]


async def test_json_log_of_a_real_command_carries_its_context(main_bot: RunningBot):
    stream = io.StringIO()
    handler = make_handler(stream, "json", [main_bot.settings.discord_token.get_secret_value()])
    logger = logging.getLogger("bot")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    w = main_bot.world
    try:
        huge = main_bot.sim.upload(b"x" * 10, "big.png", declared_size=5 * 1024 * 1024)
        ix = await main_bot.slash(w.new_member("json-log"), "classify", image=huge)
        await main_bot.reply(ix)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [r for r in records if r.get("interaction_id") == ix.id]
    assert mine, records
    assert all(r["command"] == "classify" and r["guild_id"] == w.guild.id for r in mine)
    assert all(r["channel_id"] == w.general.id for r in mine)


@pytest.mark.parametrize(
    ("var", "bad"),
    [
        ("HTTP_PORT", "70000"),
        ("HTTP_PORT", "http"),
        ("HTTP_HOST", "http://0.0.0.0/"),
        ("LOG_FORMAT", "xml"),
        ("DISCORD_REQUEST_TIMEOUT_S", "0"),
        ("COMMAND_SYNC_RETRY_S", "-1"),
    ],
)
async def test_bad_service_settings_are_refused(var: str, bad: str):
    with pytest.raises(ValidationError) as caught:
        settings_from_env({"DISCORD_TOKEN": "a.b.c", var: bad})
    assert var.lower() in str(caught.value)


async def test_a_port_in_use_is_a_clear_configuration_error(world: World, tmp_path: Path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(HealthEndpointFailed, match=f"HTTP_PORT={port} cannot be bound"):
            await launch_scripted(world, "PortTaken", tmp_path, {"HTTP_PORT": str(port)})
    finally:
        blocker.close()
    assert exit_code_for(HealthEndpointFailed("x")) == 2


async def test_without_a_public_url_there_is_no_dashboard(world: World, tmp_path: Path):
    running, _ = await launch_scripted(world, "NoDashboard", tmp_path)
    try:
        assert running.settings.dashboard_public_url is None
        assert running.bot.get_cog("DashboardCog") is None
        assert "bot.dashboard" in running.bot.extensions  # loaded, serving nothing
        assert running.bot.extension_failures == {}
    finally:
        await running.stop()


async def test_busy_refusals_and_retrains_are_counted(world: World, tmp_path: Path):
    """The door's refusals by path and reason; the backend's own stays an alarm at 0."""
    running, backend = await launch_scripted(world, "Counted", tmp_path, {"MAX_QUEUE_WAIT_S": "1"})
    metrics = running.bot.metrics
    try:
        backend.images_per_s = 1.0  # one image in flight is a second of work
        backend.gate = asyncio.Event()
        image = world.sim.upload(png_bytes(), "x.png", content_type="image/png")
        held = await running.slash(world.new_member("holder"), "classify", image=image)
        await asyncio.wait_for(backend.entered.wait(), 10)
        refused = await running.slash(world.new_member("refused"), "classify", image=image)
        assert "busy" in (await running.reply(refused)).text.lower()
        backend.gate.set()
        await running.reply(held)
        ix = await running.slash(world.admin, "retrain")
        await running.reply(ix, predicate=lambda m: "Retraining finished" in m.text, timeout_s=20)
        page = samples(metrics.render().decode())
        refusals = "classifier_bot_admission_refusals_total"
        assert value(page, refusals, path="classify", reason="queue_full") == 1
        assert value(page, "classifier_bot_admission_wait_seconds_count", path="classify") == 1
        assert value(page, "classifier_bot_busy_refusals_total", source="backend") == 0
        assert value(page, "classifier_bot_retrains_total", outcome="ok") == 1
        assert value(page, "classifier_bot_retrain_seconds_count") == 1
        assert value(page, "classifier_bot_interactions_total", command="retrain", outcome="ok")
    finally:
        await running.stop()


async def test_a_crashed_worker_is_counted_as_a_restart(main_bot: RunningBot):
    """The real LocalBackend: SIGKILL its worker; the next request finds it dead, replaces
    it (the request is retried and answered), and the restart is counted."""
    backend = main_bot.bot.backend
    before = (await backend.status()).worker_restarts
    [pid] = backend.worker_pids  # LOCAL_WORKERS=1
    os.kill(pid, signal.SIGKILL)
    w = main_bot.world
    image = main_bot.sim.upload(flower_bytes("tulip", 61), "t.jpg", content_type="image/jpeg")
    ix = await main_bot.slash(w.new_member("after-crash"), "classify", image=image)
    assert (await main_bot.reply(ix, timeout_s=90)).embeds
    main_bot.bot.metrics.update_from(main_bot.bot, await backend.status())
    page = samples(main_bot.bot.metrics.render().decode())
    assert value(page, "classifier_bot_backend_worker_restarts") == before + 1
    assert backend.worker_pids and backend.worker_pids[0] != pid
