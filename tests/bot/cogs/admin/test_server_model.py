"""A server's own model: /model rollback, and /settings include_default in what the next
retrain trains on; the other server is untouched."""

from __future__ import annotations

import pytest

from tests.bot.tenancy_world import Servers

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_model_rollback(servers: Servers):
    s = servers
    nothing = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert "nothing to roll back" in nothing.content
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    first = await s.bot.bot.store.guild(s.a.id).current_model()
    await s.teach(s.admin_a, s.a_chan, "iris", 1)
    await s.retrain(s.admin_a, s.a_chan)
    second = await s.bot.bot.store.guild(s.a.id).current_model()
    assert first and second and first.model_id != second.model_id
    msg = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert msg.content == f"Rolled back: this server now uses model {first.model_id}."
    answer = await s.classify(s.a_chan)
    assert answer.embeds[0]["footer"]["text"] == f"model {first.model_id}"
    msg = await s.run(s.admin_a, s.a_chan, "model rollback")
    assert msg.content == "Rolled back: this server now uses the default model."


async def test_settings_include_default(servers: Servers):
    s = servers
    shown = await s.run(s.admin_a, s.a_chan, "settings")
    assert "**included**" in shown.content
    off = await s.run(s.admin_a, s.a_chan, "settings", include_default=False)
    assert "**not included**" in off.content
    await s.teach(s.admin_a, s.a_chan, "rose", 0)
    await s.retrain(s.admin_a, s.a_chan)
    await s.retrain(s.admin_b, s.b_chan)
    ts_a, ts_b = s.backend.trained
    assert ts_a is not None and not ts_a.include_default
    assert ts_b is not None and ts_b.include_default
