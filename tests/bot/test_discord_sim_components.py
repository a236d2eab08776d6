"""The simulator speaks components, modals and autocomplete as Discord does (raw HTTP and
websocket calls, no discord.py, so that what is checked is the simulator itself)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.discord_sim import DiscordSimulator
from tests.discord_sim.components import ComponentRejected
from tests.discord_sim.model import INTENT_GUILDS

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    s = DiscordSimulator()
    await s.start()
    yield s
    await s.stop()


def button(custom_id: str, label: str = "Go", **kw: Any) -> dict[str, Any]:
    return {"type": 2, "style": 1, "custom_id": custom_id, "label": label, **kw}


def row(*items: dict[str, Any]) -> dict[str, Any]:
    return {"type": 1, "components": list(items)}


def select(custom_id: str, n: int, **kw: Any) -> dict[str, Any]:
    options = [{"label": f"label {i}", "value": f"v{i}"} for i in range(n)]
    return {"type": 3, "custom_id": custom_id, "options": options, **kw}


class Bot:
    """A raw client: a gateway socket and REST calls with the app's token."""

    def __init__(self, sim: DiscordSimulator, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http
        self.app = sim.create_application("B")
        self.owner = sim.create_user("owner")
        self.guild = sim.create_guild("g", self.owner)
        self.channel = sim.create_channel(self.guild, "c")
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.ws = await self.http.ws_connect(self.sim.gateway_url)
        assert (await self.ws.receive_json())["op"] == 10
        await self.ws.send_json({"op": 2, "d": {"token": self.app.token, "intents": INTENT_GUILDS}})
        await self.sim.wait_until(lambda: self.sim.session_for(self.app))

    async def next_interaction(self) -> dict[str, Any]:
        assert self.ws is not None
        while True:
            msg = await self.ws.receive_json(timeout=5)
            if msg.get("t") == "INTERACTION_CREATE":
                return msg["d"]

    async def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = f"{self.sim.api_base}/channels/{self.channel.id}/messages"
        headers = {"Authorization": f"Bot {self.app.token}"}
        async with self.http.post(url, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def callback(self, ix: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = f"{self.sim.api_base}/interactions/{ix.id}/{ix.token}/callback?with_response=1"
        async with self.http.post(url, data=json.dumps(body)) as r:
            return r.status, await r.json()


@pytest_asyncio.fixture
async def bot(sim: DiscordSimulator) -> AsyncIterator[Bot]:
    async with aiohttp.ClientSession() as http:
        b = Bot(sim, http)
        await b.connect()
        yield b


async def test_discord_limits_on_components_are_enforced(sim, bot):
    sim.expect_spec_violations = True  # some are refused by the OpenAPI schema itself
    status, _ = await bot.post({"content": "ok", "components": [row(button("a"))]})
    assert status == 200
    refused = [
        [row(button(f"b{i}")) for i in range(6)],  # 6 action rows
        [row(*(button(f"c{i}") for i in range(6)))],  # 6 buttons in a row
        [row(select("s", 26))],  # 26 options
        [row(button("x" * 101))],  # custom id over 100
        [row(button("d", label="L" * 81))],  # label over 80
        [row(button("e"), button("e"))],  # duplicate custom id
        [row(select("s", 3), button("f"))],  # a select shares its row
        [row(select("s", 3, max_values=4))],  # more values than options
    ]
    for components in refused:
        status, body = await bot.post({"content": "x", "components": components})
        assert status == 400 and body["code"] == 50035, components


async def test_button_press_and_update_message(sim, bot):
    status, _ = await bot.post(
        {"content": "q", "components": [row(button("yes:1", "Yes"), button("no:1", "No"))]}
    )
    assert status == 200
    [message] = sim.bot_messages(bot.channel)
    ix = await sim.press_button(bot.app, message, bot.owner, "Yes")
    data = await bot.next_interaction()
    assert data["type"] == 3 and data["data"] == {"custom_id": "yes:1", "component_type": 2}
    assert data["message"]["id"] == str(message.id) and data["guild_id"] == str(bot.guild.id)
    assert data["member"]["user"]["id"] == str(bot.owner.id)
    status, body = await bot.callback(
        ix, {"type": 7, "data": {"content": "thanks", "components": []}}
    )
    assert status == 200 and body["resource"]["type"] == 7
    assert message.content == "thanks" and message.components == []
    with pytest.raises(ComponentRejected):  # the buttons are gone
        await sim.press_button(bot.app, message, bot.owner, "Yes")


async def test_deferred_update_then_edit_original(sim, bot):
    await bot.post(
        {"content": "q", "components": [row(button("a", "A", disabled=True), button("b", "B"))]}
    )
    [message] = sim.bot_messages(bot.channel)
    with pytest.raises(ComponentRejected):
        await sim.press_button(bot.app, message, bot.owner, "A")  # disabled
    ix = await sim.press_button(bot.app, message, bot.owner, "B")
    await bot.next_interaction()
    status, _ = await bot.callback(ix, {"type": 6})
    assert status == 200 and message.content == "q"  # nothing changed yet
    url = f"{sim.api_base}/webhooks/{bot.app.id}/{ix.token}/messages/@original"
    async with bot.http.patch(url, json={"content": "later", "components": []}) as r:
        assert r.status == 200
    assert message.content == "later" and not message.components


async def test_select_values_and_client_side_checks(sim, bot):
    await bot.post(
        {"content": "pick", "components": [row(select("pick:9", 3, placeholder="Pick"))]}
    )
    [message] = sim.bot_messages(bot.channel)
    with pytest.raises(ComponentRejected):
        await sim.choose(bot.app, message, bot.owner, ["nope"])
    with pytest.raises(ComponentRejected):
        await sim.choose(bot.app, message, bot.owner, ["v0", "v1"])  # max_values 1
    await sim.choose(bot.app, message, bot.owner, ["v2"], placeholder="Pick")
    data = await bot.next_interaction()
    assert data["data"] == {"custom_id": "pick:9", "component_type": 3, "values": ["v2"]}


async def test_modal_open_submit_and_rules(sim, bot):
    await bot.post({"content": "q", "components": [row(button("ask", "Ask"))]})
    [message] = sim.bot_messages(bot.channel)
    ix = await sim.press_button(bot.app, message, bot.owner, "Ask")
    await bot.next_interaction()
    sim.expect_spec_violations = True
    long_title = {"custom_id": "m", "title": "T" * 46, "components": [_text_row()]}
    status, body = await bot.callback(ix, {"type": 9, "data": long_title})
    assert status == 400 and body["code"] == 50035 and ix.modal is None
    modal = {"custom_id": "m:1", "title": "New label", "components": [_text_row()]}
    status, _ = await bot.callback(ix, {"type": 9, "data": modal})
    assert status == 200 and (await sim.wait_modal(ix))["custom_id"] == "m:1"
    with pytest.raises(ComponentRejected):
        await sim.submit_modal(ix, {"label": "x" * 33})  # past max_length: the client refuses
    submitted = await sim.submit_modal(ix, {"label": "rose"})
    data = await bot.next_interaction()
    assert data["type"] == 5 and data["data"]["custom_id"] == "m:1"
    assert data["data"]["components"] == [
        {"type": 1, "components": [{"type": 4, "custom_id": "label", "value": "rose"}]}
    ]
    assert data["message"]["id"] == str(message.id)  # opened from a button: same message
    status, body = await bot.callback(submitted, {"type": 9, "data": modal})
    assert status == 400  # no modal in answer to a modal
    status, _ = await bot.callback(submitted, {"type": 7, "data": {"content": "saved"}})
    assert status == 200 and message.content == "saved"
    forged = await sim.submit_modal(ix, {"label": "y" * 500}, enforce=False)
    data = await bot.next_interaction()
    assert data["data"]["components"][0]["components"][0]["value"] == "y" * 500
    assert forged.kind == 5


def _text_row() -> dict[str, Any]:
    text = {"type": 4, "custom_id": "label", "label": "Label", "style": 1, "max_length": 32}
    return row(text)


async def test_command_cannot_be_answered_with_an_update(sim, bot):
    headers = {"Authorization": f"Bot {bot.app.token}"}
    cmds = [{"name": "ping", "description": "p", "type": 1}]
    url = f"{sim.api_base}/applications/{bot.app.id}/commands"
    async with bot.http.put(url, json=cmds, headers=headers) as r:
        assert r.status == 200
    ix = await sim.slash(bot.app, bot.channel, bot.owner, "ping")
    await bot.next_interaction()
    status, body = await bot.callback(ix, {"type": 7, "data": {"content": "x"}})
    assert status == 400 and body["code"] == 50035


async def test_autocomplete_choices(sim, bot):
    headers = {"Authorization": f"Bot {bot.app.token}"}
    option = {"name": "label", "description": "l", "type": 3, "autocomplete": True}
    cmds = [{"name": "teach", "description": "t", "type": 1, "options": [option]}]
    url = f"{sim.api_base}/applications/{bot.app.id}/commands"
    async with bot.http.put(url, json=cmds, headers=headers) as r:
        assert r.status == 200

    async def answer(choices: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        data = await bot.next_interaction()
        assert data["type"] == 4
        assert data["data"]["options"] == [
            {"name": "label", "type": 3, "value": "ro", "focused": True}
        ]
        ix = sim.interactions[int(data["id"])]
        return await bot.callback(ix, {"type": 8, "data": {"choices": choices}})

    import asyncio

    typing = asyncio.create_task(
        sim.autocomplete(bot.app, bot.channel, bot.owner, "teach", {"label": "ro"}, "label")
    )
    status, _ = await answer([{"name": "rose", "value": "rose"}])
    assert status == 200 and await typing == [{"name": "rose", "value": "rose"}]

    sim.expect_spec_violations = True
    typing = asyncio.create_task(
        sim.autocomplete(bot.app, bot.channel, bot.owner, "teach", {"label": "ro"}, "label")
    )
    too_many = [{"name": f"l{i}", "value": f"l{i}"} for i in range(26)]
    status, body = await answer(too_many)
    assert status == 400 and body["code"] == 50035
    typing.cancel()
