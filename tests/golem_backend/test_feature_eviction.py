"""A forgotten image's features leave the shared feature cache (issue 19): the real HDF5
file rewritten without them, a training that was running does not add them back, the
eviction runs in a child process (the bot never loads h5py) and waits out a writer, and
the store evicts after every forget that removes taught images, again at the next start
if the cache could not be changed."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytest_asyncio

from bot.db import Store
from bot.db.repair import check_at_start
from golem_backend.feature_cache import (
    CacheEvictionFailed,
    cache_evictor,
    evict_cached_features,
)
from provider.cache import TOMBSTONES, FeatureCache, evict
from tests.bot.databases import ENGINES, database_url
from tests.bot.harness import flower_bytes

KEY, OTHER = "cnn@test", "global@test"
ROOT = Path(__file__).resolve().parents[2]
A = 111_111_111_111


def rows(digests: list[str], dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(digests), dim)).astype(np.float32)


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def cached(path: Path, key: str = KEY) -> set[str]:
    with h5py.File(path, "r") as f:
        return {d.decode() for d in f[key]["digests"][...]} if key in f else set()


def test_evict_removes_the_rows_from_every_extractor_and_from_the_file(tmp_path: Path):
    path = tmp_path / "features.h5"
    digests = [sha(f"img{i}") for i in range(5)]
    feats = rows(digests)
    FeatureCache(path, KEY, 8).add(digests, feats)
    FeatureCache(path, OTHER, 4).add(digests, feats[:, :4])
    forgotten = digests[1]
    assert evict(path, [forgotten, sha("never cached")]) == 2  # one row in each group
    assert cached(path) == set(digests) - {forgotten}
    assert cached(path, OTHER) == set(digests) - {forgotten}
    cache = FeatureCache(path, KEY, 8)
    assert forgotten not in cache and len(cache) == 4
    np.testing.assert_array_equal(cache.get(digests[2]), feats[2])
    raw = path.read_bytes()  # no freed block of the file keeps them
    assert feats[1].tobytes() not in raw and feats[2].tobytes() in raw
    assert forgotten.encode() in raw  # only as a tombstone:
    with h5py.File(path, "r") as f:
        assert forgotten.encode() in set(f[TOMBSTONES]["digests"][...])


def test_a_training_running_during_the_eviction_does_not_add_them_back(tmp_path: Path):
    path = tmp_path / "features.h5"
    digests = [sha(f"img{i}") for i in range(3)]
    FeatureCache(path, KEY, 8).add(digests[:1], rows(digests[:1]))
    running = FeatureCache(path, KEY, 8)  # a training opened the cache ...
    evict(path, [digests[1]])  # ... the image is forgotten ...
    running.add(digests[1:], rows(digests[1:]))  # ... and the training saves its rows
    assert cached(path) == {digests[0], digests[2]}
    later = FeatureCache(path, KEY, 8)  # taught again afterwards: cached again
    later.add(digests[1:2], rows(digests[1:2]))
    assert digests[1] in cached(path)


def test_evicting_from_a_missing_cache_leaves_only_tombstones(tmp_path: Path):
    path = tmp_path / "features.h5"
    running = FeatureCache(path, KEY, 8)  # a training that has not saved yet
    assert evict(path, [sha("x")]) == 0
    running.add([sha("x"), sha("y")], rows([sha("x"), sha("y")]))
    assert cached(path) == {sha("y")}


async def test_the_eviction_runs_in_a_child_process_and_waits_for_a_writer(tmp_path: Path):
    path = tmp_path / "features.h5"
    digests = [sha(f"img{i}") for i in range(4)]
    FeatureCache(path, KEY, 8).add(digests, rows(digests))
    holder = await asyncio.create_subprocess_exec(  # holds the file open for writing
        sys.executable,
        "-c",
        "import h5py, sys, time\n"
        f"f = h5py.File({str(path)!r}, 'a')\n"
        "print('open', flush=True)\n"
        "time.sleep(2)\n"
        "f.close()\n",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert (await holder.stdout.readline()).strip() == b"open"
        assert await evict_cached_features(path, digests[:2]) == 2
        assert holder.returncode is None or holder.returncode == 0
    finally:
        await asyncio.wait_for(holder.wait(), 10)
    assert cached(path) == set(digests[2:])
    with pytest.raises(ValueError, match="not sha256"):
        await evict_cached_features(path, ["../../etc/passwd"])
    path.write_bytes(b"not a cache at all")
    with pytest.raises(CacheEvictionFailed, match="not a feature cache"):
        await evict_cached_features(path, digests[2:])
    assert path.read_bytes() == b"not a cache at all"  # left unchanged


@pytest_asyncio.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with database_url(request.param, tmp_path) as url:
        s = Store(url, tmp_path / "data")
        s.evict_features = cache_evictor(tmp_path / "data" / "features.h5")
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def taught_and_cached(store: Store, label: str, n: int) -> list[str]:
    """Teach ``n`` images and cache their features as a retrain would."""
    digests = []
    for i in range(n):
        data = flower_bytes("daisy", i) + label.encode()
        await store.guild(A).add_taught(label, data, "jpg", user_id=7, user_name="ann")
        digests.append(hashlib.sha256(data).hexdigest())
    cache_path = store.data_dir / "features.h5"
    await asyncio.to_thread(FeatureCache(cache_path, KEY, 8).add, digests, rows(digests))
    return digests


async def test_forgetting_evicts_the_images_features(store: Store):
    cache_path = store.data_dir / "features.h5"
    daisies = await taught_and_cached(store, "daisy", 2)
    roses = await taught_and_cached(store, "rose", 2)
    await store.guild(A).forget_label("daisy")
    await store.removals.evictions_done()  # in the background: the forget did not wait
    assert cached(cache_path) == set(roses)
    await store.guild(A).forget_all()
    await store.removals.evictions_done()
    assert cached(cache_path) == set()
    assert not set(daisies) & cached(cache_path)


async def test_an_eviction_that_failed_is_done_at_the_next_start(store: Store):
    cache_path = store.data_dir / "features.h5"
    digests = await taught_and_cached(store, "daisy", 2)

    async def busy(digests: list[str]) -> None:
        raise CacheEvictionFailed("in use")

    store.evict_features = busy
    await store.guild(A).forget_user(7)
    await store.removals.evictions_done()
    assert cached(cache_path) == set(digests)  # still there: pending
    store.evict_features = cache_evictor(cache_path)
    report = await check_at_start(store, grace_s=0)
    assert report.removals.features == 2
    assert cached(cache_path) == set()


async def test_a_forget_does_not_wait_for_the_eviction(store: Store):
    """A forget answers its user (a Discord interaction has 3 s) while the child process
    evicts; closing the store lets a running eviction finish."""
    await taught_and_cached(store, "daisy", 1)
    started, release = asyncio.Event(), asyncio.Event()
    evicted: list[list[str]] = []

    async def slow(digests: list[str]) -> None:
        started.set()
        await release.wait()
        evicted.append(digests)

    store.evict_features = slow
    await asyncio.wait_for(store.guild(A).forget_label("daisy"), 5)
    await asyncio.wait_for(started.wait(), 5)
    assert evicted == []
    release.set()
    await store.close()  # waits for it
    assert len(evicted) == 1 and len(evicted[0]) == 1
