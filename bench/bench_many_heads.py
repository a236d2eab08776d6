"""Benchmark: the local backend serving many servers' models at once vs one model.

    python -m bench.bench_many_heads [--models 1000] [--active 200] [--requests 400] [--runs 3]

``--models`` heads are trained onto disk (each 2-5 random flower species x 10-20 random
photos of the packaged FLOWERS17 copy, from cached features: every head has its own
content and id). Then, alternating in each run so both see the same machine load:

* *single model*: ``--requests`` concurrent one-image requests all naming one head;
* *many models*: the same images, each request naming a random one of ``--active`` heads
  (and that head's server as tenant).

Reported (medians over ``--runs``): throughput of both, their ratio (target >= 90%),
p50/p95 latency of both, and the workers' head caches (heads kept, bytes, loads,
evictions) with the default ``HEAD_CACHE_MB``. Before the timed runs every active head is
asked once (the cold pass, reported too), so the runs measure the steady state.

    python -m bench.bench_many_heads --footprint 50

measures memory and size only (no timing): ``--footprint`` heads of servers that keep the
default labels (2-5 taught labels x 10-20 photos beside the packaged default dataset), each
trained twice, sharing the default dataset's open-set vectors (this release) and holding
them (as the previous release did); every head loaded into one unbounded head cache beside
the default model. Reported: file size per head, bytes per head in the cache, the shared
vectors held once, and the total for 1000 heads (per head x 1000 + the shared part).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golem_backend.base import ModelRef
from golem_backend.local.backend import LocalBackend
from golem_backend.settings import BackendSettings
from provider.results import Prediction
from provider.train import default_dataset

SEED = 8


def make_heads(out: Path, count: int, cache: Path) -> list[ModelRef]:
    """``count`` distinct heads trained from cached features (no cross-validation)."""
    from provider.dataset import DatasetItem
    from provider.train import train_model

    rng = random.Random(SEED)
    species = {
        d.name: sorted(d.glob("*.jpg"))[:40] for d in default_dataset().iterdir() if d.is_dir()
    }
    names = sorted(species)
    refs: list[ModelRef] = []
    started = time.perf_counter()
    for i in range(count):
        labels = rng.sample(names, rng.randint(2, 5))
        examples = [
            DatasetItem(path, label)
            for label in labels
            for path in rng.sample(species[label], rng.randint(10, 20))
        ]
        folder = out / f"guild-{i}"
        result = train_model(None, folder / "new.model", examples=examples, cache=cache, folds=0)
        path = folder / f"{result.model_id}.model"
        Path(result.model_path).rename(path)
        refs.append(ModelRef(result.model_id, path))
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} heads trained ({time.perf_counter() - started:.0f} s)")
    return refs


def footprint(count: int, cache: Path, work: Path) -> None:
    """Sizes of heads that keep the default labels, shared and held (see the docstring)."""
    from provider import shared_vectors
    from provider.dataset import DatasetItem
    from provider.heads import HeadCache, HeadKey
    from provider.model import Classifier
    from provider.train import train_model

    rng = random.Random(SEED)
    species = {d.name: sorted(d.glob("*.jpg")) for d in default_dataset().iterdir() if d.is_dir()}
    default = train_model(default_dataset(), work / "default.model", cache=cache, folds=0)
    for variant, base in (("shared (this release)", None), ("held (previous)", work / "none")):
        heads = []
        for i in range(count):
            labels = rng.sample(sorted(species), rng.randint(2, 5))
            examples = [
                DatasetItem(path, f"server-{label}")
                for label in labels
                for path in rng.sample(species[label], rng.randint(10, 20))
            ]
            out = work / f"{variant[:4]}-{i}.model"
            result = train_model(
                default_dataset(), out, examples=examples, cache=cache, folds=0, shared_base=base
            )
            heads.append(result)
        shared_vectors.clear()
        backbone = Classifier.load(default.model_path)
        heads_cache = HeadCache(1 << 40)
        for h in heads:
            heads_cache.get(HeadKey(h.model_id, str(h.model_path)))
        files = statistics.mean(Path(h.model_path).stat().st_size for h in heads) / 1e6
        per_head = heads_cache.bytes / len(heads) / 1e6
        key = default.metadata["ood"].get("provides")
        bank = shared_vectors.registered(key) if base is None and key else None
        once = bank.nbytes / 1e6 if bank is not None else 0.0
        print(
            f"{variant}: {count} heads, file {files:.2f} MB each, {per_head:.2f} MB each in "
            f"the head cache, shared vectors {once:.1f} MB once (held by the default model "
            f"{backbone.model_id}); 1000 heads: {per_head * 1000 + once:.0f} MB"
        )


def bench_images(count: int) -> list[bytes]:
    """Photos no head was trained on (files 40.. of each species), round robin."""
    per_label = [
        sorted(d.glob("*.jpg"))[40:] for d in sorted(default_dataset().iterdir()) if d.is_dir()
    ]
    return [
        per_label[i % len(per_label)][(i // len(per_label)) % 40].read_bytes() for i in range(count)
    ]


async def one(
    backend: LocalBackend, image: bytes, ref: ModelRef, tenant: str
) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        [outcome] = await backend.classify([image], model=ref, tenant=tenant)
    except Exception as exc:
        print(f"  request failed: {exc}")
        return time.perf_counter() - started, False
    ok = isinstance(outcome, Prediction) and outcome.model_id == ref.model_id
    return time.perf_counter() - started, ok


async def load(
    backend: LocalBackend, images: list[bytes], refs: list[ModelRef]
) -> tuple[float, float, float, int]:
    """Images/s, p50 and p95 latency (s) and failures of one concurrent pass."""
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            one(backend, img, ref, f"guild:{ref.model_id}")
            for img, ref in zip(images, refs, strict=True)
        )
    )
    elapsed = time.perf_counter() - started
    latencies = sorted(lat for lat, _ in results)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return (
        len(images) / elapsed,
        statistics.median(latencies),
        p95,
        sum(not ok for _, ok in results),
    )


async def bench(
    settings: BackendSettings, heads: list[ModelRef], args: argparse.Namespace
) -> dict[str, float]:
    rng = random.Random(SEED + 1)
    active = rng.sample(heads, args.active)
    images = bench_images(args.requests)
    async with LocalBackend(settings) as backend:
        single = [active[0]] * len(images)
        await load(backend, images[:32], single[:32])  # warm up the workers
        cold = await load(backend, images[: len(active)], active)  # every active head once
        print(f"cold pass over {len(active)} heads: {cold[0]:.1f} images/s")
        figures: dict[str, list[float]] = {
            k: [] for k in ("one", "many", "ratio", "p50_1", "p95_1", "p50_n", "p95_n")
        }
        failures = 0
        for run in range(args.runs):
            spread = [rng.choice(active) for _ in images]
            rate1, p50_1, p95_1, lost1 = await load(backend, images, single)
            rate_n, p50_n, p95_n, lost_n = await load(backend, images, spread)
            failures += lost1 + lost_n
            for key, value in zip(
                figures, (rate1, rate_n, rate_n / rate1, p50_1, p95_1, p50_n, p95_n), strict=True
            ):
                figures[key].append(value)
            print(f"  run {run + 1}: one model {rate1:.1f}/s, {args.active} models {rate_n:.1f}/s")
        caches = await backend.head_cache_stats()
    out = {key: statistics.median(values) for key, values in figures.items()}
    out["failures"] = failures
    out["cold_rate"] = cold[0]
    out["cache_heads"] = statistics.median(c["heads"] for c in caches)
    out["cache_mb"] = statistics.median(c["bytes"] for c in caches) / 2**20
    out["cache_max_mb"] = caches[0]["max_bytes"] / 2**20
    out["cache_loads"] = sum(c["loads"] for c in caches)
    out["cache_evictions"] = sum(c["evictions"] for c in caches)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--active", type=int, default=200)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--head-cache-mb", type=float, default=None)
    parser.add_argument("--footprint", type=int, default=0, help="sizes only, of N heads")
    args = parser.parse_args()
    if args.footprint:
        from bench.common import OUT

        OUT.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
            footprint(args.footprint, OUT / "fewshot-features.h5", Path(tmp))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-many-heads-") as tmp:
        work = Path(tmp)
        overrides = {} if args.head_cache_mb is None else {"head_cache_mb": args.head_cache_mb}
        settings = BackendSettings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=work / "data",
            local_workers=args.workers,
            queue_size=max(64, 2 * args.requests),
            request_timeout_s=300,
            **overrides,
        )
        # The default model's training (at the first start) extracts every photo's
        # features into the shared cache; the heads are then trained from it.
        asyncio.run(_start_stop(settings))
        print(f"training {args.models} heads ...")
        heads = make_heads(work / "guilds", args.models, settings.cache_path)
        size = sum(h.path.stat().st_size for h in heads) / 2**20
        print(f"{len(heads)} heads on disk, {size:.0f} MB")
        figures = asyncio.run(bench(settings, heads, args))
    print(
        f"local backend, {args.workers} worker(s), {args.requests} concurrent one-image requests, "
        f"median of {args.runs} runs:\n"
        f"  one model:  {figures['one']:.1f} images/s, "
        f"latency p50 {figures['p50_1'] * 1000:.0f} ms, p95 {figures['p95_1'] * 1000:.0f} ms\n"
        f"  {args.active} of {args.models} models: {figures['many']:.1f} images/s "
        f"({figures['ratio']:.0%} of one model; target >= 90%), "
        f"latency p50 {figures['p50_n'] * 1000:.0f} ms, p95 {figures['p95_n'] * 1000:.0f} ms\n"
        f"  cold pass (each active head loaded once): {figures['cold_rate']:.1f} images/s\n"
        f"  head cache per worker: {figures['cache_heads']:.0f} heads, "
        f"{figures['cache_mb']:.0f} MB of {figures['cache_max_mb']:.0f} MB; "
        f"{figures['cache_loads']:.0f} loads, "
        f"{figures['cache_evictions']:.0f} evictions in all\n"
        f"  failed or misanswered requests: {figures['failures']:.0f}"
    )
    return 0 if figures["failures"] == 0 else 1


async def _start_stop(settings: BackendSettings) -> None:
    async with LocalBackend(settings):
        pass


if __name__ == "__main__":
    sys.exit(main())
