"""The simulator itself enforces Discord's rules (checked with raw HTTP/websocket calls)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.discord_sim import DiscordSimulator
from tests.discord_sim.model import INTENT_GUILD_MESSAGES, INTENT_GUILDS, INTENT_MESSAGE_CONTENT


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    s = DiscordSimulator(response_deadline_s=0.3)
    await s.start()
    yield s
    await s.stop()


async def connect(sim, session, app, intents):
    ws = await session.ws_connect(sim.gateway_url)
    assert (await ws.receive_json())["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": app.token, "intents": intents}})
    return ws


async def next_dispatch(ws, event):
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg.get("t") == event:
            return msg["d"]


async def test_message_content_is_stripped_without_the_intent(sim):
    app = sim.create_application("B")
    owner = sim.create_user("o")
    guild = sim.create_guild("g", owner)
    channel = sim.create_channel(guild, "c")
    att = sim.upload(b"\x89PNG\r\n\x1a\n", "a.png")
    async with aiohttp.ClientSession() as http:
        plain = await connect(sim, http, app, INTENT_GUILDS | INTENT_GUILD_MESSAGES)
        full = await connect(
            sim, http, app, INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_MESSAGE_CONTENT
        )
        await sim.wait_until(lambda: sum(s.ready for s in sim.sessions) == 2)
        await sim.post_message(channel, owner, "hello", [att])
        stripped = await next_dispatch(plain, "MESSAGE_CREATE")
        kept = await next_dispatch(full, "MESSAGE_CREATE")
        assert stripped["content"] == "" and stripped["attachments"] == []
        assert kept["content"] == "hello" and kept["attachments"][0]["filename"] == "a.png"


async def test_privileged_intent_not_enabled_closes_with_4014(sim):
    app = sim.create_application("B", message_content_allowed=False)
    async with aiohttp.ClientSession() as http:
        ws = await connect(sim, http, app, INTENT_MESSAGE_CONTENT)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4014


async def test_interaction_response_rules(sim):
    import asyncio

    app = sim.create_application("B")
    owner = sim.create_user("o")
    guild = sim.create_guild("g", owner)
    channel = sim.create_channel(guild, "c")
    sim.create_user("u")
    async with aiohttp.ClientSession() as http:
        ws = await connect(sim, http, app, INTENT_GUILDS)
        await sim.wait_until(lambda: sim.session_for(app))
        headers = {"Authorization": f"Bot {app.token}", "Content-Type": "application/json"}
        cmds = [{"name": "ping", "description": "p", "type": 1}]
        async with http.put(
            f"{sim.api_base}/applications/{app.id}/commands", headers=headers, data=json.dumps(cmds)
        ) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json"

        async def invoke():
            ix = await sim.slash(app, channel, owner, "ping")
            await next_dispatch(ws, "INTERACTION_CREATE")
            return ix

        def callback(ix, body):
            url = f"{sim.api_base}/interactions/{ix.id}/{ix.token}/callback?with_response=1"
            return http.post(
                url, data=json.dumps(body), headers={"Content-Type": "application/json"}
            )

        followup = f"{sim.api_base}/webhooks/{app.id}/{{}}?wait=1"
        ix = await invoke()
        async with http.post(followup.format(ix.token), json={"content": "x"}) as r:
            assert r.status == 404 and (await r.json())["code"] == 10015  # no response yet
        async with callback(ix, {"type": 5, "data": {"flags": 64}}) as r:
            assert r.status == 200 and (await r.json())["interaction"]["response_message_loading"]
        async with callback(ix, {"type": 4, "data": {"content": "again"}}) as r:
            assert r.status == 400 and (await r.json())["code"] == 40060
        async with http.post(followup.format(ix.token), json={"content": "done"}) as r:
            assert r.status == 200
        assert ix.original.content == "done" and ix.original.ephemeral  # defer's visibility

        late = await invoke()
        await asyncio.sleep(0.4)  # past the (shortened) 3 s deadline, on purpose
        async with callback(late, {"type": 4, "data": {"content": "too late"}}) as r:
            assert r.status == 404 and (await r.json())["code"] == 10062
        assert late.late

        big = await invoke()
        body = {"type": 4, "data": {"content": "x" * 2001}}
        sim.expect_spec_violations = True  # refused by Discord's OpenAPI spec, on purpose
        async with callback(big, body) as r:
            assert r.status == 400 and (await r.json())["code"] == 50035
        assert "data.content" in str(sim.spec_violations[-1])


async def test_cdn_checks_signatures_and_expiry(sim):
    ok = sim.upload(b"data", "f.bin")
    expired = sim.upload(b"data", "g.bin", expires_in_s=-10)
    async with aiohttp.ClientSession() as http:
        async with http.get(ok.url) as r:
            assert r.status == 200 and await r.read() == b"data"
        async with http.get(ok.url.replace("hm=", "hm=0")) as r:
            assert r.status == 404
        async with http.get(expired.url) as r:
            assert r.status == 404


async def test_channel_history_is_paged_newest_first_and_needs_the_permissions(sim):
    from tests.discord_sim.model import READ_MESSAGE_HISTORY, VIEW_CHANNEL

    app = sim.create_application("B", message_content_allowed=False)
    owner = sim.create_user("o")
    guild = sim.create_guild("g", owner)
    channel = sim.create_channel(guild, "c")
    posted = [await sim.post_message(channel, owner, f"m{i}") for i in range(7)]
    ids = [m.id for m in posted]
    url = f"{sim.api_base}/channels/{channel.id}/messages"
    headers = {"Authorization": f"Bot {app.token}"}

    async def page(**query: object) -> tuple[int, object]:
        async with http.get(
            url, params={k: str(v) for k, v in query.items()}, headers=headers
        ) as r:
            return r.status, await r.json()

    async with aiohttp.ClientSession() as http:
        status, body = await page(limit=3)
        assert status == 200 and [int(m["id"]) for m in body] == ids[:-4:-1]
        assert all(m["content"] == "" for m in body)  # no Message Content intent
        _, body = await page(limit=2, before=ids[3])
        assert [int(m["id"]) for m in body] == [ids[2], ids[1]]
        _, body = await page(limit=2, after=ids[3])
        assert [int(m["id"]) for m in body] == [ids[5], ids[4]]
        _, body = await page(limit=4, around=ids[3])
        assert [int(m["id"]) for m in body] == [ids[4], ids[3], ids[2], ids[1]]
        status, body = await page(limit=101)  # the spec's maximum is 100
        assert status == 400
        channel.overwrites[app.user.id] = (0, READ_MESSAGE_HISTORY)
        assert await page(limit=5) == (200, [])
        channel.overwrites[app.user.id] = (0, VIEW_CHANNEL)
        status, body = await page(limit=5)
        assert status == 403 and body["code"] == 50001
    sim.expect_spec_violations = True  # the limit of 101, on purpose
