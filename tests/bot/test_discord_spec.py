"""The simulator refuses, as Discord would, every REST call its OpenAPI spec refuses.

Unit checks of the matcher against the real spec, then the real discord.py client of a
running bot making bad calls through the simulator: each is answered 404/400 (50035) and
recorded, so the autouse fixture in ``conftest.py`` fails any test whose bot does this.
"""

from __future__ import annotations

from pathlib import Path

import discord
import pytest
from discord.http import Route

from tests.bot.harness import World, launch_scripted
from tests.discord_sim.openapi import load_spec

JSON = "application/json"


def check(method, path, body=None, query=None, content_type=JSON):
    return load_spec().check(method, path, query or {}, content_type, body, body is not None)


def test_routes_match_templates_and_methods():
    assert check("GET", "/users/@me") is None
    assert check("GET", "/webhooks/1/tok/messages/@original") is None
    assert check("DELETE", "/channels/1/messages/2") is None
    unknown = check("GET", "/users/@me/classifiers")
    assert unknown is not None and unknown.status == 404 and "no such route" in str(unknown)
    wrong_method = check("DELETE", "/users/@me")
    assert wrong_method is not None and "DELETE is not a method" in str(wrong_method)


def test_bodies_are_validated_with_resolved_refs():
    ok = [{"name": "classify", "description": "Classify an image", "type": 1}]
    assert check("PUT", "/applications/1/commands", ok) is None
    too_long = [{"name": "c" * 33, "description": "d", "type": 1}]
    bad = check("PUT", "/applications/1/commands", too_long)
    assert bad is not None and (bad.status, bad.code) == (400, 50035)
    assert "0.name" in str(bad)
    # a $ref two levels down (RichEmbed -> RichEmbedField) is followed
    embed = {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]}
    bad = check("POST", "/channels/1/messages", embed)
    assert bad is not None and "embeds.0.fields.0.value" in str(bad)
    callback = {"type": 4, "data": {"content": "x" * 2001}}
    bad = check("POST", "/interactions/1/t/callback", callback, {"with_response": "true"})
    assert bad is not None and "data.content" in str(bad)  # the branch of type 4 is named
    assert check("POST", "/interactions/1/t/callback", {"type": 5}, {"with_response": "1"}) is None


def test_query_parameters_and_snowflakes():
    bad = check("POST", "/webhooks/1/t", {"content": "x"}, {"wait": "maybe"})
    assert bad is not None and "query wait" in str(bad)
    bad = check("POST", "/webhooks/1/t", {"content": "x"}, {"waitt": "1"})
    assert bad is not None and "not a parameter" in str(bad)
    # discord.py sends message_reference ids as integers: allowed on purpose
    ref = {"content": "x", "message_reference": {"message_id": 123, "fail_if_not_exists": False}}
    assert check("POST", "/channels/1/messages", ref) is None
    ref["message_reference"]["message_id"] = "12x"
    assert check("POST", "/channels/1/messages", ref) is not None


@pytest.mark.asyncio(loop_scope="session")
async def test_bad_calls_of_the_real_client_are_refused_and_recorded(world: World, tmp_path: Path):
    running, _ = await launch_scripted(world, "SpecProbe", tmp_path)
    sim = world.sim
    before = len(sim.spec_violations)
    try:
        with pytest.raises(discord.NotFound):
            await running.bot.http.request(Route("GET", "/users/@me/classifiers"))
        channel = world.general.id
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel)
        with pytest.raises(discord.HTTPException) as refused:
            await running.bot.http.request(route, json={"content": "x", "tts": "loud"})
        assert refused.value.status == 400 and refused.value.code == 50035
        # the same route with a valid body goes through
        sent = await running.bot.http.request(route, json={"content": "spec ok"})
        assert sent["content"] == "spec ok"
        found = [str(v) for v in sim.spec_violations[before:]]
        assert len(found) == 2, found
        assert "/users/@me/classifiers" in found[0] and "tts" in found[1]
        with pytest.raises(AssertionError, match="Discord would refuse"):
            sim.assert_spec_clean(since=before)
    finally:
        del sim.spec_violations[before:]  # expected here; must not fail the session's checks
        await running.stop()
