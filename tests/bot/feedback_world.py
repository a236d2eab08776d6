"""Two servers and the real bot for the feedback loop's end-to-end tests.

The backend is :class:`CheckingBackend`: the scripted answers of ``ScriptedBackend`` (a
server's model answers with its first label) after the real decoder has checked each
image, so broken images are refused as the real backends refuse them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from golem_backend import ModelRef, Outcome
from tests.bot.fakes import ScriptedBackend
from tests.bot.harness import RunningBot, World, flower_bytes, launch
from tests.discord_sim import (
    ADMINISTRATOR,
    VIEW_CHANNEL,
    Channel,
    Guild,
    Interaction,
    Message,
    User,
)
from tests.discord_sim.model import Role, snowflake

MAX_IMAGE_BYTES = 2 * 1024 * 1024


class CheckingBackend(ScriptedBackend):
    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        from provider.errors import ImageError
        from provider.imageio import decode_image

        answers = await super().classify(images, top_k, model=model, tenant=tenant)
        out: list[Outcome] = []
        for data, answer in zip(images, answers, strict=True):
            try:
                decode_image(data, max_bytes=MAX_IMAGE_BYTES, max_pixels=40_000_000)
                out.append(answer)
            except ImageError as exc:
                out.append(exc)
        return out


@dataclass
class Servers:
    world: World
    bot: RunningBot
    backend: CheckingBackend
    env: dict[str, str]
    a: Guild
    b: Guild
    a_chan: Channel
    b_chan: Channel
    admin_a: User
    admin_b: User
    member: User  # a plain member of both
    other: User  # another plain member of both
    #: server A's channel that only the role ``insiders`` (and admins) may view
    a_secret: Channel
    insiders: Role
    insider: User  # a plain member of A with the role insiders
    trainers: Role  # A's trainer role once ``make_trainer_role`` ran
    trainer: User  # a member of A with the role trainers (not insiders)

    @property
    def sim(self) -> Any:
        return self.world.sim

    async def ix(self, user: User, chan: Channel, name: str, **options: object) -> Interaction:
        return await self.sim.slash(self.bot.app, chan, user, name, options)

    async def run(self, user: User, chan: Channel, name: str, **options: object) -> Message:
        return await self.sim.wait_response(await self.ix(user, chan, name, **options))

    async def classify(self, chan: Channel, index: int = 0, user: User | None = None) -> Message:
        att = self.sim.upload(flower_bytes("tulip", index), f"c{index}.jpg")
        return await self.run(user or self.member, chan, "classify", image=att)

    async def press(self, message: Message, user: User, label: str) -> Interaction:
        return await self.sim.press_button(self.bot.app, message, user, label)

    async def make_trainer_role(self) -> None:
        """Make ``trainers`` server A's trainer role."""
        await self.bot.bot.store.guild(self.a.id).set_trainer_role(self.trainers.id)

    async def restart(self) -> None:
        """Stop the bot and start it again on the same database and files."""
        await self.bot.stop()
        self.backend = CheckingBackend()
        self.bot = await launch(self.world, self.bot.app, self.env, backend=self.backend)


_counter = iter(range(1000))


async def two_servers(
    world: World, data: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Servers]:
    sim = world.sim
    n = next(_counter)
    owner = sim.create_user(f"fb-owner{n}")
    a, b = sim.create_guild(f"Feedback A{n}", owner), sim.create_guild(f"Feedback B{n}", owner)
    a_chan, b_chan = sim.create_channel(a, "pics"), sim.create_channel(b, "pics")
    insiders, trainers = Role(snowflake(), "insiders", 0), Role(snowflake(), "trainers", 0)
    a.roles[insiders.id], a.roles[trainers.id] = insiders, trainers
    a_secret = sim.create_channel(
        a, "secret", {a.everyone.id: (0, VIEW_CHANNEL), insiders.id: (VIEW_CHANNEL, 0)}
    )
    insider, trainer = sim.create_user(f"fb-insider{n}"), sim.create_user(f"fb-trainer{n}")
    sim.add_member(a, insider)
    sim.add_member(a, trainer)
    sim.give_role(a, insider, insiders)
    sim.give_role(a, trainer, trainers)
    admin_a, admin_b = sim.create_user(f"fb-admin-a{n}"), sim.create_user(f"fb-admin-b{n}")
    member, other = sim.create_user(f"fb-member{n}"), sim.create_user(f"fb-other{n}")
    sim.add_member(a, admin_a, ADMINISTRATOR)
    sim.add_member(b, admin_b, ADMINISTRATOR)
    for g in (a, b):
        sim.add_member(g, member)
        sim.add_member(g, other)
    app = sim.create_application(f"FeedbackBot{n}")
    for g in (a, b):
        g.members.setdefault(app.user.id, [])
    data.mkdir()  # noqa: ASYNC240 (test set-up)
    env = {
        "DATA_DIR": str(data),
        "DATASET_DIR": str(data),
        "MESSAGE_CONTENT_INTENT": "true",
        "COOLDOWN_USES": "1000",
        "MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "MAX_IMAGES_PER_MESSAGE": "4",
        "FEEDBACK_COOLDOWN_USES": "1000",
        **(extra_env or {}),
    }
    backend = CheckingBackend()
    running = await launch(world, app, env, backend=backend)
    servers = Servers(
        world,
        running,
        backend,
        env,
        a,
        b,
        a_chan,
        b_chan,
        admin_a,
        admin_b,
        member,
        other,
        a_secret,
        insiders,
        insider,
        trainers,
        trainer,
    )
    try:
        yield servers
    finally:
        await servers.bot.stop()
        # the simulator is shared by the session: bots started later need not load these
        for guild in (a, b):
            sim.guilds.pop(guild.id, None)
            for channel_id in guild.channels:
                sim.channels.pop(channel_id, None)
