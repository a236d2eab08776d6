"""A malformed gateway event is logged and skipped; the bot keeps its connection and serves
the next events. The simulator sends what a Discord-compatible server sent (Spacebar: a
role without a field, ``thread: null``), a GUILD_CREATE missing keys and an interaction
whose member is broken, to the real discord.py client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bot.harness import World, launch_scripted, png_bytes
from tests.discord_sim.model import snowflake

pytestmark = pytest.mark.asyncio(loop_scope="session")


def role_without_name(w: World) -> tuple[str, dict[str, Any]]:
    role = {"id": str(snowflake()), "permissions": "0", "position": 1, "color": 0}
    return "GUILD_ROLE_CREATE", {"guild_id": str(w.guild.id), "role": role}


def message_with_null_thread(w: World) -> tuple[str, dict[str, Any]]:
    author = w.alice
    return "MESSAGE_CREATE", {
        "id": str(snowflake()),
        "channel_id": str(w.general.id),
        "guild_id": str(w.guild.id),
        "author": author.payload(),
        "content": "hello",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
        "flags": 0,
        "thread": None,
    }


def guild_missing_keys(w: World) -> tuple[str, dict[str, Any]]:
    return "GUILD_CREATE", {
        "id": str(snowflake()),
        "name": "Half a server",
        "channels": [{"id": str(snowflake()), "name": "no-type"}],
    }


def interaction_with_broken_member(w: World) -> tuple[str, dict[str, Any]]:
    return "INTERACTION_CREATE", {
        "id": str(snowflake()),
        "application_id": "1",
        "type": 2,
        "token": "broken",
        "version": 1,
        "guild_id": str(w.guild.id),
        "channel_id": str(w.general.id),
        "attachment_size_limit": 10 * 1024 * 1024,
        "member": {"user": None, "roles": "not a list"},
        "data": {"id": "1", "name": "classify", "type": 1},
    }


EVENTS: dict[str, Callable[[World], tuple[str, dict[str, Any]]]] = {
    "role without a name": role_without_name,
    "thread: null": message_with_null_thread,
    "GUILD_CREATE missing keys": guild_missing_keys,
    "interaction with a broken member": interaction_with_broken_member,
}


@pytest.mark.parametrize("case", list(EVENTS))
async def test_a_malformed_event_is_skipped_and_the_next_served(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
):
    sim = world.sim
    running, _ = await launch_scripted(world, f"Malformed{len(sim.apps_by_token)}", tmp_path)
    try:
        session = sim.session_for(running.app, world.guild.id)
        assert session is not None
        caplog.set_level(logging.WARNING, logger="bot.core.gateway_events")
        event, data = EVENTS[case](world)
        await sim.send_event(running.app, event, data, world.guild.id)
        image = sim.upload(png_bytes(), "next.png", content_type="image/png")
        ix = await running.slash(world.new_member(f"next-{case}"), "classify", image=image)
        reply = await running.reply(ix)  # served on the same connection
        assert "daisy" in str(reply.embeds).lower()
        assert sim.session_for(running.app, world.guild.id) is session and not session.ws.closed
        assert not running.task.done()
        [skipped] = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert f"skipped a malformed {event} event from the gateway" in skipped
        metrics = running.bot.metrics.render().decode()
        assert f'classifier_bot_gateway_events_skipped_total{{event="{event}"}} 1.0' in metrics
    finally:
        await running.stop()
