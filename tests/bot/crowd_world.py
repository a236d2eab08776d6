"""Servers full of members on one bot, for the door's tests (``bot.core.admission``): many
requests at once from many members of several servers, a watched channel, an admin each.

``crowd(world, data_dir, env, backend=...)`` launches the real bot on the given backend
(``None``: the real local backend, which needs a model in ``data_dir``) and yields a
:class:`Crowd`; the servers are removed from the shared simulator afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from golem_backend import Backend
from tests.bot.harness import RunningBot, World, flower_bytes, launch
from tests.discord_sim import ADMINISTRATOR, Channel, Guild, Interaction, Message, User


@dataclass
class Server:
    guild: Guild
    general: Channel
    watched: Channel  # watched through AUTOCLASSIFY_CHANNEL_IDS
    admin: User
    members: list[User]
    _next: Iterator[User] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next = itertools.cycle(self.members)

    def member(self) -> User:
        """The next member, round-robin (fresh ones first)."""
        return next(self._next)

    @property
    def tenant(self) -> str:
        return f"guild:{self.guild.id}"


@dataclass
class Crowd:
    bot: RunningBot
    servers: list[Server]

    @property
    def sim(self):  # type: ignore[no-untyped-def]
        return self.bot.sim

    async def classify(self, server: Server, user: User | None = None, index: int = 0):
        """One /classify of a photo in ``server``'s #general (the next member by default)."""
        att = self.sim.upload(flower_bytes("tulip", index), f"c{index}.jpg")
        return await self.sim.slash(
            self.bot.app, server.general, user or server.member(), "classify", {"image": att}
        )

    async def post(self, server: Server, user: User | None = None, index: int = 0) -> Message:
        """A photo posted in ``server``'s watched channel."""
        att = self.sim.upload(flower_bytes("daisy", index), f"p{index}.jpg")
        return await self.sim.post_message(server.watched, user or server.member(), "", [att])

    async def replies(self, ixs: list[Interaction], timeout_s: float = 60.0) -> list[Message]:
        return list(
            await asyncio.gather(*(self.sim.wait_response(ix, timeout_s=timeout_s) for ix in ixs))
        )


_counter = itertools.count()


async def crowd(
    world: World,
    data_dir: Path,
    env: dict[str, str],
    *,
    backend: Backend | None,
    servers: int = 3,
    members: int = 20,
) -> AsyncIterator[Crowd]:
    sim = world.sim
    n = next(_counter)
    owner = sim.create_user(f"crowd-owner{n}")
    made = []
    for s in range(servers):
        guild = sim.create_guild(f"Crowd {n}-{s}", owner)
        admin = sim.create_user(f"crowd-admin{n}-{s}")
        sim.add_member(guild, admin, ADMINISTRATOR)
        people = []
        for m in range(members):
            user = sim.create_user(f"crowd{n}-{s}-{m}")
            sim.add_member(guild, user)
            people.append(user)
        general = sim.create_channel(guild, "general")
        watched = sim.create_channel(guild, "pics")
        made.append(Server(guild, general, watched, admin, people))
    app = sim.create_application(f"CrowdBot{n}")
    for server in made:
        server.guild.members.setdefault(app.user.id, [])
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (test set-up)
    full_env = {
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(data_dir),
        "MESSAGE_CONTENT_INTENT": "true",
        "AUTOCLASSIFY_CHANNEL_IDS": ",".join(str(s.watched.id) for s in made),
        **env,
    }
    running = await launch(world, app, full_env, backend=backend)
    try:
        yield Crowd(running, made)
    finally:
        if not running.bot.is_closed():
            await running.stop()
        for server in made:  # the simulator is shared: later bots need not load these
            sim.guilds.pop(server.guild.id, None)
            for channel_id in server.guild.channels:
                sim.channels.pop(channel_id, None)
