"""Two servers A and B on one bot (a scripted backend), each with an admin, a member and an
operator of both: ``two_servers``, behind the fixture ``servers`` (``conftest.py``) of the
tenancy, data-lifecycle and per-server model tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import RunningBot, World, flower_bytes, launch
from tests.discord_sim import ADMINISTRATOR, Channel, Guild, Interaction, Message, User


@dataclass
class Servers:
    bot: RunningBot
    backend: ScriptedBackend
    a: Guild
    b: Guild
    a_chan: Channel
    b_chan: Channel
    admin_a: User
    admin_b: User
    member: User  # a plain member of both
    operator: User  # in ADMIN_USER_IDS, a plain member of both

    async def run(self, user: User, chan: Channel, name: str, **options: object) -> Message:
        ix = await self.bot.sim.slash(self.bot.app, chan, user, name, options)
        return await self.bot.sim.wait_response(ix)

    async def ix(self, user: User, chan: Channel, name: str, **options: object) -> Interaction:
        return await self.bot.sim.slash(self.bot.app, chan, user, name, options)

    async def teach(self, admin: User, chan: Channel, label: str, index: int) -> Message:
        att = self.bot.sim.upload(flower_bytes("daisy", index), f"t{index}.jpg")
        return await self.run(admin, chan, "teach images", label=label, image=att)

    async def classify(self, chan: Channel, index: int = 0) -> Message:
        att = self.bot.sim.upload(flower_bytes("tulip", index), f"c{index}.jpg")
        return await self.run(self.member, chan, "classify", image=att)

    async def retrain(self, admin: User, chan: Channel, **options: object) -> Message:
        ix = await self.ix(admin, chan, "retrain", **options)
        return await self.bot.sim.wait_response(
            ix, predicate=lambda m: bool(m.embeds) or "failed" in m.content
        )


_counter = iter(range(1000))


async def two_servers(world: World, tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Servers]:
    sim = world.sim
    n = next(_counter)
    owner = sim.create_user(f"owner{n}")
    a, b = sim.create_guild(f"Server A{n}", owner), sim.create_guild(f"Server B{n}", owner)
    a_chan, b_chan = sim.create_channel(a, "pics"), sim.create_channel(b, "pics")
    admin_a, admin_b = sim.create_user(f"admin_a{n}"), sim.create_user(f"admin_b{n}")
    member, operator = sim.create_user(f"member{n}"), sim.create_user(f"operator{n}")
    sim.add_member(a, admin_a, ADMINISTRATOR)
    sim.add_member(b, admin_b, ADMINISTRATOR)
    for g in (a, b):
        sim.add_member(g, member)
        sim.add_member(g, operator)
    app = sim.create_application(f"TenancyBot{n}")
    for g in (a, b):
        g.members.setdefault(app.user.id, [])
    backend = ScriptedBackend()
    data = tmp_path / "data"
    data.mkdir()
    base_env = {
        "DATA_DIR": str(data),
        "DATASET_DIR": str(data),
        "MESSAGE_CONTENT_INTENT": "true",
        "ADMIN_USER_IDS": str(operator.id),
        "COOLDOWN_USES": "1000",
        **env,
    }
    running = await launch(world, app, base_env, backend=backend)
    try:
        yield Servers(running, backend, a, b, a_chan, b_chan, admin_a, admin_b, member, operator)
    finally:
        await running.stop()


async def poll(predicate: object, timeout_s: float = 10.0) -> None:
    """Wait for a condition outside the simulator (the bot's files, the backend's calls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


def answer(msg: Message) -> list[dict[str, object]]:
    """What a reply says, without the per-upload thumbnail URL."""
    return [{k: v for k, v in e.items() if k != "thumbnail"} for e in msg.embeds]


def fields(msg: Message, index: int = 0) -> dict[str, str]:
    return {f["name"]: f["value"] for f in msg.embeds[index]["fields"]}
