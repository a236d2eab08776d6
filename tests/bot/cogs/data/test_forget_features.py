"""A forgotten image's features leave the shared feature cache (issue 19, item 3), end to
end: the real bot with the real local backend, /teach, a real /retrain (which caches the
features of every image it trained on in ``DATA_DIR/features.h5``), then /forget label:
the taught images' rows leave the HDF5 file; the rest of the cache stays."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import pytest
import pytest_asyncio

from provider.cache import TOMBSTONES
from tests.bot.conftest import main_env
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import (
    NEW_LABEL_SOURCE,
    RunningBot,
    World,
    data_dir_with_model,
    flower_bytes,
    launch,
)
from tests.bot.tenancy_world import poll
from tests.discord_sim import Message

pytestmark = pytest.mark.asyncio(loop_scope="session")


def cached(path: Path) -> set[str]:
    """Every digest with features in the cache file (all extractors' groups)."""
    with h5py.File(path, "r") as f:
        return {
            d.decode()
            for name, group in f.items()
            if name != TOMBSTONES and isinstance(group, h5py.Group) and "digests" in group
            for d in group["digests"][...]
        }


def cached_or_busy(path: Path) -> set[str] | None:
    try:
        return cached(path)
    except OSError:  # the eviction is rewriting it right now
        return None


@pytest_asyncio.fixture(loop_scope="session", params=ENGINES)
async def real_bot(
    world: World,
    tiny_model: Path,
    tiny_dataset: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[RunningBot]:
    app = world.sim.create_application(f"FeatureCacheBot-{request.param}")
    world.guild.members.setdefault(app.user.id, [])
    data_dir = data_dir_with_model(tmp_path_factory, tiny_model, "feature-cache-data")
    async with database_url(request.param, tmp_path) as url:
        env = {**main_env(world, data_dir, tiny_dataset), "DATABASE_URL": url}
        running = await launch(world, app, env)
        yield running
        await running.stop()


async def test_forget_label_removes_the_taught_images_from_the_feature_cache(
    real_bot: RunningBot,
):
    bot, w = real_bot, real_bot.world
    taught = []
    for i in range(3):
        data = flower_bytes(NEW_LABEL_SOURCE, i)
        att = w.sim.upload(data, f"b{i}.jpg")
        reply = await bot.reply(
            await bot.slash(w.admin, "teach images", label="bluebell", image=att)
        )
        assert "Learned **bluebell**" in reply.content, reply.content
        taught.append(hashlib.sha256(data).hexdigest())

    def finished(m: Message) -> bool:
        return bool(m.embeds) and m.embeds[0].get("title") == "Retraining finished"

    await bot.reply(await bot.slash(w.admin, "retrain"), predicate=finished, timeout_s=300)
    cache = bot.settings.cache_path
    before = cached(cache)
    assert set(taught) <= before, "the retrain cached the taught images' features"
    others = before - set(taught)
    assert others, "and those of the default dataset it trained on"

    reply = await bot.reply(await bot.slash(w.admin, "forget label", label="bluebell"))
    assert reply.content.startswith("Forgot 3 taught image(s)")
    await poll(lambda: (now := cached_or_busy(cache)) is not None and not set(taught) & now, 60)
    assert cached(cache) == others
    with h5py.File(cache, "r") as f:  # remembered as evicted: a running training skips them
        assert set(taught) <= {d.decode() for d in f[TOMBSTONES]["digests"][...]}
