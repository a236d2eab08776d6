"""The harness of the bot's end-to-end tests: settings from env, launching a bot, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.core.client import ClassifierBot, configure_endpoints
from bot.core.settings import Settings
from bot.core.sharding import create_bot
from bot.db import Store, TaughtRecord
from golem_backend import Backend
from tests.bot.fakes import ScriptedBackend
from tests.discord_sim import (
    Application,
    Channel,
    DiscordSimulator,
    Guild,
    Interaction,
    Message,
    User,
)

ROOT = Path(__file__).resolve().parents[2]
FLOWERS = ROOT / "provider" / "data" / "flowers17"
TINY_LABELS = ("daisy", "sunflower", "tulip")
PER_LABEL = 8
NEW_LABEL_SOURCE = "bluebell"  # taught as a new label by the /teach + /retrain test


def settings_from_env(env: dict[str, str]) -> Settings:
    """Build ``Settings`` exactly as ``python -m bot`` does, from these variables only."""
    names = {name.upper() for name in Settings.model_fields}
    saved = {k: os.environ[k] for k in list(os.environ) if k.upper() in names}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        return Settings(_env_file=None)  # type: ignore[call-arg]
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


@dataclass
class World:
    sim: DiscordSimulator
    guild: Guild
    general: Channel
    watched: Channel  # watched through AUTOCLASSIFY_CHANNEL_IDS
    other: Channel  # not watched
    muted: Channel  # the bots may not send messages here
    owner: User
    admin: User  # has a role with ADMINISTRATOR
    alice: User  # plain member
    carol: User  # plain member listed in ADMIN_USER_IDS
    apps: dict[str, Application]

    def new_member(self, name: str, permissions: int = 0) -> User:
        user = self.sim.create_user(name)
        self.sim.add_member(self.guild, user, permissions)
        return user


@dataclass
class RunningBot:
    app: Application
    bot: ClassifierBot
    task: asyncio.Task[None]
    settings: Settings
    world: World

    @property
    def sim(self) -> DiscordSimulator:
        return self.world.sim

    async def slash(
        self, user: User, name: str, channel: Channel | None = None, **options: Any
    ) -> Interaction:
        return await self.sim.slash(self.app, channel or self.world.general, user, name, options)

    async def menu(
        self, user: User, target: Message, channel: Channel | None = None
    ) -> Interaction:
        return await self.sim.message_command(
            self.app, channel or self.world.general, user, "Classify image", target
        )

    async def reply(self, ix: Interaction, **kw: Any) -> Message:
        return await self.sim.wait_response(ix, **kw)

    async def stop(self) -> None:
        await self.bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30)


async def launch(
    world: World,
    app: Application,
    env: dict[str, str],
    backend: Backend | None = None,
    *,
    wait_synced: bool = True,
) -> RunningBot:
    settings = settings_from_env({**world.sim.bot_env(app), **env})
    configure_endpoints(settings)
    bot = create_bot(settings, backend=backend)
    task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
    connected = asyncio.create_task(
        world.sim.wait_connected(app, timeout_s=180, synced=wait_synced)
    )
    done, _ = await asyncio.wait({task, connected}, return_when=asyncio.FIRST_COMPLETED)
    if connected not in done:
        connected.cancel()
        await bot.close()
        task.result()  # raises what stopped the bot
        raise RuntimeError("the bot stopped before connecting")
    return RunningBot(app, bot, task, settings, world)


async def launch_scripted(
    world: World,
    name: str,
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    app: Application | None = None,
    wait_synced: bool = True,
) -> tuple[RunningBot, ScriptedBackend]:
    """The real bot on a :class:`ScriptedBackend`, as a new application ``name`` (or
    ``app``, e.g. to restart a bot whose commands are registered already)."""
    app = app or world.sim.create_application(name)
    world.guild.members.setdefault(app.user.id, [])
    backend = ScriptedBackend()
    base_env = {
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(data_dir),
        "DEV_GUILD_ID": str(world.guild.id),
        "MESSAGE_CONTENT_INTENT": "true",
    }
    running = await launch(
        world, app, {**base_env, **(env or {})}, backend=backend, wait_synced=wait_synced
    )
    return running, backend


# --- the database --------------------------------------------------------------------
async def stored_taught(settings: Settings, guild_id: int) -> list[TaughtRecord]:
    """The taught images recorded for ``guild_id``, read through a fresh connection."""
    store = Store(settings.database_url_value, settings.data_dir)
    await store.open()
    try:
        return await store.guild(guild_id).taught()
    finally:
        await store.close()


# --- images ------------------------------------------------------------------------------
async def taught(bot: RunningBot) -> list[TaughtRecord]:
    """The taught images of the world's server, read through the running bot's store."""
    return await bot.bot.store.guild(bot.world.guild.id).taught()


def images_dir(bot: RunningBot) -> Path:
    """Where the running bot keeps the world's server's taught images."""
    return bot.settings.data_dir / "guilds" / str(bot.world.guild.id) / "images"


def flower_bytes(label: str, index: int = 0) -> bytes:
    files = sorted((FLOWERS / label).glob("*.jpg"))
    return files[index % len(files)].read_bytes()


def png_bytes(size: tuple[int, int] = (64, 64), colour: str = "red", mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def data_dir_with_model(tmp_path_factory: Any, model: Path, name: str) -> Path:
    data_dir = tmp_path_factory.mktemp(name)
    (data_dir / "models").mkdir()
    shutil.copyfile(model, data_dir / "models" / "current.model")
    return data_dir
