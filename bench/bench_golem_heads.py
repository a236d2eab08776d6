"""Golem harness: many servers' heads over a few instances (the real ClassifierService
scripts, the real provider daemon and client on this machine).

    python -m bench.bench_golem_heads [--heads 20] [--instances 2] [--rounds 5]

``--heads`` heads (2-4 random flower species x 8 photos each, from the packaged FLOWERS17)
and ``--rounds`` rounds in which every head gets one request, all at once, with the default
model's requests mixed in. Checked and reported: every answer came from the head its
request named (model id, and labels within that head's labels), how many times each head
was uploaded to each instance (target: at most once per instance while cached), batches
run, and the time per round.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from golem_backend.base import ModelRef  # noqa: E402
from provider.results import Prediction  # noqa: E402
from provider.train import default_dataset  # noqa: E402
from tests.golem_backend.harness.helpers import (  # noqa: E402
    client_runs,
    golem_settings,
    install_model,
    make_backend,
    wait_running,
)

SEED = 20


def train_heads(work: Path, count: int) -> tuple[Path, list[tuple[ModelRef, tuple[str, ...]]]]:
    from provider.dataset import DatasetItem
    from provider.train import train_model

    rng = random.Random(SEED)
    species = {d.name: sorted(d.glob("*.jpg")) for d in default_dataset().iterdir() if d.is_dir()}
    names = sorted(species)
    cache = work / "features.h5"
    default_items = [DatasetItem(p, n) for n in names[:3] for p in species[n][:8]]
    default = train_model(None, work / "default.model", examples=default_items, cache=cache)
    heads = []
    for i in range(count):
        labels = rng.sample(names, rng.randint(2, 4))
        items = [DatasetItem(p, lb) for lb in labels for p in rng.sample(species[lb][:40], 8)]
        result = train_model(None, work / f"g{i}" / "new.model", examples=items, cache=cache)
        path = work / f"g{i}" / f"{result.model_id}.model"
        Path(result.model_path).rename(path)
        heads.append((ModelRef(result.model_id, path), tuple(result.labels)))
    return Path(default.model_path), heads


async def bench(work: Path, args: argparse.Namespace) -> dict[str, float]:
    default_path, heads = train_heads(work, args.heads)
    species = {d.name: sorted(d.glob("*.jpg")) for d in default_dataset().iterdir() if d.is_dir()}
    settings = golem_settings(
        work / "data", golem_instances=args.instances, golem_batch_size=8, request_timeout_s=120
    )
    install_model(default_path, settings)
    backend, runtime = make_backend(settings)
    await backend.start()
    try:
        await wait_running(backend, args.instances, within_s=120)
        status = await backend.status()
        rng = random.Random(SEED + 1)
        wrong = 0
        rounds: list[float] = []
        requests = 0
        for _ in range(args.rounds):
            jobs: list[tuple[ModelRef | None, tuple[str, ...]]] = [*heads, (None, status.labels)]
            jobs += [(None, status.labels)] * 3
            rng.shuffle(jobs)
            images = [
                species[rng.choice(labels)][rng.randint(40, 79)].read_bytes() for _, labels in jobs
            ]
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(
                    backend.classify([img], model=ref, tenant=f"guild:{i}")
                    for i, ((ref, _), img) in enumerate(zip(jobs, images, strict=True))
                )
            )
            rounds.append(time.perf_counter() - started)
            for (ref, labels), [outcome] in zip(jobs, answers, strict=True):
                requests += 1
                want = ref.model_id if ref is not None else status.model_id
                ok = (
                    isinstance(outcome, Prediction)
                    and outcome.model_id == want
                    and {s.label for s in outcome.top} <= set(labels)
                )
                wrong += not ok
        assert backend._dispatcher is not None
        per_instance = [dict(w.service.heads.uploads) for w in backend._dispatcher.pool.workers]
        batches = client_runs(runtime)
    finally:
        await backend.stop()
    counts = [n for uploads in per_instance for n in uploads.values()]
    for i, uploads in enumerate(per_instance):
        print(f"  instance {i + 1}: {len(uploads)} heads uploaded, {sum(uploads.values())} uploads")
    return {
        "requests": requests,
        "wrong": wrong,
        "max_uploads_per_instance": max(counts, default=0),
        "uploads": sum(counts),
        "heads_seen": len({m for u in per_instance for m in u}),
        "batches": batches,
        "round_s": statistics.median(rounds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--heads", type=int, default=20)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-golem-heads-") as tmp:
        f = asyncio.run(bench(Path(tmp), args))
    print(
        f"Golem harness, {args.heads} heads over {args.instances} instances, "
        f"{args.rounds} rounds:\n"
        f"  requests: {f['requests']:.0f}, answered by another head or wrongly: {f['wrong']:.0f}\n"
        f"  head uploads: {f['uploads']:.0f} for {f['heads_seen']:.0f} heads; at most "
        f"{f['max_uploads_per_instance']:.0f} per head and instance (target: 1)\n"
        f"  batches (client runs, start-up pings excluded): {f['batches']:.0f}; "
        f"median round {f['round_s']:.2f} s"
    )
    return 0 if f["wrong"] == 0 and f["max_uploads_per_instance"] <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
