"""Golem service through the local exe-unit harness: provider-side cost per image.

Runs ClassifierService's real scripts (image uploads, the ``provider.serve client`` exec,
the reply download) with the real daemon on this machine, one instance:

* batches of 8 FLOWERS17 images: the provider-side time of each batch is the sum of the
  exe-unit's command times for its script; divided by 8 it is the amortised time per
  image (median over ``--runs``). Target: <= 50 ms, so Golem's own network round trip
  dominates.
* ``--requests`` single-image requests submitted at once: how many exec batches (client
  runs) the dispatcher needed, scaled to 100 images.

Usage: python -m bench.bench_golem_harness [--model M] [--runs 7] [--requests 100]
Without --model it uses var/models/current.model, else trains a small model first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import usable  # noqa: E402
from golem_backend.golem.backend import GolemBackend  # noqa: E402
from tests.golem_backend.harness import LocalRuntime  # noqa: E402
from tests.golem_backend.harness.helpers import (  # noqa: E402
    client_runs,
    golem_settings,
    install_model,
    make_backend,
    wait_running,
)

SHARED_FLOWERS = REPO.parent / "shared" / "datasets" / "flowers17"
PACKAGED_FLOWERS = REPO / "provider" / "data" / "flowers17"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def flower_images(limit: int) -> tuple[Path, list[bytes]]:
    root = SHARED_FLOWERS if SHARED_FLOWERS.is_dir() else PACKAGED_FLOWERS
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"no FLOWERS17 images under {root}")
    step = max(1, len(files) // limit)  # spread over the labels
    return root, [p.read_bytes() for p in files[::step][:limit]]


def small_model(root: Path, out_dir: Path) -> Path:
    """A quick model on 3 labels x 8 images (the provider-side cost is the CNN's anyway)."""
    from provider.train import train_model

    dataset = out_dir / "dataset"
    for label_dir in sorted(d for d in root.iterdir() if d.is_dir())[:3]:
        (dataset / label_dir.name).mkdir(parents=True)
        for file in sorted(label_dir.iterdir())[:8]:
            shutil.copy(file, dataset / label_dir.name / file.name)
    print("training a small model for the benchmark ...", flush=True)
    return Path(train_model(dataset, out_dir / "bench.model", folds=3).model_path)


def batch_times(runtime: LocalRuntime, scripts_before: int) -> tuple[float, float]:
    """Provider-side seconds (all commands, ``run`` commands) of the scripts executed since
    ``scripts_before``."""
    activity = runtime.activities[0]
    commands = sum(len(s) for s in activity.scripts[:scripts_before])
    timings = activity.timings[commands:]
    return sum(t for _, t in timings), sum(t for name, t in timings if name == "run")


def classifier_alone(model: Path, batches: list[list[bytes]]) -> float:
    """Reference: seconds per image of ``Classifier.classify_sources`` in this process."""
    from provider.model import Classifier

    clf = Classifier.load(model)
    clf.classify_sources(batches[0])  # warm-up
    times = []
    for batch in batches:
        started = time.perf_counter()
        clf.classify_sources(batch)
        times.append((time.perf_counter() - started) / len(batch))
    return statistics.median(times)


async def run(args: argparse.Namespace) -> None:
    root, images = flower_images(max(8 * args.runs + 8, args.requests))
    work = Path(tempfile.mkdtemp(prefix="bench-golem-"))
    try:
        model = args.model or REPO / "var" / "models" / "current.model"
        if not usable(model):
            model = small_model(root, work)
        settings = golem_settings(work / "data", golem_queue_size=max(64, args.requests))
        install_model(model, settings)
        backend, runtime = make_backend(settings)
        await backend.start()
        try:
            await wait_running(backend, 1, 120)
            await report(backend, runtime, images, args)
            batches = [images[8 * (i + 1) : 8 * (i + 2)] for i in range(args.runs)]
            alone = await asyncio.to_thread(classifier_alone, settings.model_path, batches)
            print(f"  classifier alone, in-process (reference) ms/image  {1000 * alone:10.1f}")
        finally:
            await backend.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"images from {root}")


async def report(
    backend: GolemBackend, runtime: LocalRuntime, images: list[bytes], args: argparse.Namespace
) -> None:
    await backend.classify(images[:8])  # warm-up
    per_image, exec_per_image, latency = [], [], []
    for i in range(args.runs):
        batch = images[8 * (i + 1) : 8 * (i + 2)]
        before = len(runtime.activities[0].scripts)
        started = time.perf_counter()
        await backend.classify(batch)
        latency.append(time.perf_counter() - started)
        assert len(runtime.activities[0].scripts) == before + 1, "one script per batch"
        total, execs = batch_times(runtime, before)
        per_image.append(total / len(batch))
        exec_per_image.append(execs / len(batch))

    runs_before = client_runs(runtime)
    started = time.perf_counter()
    await asyncio.gather(*(backend.classify([img]) for img in images[: args.requests]))
    burst = time.perf_counter() - started
    execs = client_runs(runtime) - runs_before

    rows = [
        (
            "provider-side ms/image, batches of 8 (median)",
            f"{1000 * statistics.median(per_image):.1f}",
        ),
        ("  min / max", f"{1000 * min(per_image):.1f} / {1000 * max(per_image):.1f}"),
        ("  of which the client exec (median)", f"{1000 * statistics.median(exec_per_image):.1f}"),
        (
            "requestor latency per batch of 8, ms (median)",
            f"{1000 * statistics.median(latency):.0f}",
        ),
        (f"exec batches for {args.requests} concurrent 1-image requests", str(execs)),
        ("exec batches per 100 images", f"{100 * execs / args.requests:.1f}"),
        (f"{args.requests} requests wall time, s", f"{burst:.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nGolem service via the local exe-unit harness ({args.runs} runs)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    target = statistics.median(per_image) <= 0.050
    print(f"  target <= 50 ms/image: {'met' if target else 'NOT met'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model artifact (default: a trained one)")
    parser.add_argument("--runs", type=int, default=7, help="batches of 8 to time")
    parser.add_argument("--requests", type=int, default=100, help="concurrent 1-image requests")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
