"""Two servers set up for the rules, labels and settings tests: watched channels with and
without the permissions each rule action needs, log channels, custom emojis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from golem_backend import LabelScore, Prediction
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import RunningBot, World, flower_bytes, launch, png_bytes
from tests.discord_sim import (
    ADD_REACTIONS,
    ADMINISTRATOR,
    MANAGE_MESSAGES,
    SEND_MESSAGES,
    Channel,
    DiscordSimulator,
    Emoji,
    Guild,
    Interaction,
    Message,
    User,
)

_counter = itertools.count()
_images = itertools.count()


@dataclass
class Side:
    """One server of the pair."""

    guild: Guild
    admin: User
    pics: Channel  # watched; the bot has the everyday permissions only
    mod: Channel  # watched; the bot may also manage messages here
    log: Channel  # the bot may post here
    closed_log: Channel  # the bot may not send messages here
    no_react: Channel  # not watched at first; the bot may not add reactions here
    emoji: Emoji


@dataclass
class Pair:
    bot: RunningBot
    backend: ScriptedBackend
    a: Side
    b: Side
    member: User  # a plain member of both

    @property
    def sim(self) -> DiscordSimulator:
        return self.bot.sim

    async def ix(self, user: User, chan: Channel, name: str, **options: object) -> Interaction:
        return await self.sim.slash(self.bot.app, chan, user, name, options)

    async def run(self, user: User, chan: Channel, name: str, **options: object) -> Message:
        return await self.sim.wait_response(await self.ix(user, chan, name, **options))

    def image(self, label: str, confidence: float) -> bytes:
        """Fresh image bytes that the default model answers as ``label`` at ``confidence``."""
        data = png_bytes(colour=f"#{next(_images) % 0xFFFFFF:06x}")
        top = (LabelScore(label, confidence),) if label != "unknown" else ()
        self.backend.answers[data] = Prediction(label, confidence, top, "scripted-1")
        return data

    async def post(self, chan: Channel, *images: bytes) -> Message:
        atts = [self.sim.upload(data, f"img{i}.png") for i, data in enumerate(images)]
        return await self.sim.post_message(chan, self.member, attachments=atts)

    async def replies_to(self, msg: Message, timeout_s: float = 10.0) -> Message:
        return await self.sim.wait_bot_message(lambda m: m.reference_id == msg.id, timeout_s)

    async def teach(self, side: Side, label: str, index: int) -> Message:
        att = self.sim.upload(flower_bytes("daisy", index), f"t{index}.jpg")
        return await self.run(side.admin, side.pics, "teach images", label=label, image=att)


def _side(world: World, n: int, name: str, bot_user_id: int, member: User) -> Side:
    sim = world.sim
    owner = sim.create_user(f"owner-{name}{n}")
    guild = sim.create_guild(f"Server {name}{n}", owner)
    admin = sim.create_user(f"admin-{name}{n}")
    sim.add_member(guild, admin, ADMINISTRATOR)
    sim.add_member(guild, member)
    guild.members.setdefault(bot_user_id, [])
    return Side(
        guild,
        admin,
        pics=sim.create_channel(guild, "pics"),
        mod=sim.create_channel(guild, "mod", {bot_user_id: (MANAGE_MESSAGES, 0)}),
        log=sim.create_channel(guild, "mod-log"),
        closed_log=sim.create_channel(guild, "closed-log", {guild.everyone.id: (0, SEND_MESSAGES)}),
        no_react=sim.create_channel(guild, "no-react", {bot_user_id: (0, ADD_REACTIONS)}),
        emoji=sim.add_emoji(guild, f"flower_{name}{n}"),
    )


@asynccontextmanager
async def two_servers(
    world: World, tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[Pair]:
    sim = world.sim
    n = next(_counter)
    app = sim.create_application(f"RulesBot{n}")
    member = sim.create_user(f"member{n}")
    a = _side(world, n, "A", app.user.id, member)
    b = _side(world, n, "B", app.user.id, member)
    backend = ScriptedBackend()
    data = tmp_path / "data"
    data.mkdir()
    base_env = {
        "DATA_DIR": str(data),
        "DATASET_DIR": str(data),
        "MESSAGE_CONTENT_INTENT": "true",
        "COOLDOWN_USES": "1000",
        **(env or {}),
    }
    running = await launch(world, app, base_env, backend=backend)
    pair = Pair(running, backend, a, b, member)
    try:
        for side in (a, b):
            for chan in (side.pics, side.mod):
                on = await pair.run(side.admin, chan, "autoclassify", mode="on")
                assert on.content.startswith("I'll reply"), on.content
        yield pair
    finally:
        await running.stop()
