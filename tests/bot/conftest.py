"""Fixtures for the bot's end-to-end tests: a Discord simulator and real bots connected to it.

Each bot is the real ``ClassifierBot`` with its real ``Settings`` (read from environment
variables), real cogs, and the real ``LocalBackend`` serving a small model that is trained
once per session on 3 labels x 8 images of the shipped FLOWERS17 copy.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bot.harness import (  # noqa: E402
    FLOWERS,
    PER_LABEL,
    TINY_LABELS,
    RunningBot,
    World,
    data_dir_with_model,
    launch,
)
from tests.bot.tenancy_world import Servers, two_servers  # noqa: E402
from tests.discord_sim import ADMINISTRATOR, SEND_MESSAGES, DiscordSimulator  # noqa: E402


# --- the small real model ------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-dataset")
    for label in TINY_LABELS:
        (root / label).mkdir()
        for f in sorted((FLOWERS / label).glob("*.jpg"))[:PER_LABEL]:
            shutil.copyfile(f, root / label / f.name)
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model trained once for the whole session (``provider.train.train_model``)."""
    from provider.train import train_model

    out = tmp_path_factory.mktemp("tiny-model") / "current.model"
    return Path(train_model(tiny_dataset, out, folds=2).model_path)


# --- the simulated Discord --------------------------------------------------------------
@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world() -> AsyncIterator[World]:
    sim = DiscordSimulator()
    await sim.start()
    apps = {
        "main": sim.create_application("Classifier"),
        "strict": sim.create_application("StrictClassifier"),
    }
    owner = sim.create_user("owner")
    guild = sim.create_guild("Test server", owner)
    general = sim.create_channel(guild, "general")
    watched = sim.create_channel(guild, "flowers")
    other = sim.create_channel(guild, "off-topic")
    muted = sim.create_channel(
        guild, "announcements", overwrites={guild.everyone.id: (0, SEND_MESSAGES)}
    )
    admin, alice, carol = (sim.create_user(n) for n in ("admin", "alice", "carol"))
    sim.add_member(guild, admin, ADMINISTRATOR)
    sim.add_member(guild, alice)
    sim.add_member(guild, carol)
    yield World(sim, guild, general, watched, other, muted, owner, admin, alice, carol, apps)
    await sim.stop()


@pytest.fixture(autouse=True)
def _rest_calls_match_discord_spec(request: pytest.FixtureRequest) -> object:
    """Every test using the shared simulator fails if the bot made a REST call that
    Discord's OpenAPI spec refuses (a route it lacks, a body its schema rejects)."""
    if "world" not in request.fixturenames:
        yield
        return
    sim: DiscordSimulator = request.getfixturevalue("world").sim
    before = len(sim.spec_violations)
    yield
    sim.assert_spec_clean(since=before)


def main_env(world: World, data_dir: Path, dataset: Path) -> dict[str, str]:
    return {
        "DATA_DIR": str(data_dir),
        "DATASET_DIR": str(dataset),
        "LOCAL_WORKERS": "1",
        "MESSAGE_CONTENT_INTENT": "true",
        "DEV_GUILD_ID": str(world.guild.id),
        "ADMIN_USER_IDS": f"{world.carol.id}",
        "AUTOCLASSIFY_CHANNEL_IDS": str(world.watched.id),
        "COOLDOWN_USES": "1000",
        "MAX_IMAGE_BYTES": str(1024 * 1024),
        "MAX_IMAGES_PER_MESSAGE": "4",
        "PROGRESS_INTERVAL_S": "0.2",
        "LOG_LEVEL": "DEBUG",
    }


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def main_bot(
    world: World,
    tiny_model: Path,
    tiny_dataset: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningBot]:
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "main-data")
    running = await launch(world, world.apps["main"], main_env(world, data_dir, tiny_dataset))
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def servers(
    world: World, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Servers]:
    """Two servers on a new bot (``tests/bot/tenancy_world.py``); parametrize it indirectly
    with a dict of extra settings."""
    async for s in two_servers(world, tmp_path, getattr(request, "param", {})):
        yield s
