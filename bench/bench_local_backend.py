"""Benchmark: the local backend under 200 concurrent one-image requests vs the raw classifier.

    python -m bench.bench_local_backend [--model M] [--workers 2] [--threads 0] [--runs 5]

Reports (medians over ``--runs``): the classifier's raw batch throughput measured in this
process (``Classifier.classify_sources`` on batches of ``--batch-size``), the backend's
throughput and latency for ``--concurrent`` concurrent ``classify([image])`` calls, their
ratio (target >= 0.80), and the latency of one request at a time. Without ``--model`` a
quick model is trained first from a few images per label (its accuracy is irrelevant here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golem_backend.base import BackendBusy, BackendTimeout, BackendUnavailable
from golem_backend.local.backend import LocalBackend
from golem_backend.processes import worker_threads
from golem_backend.settings import BackendSettings
from provider.results import Prediction

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "flowers17"


def pick_images(dataset: Path, count: int) -> list[bytes]:
    """``count`` photos spread over the labels (round robin)."""
    per_label = [sorted(d.glob("*.jpg")) for d in sorted(dataset.iterdir()) if d.is_dir()]
    picked: list[bytes] = []
    for i in range(count):
        files = per_label[i % len(per_label)]
        picked.append(files[(i // len(per_label)) % len(files)].read_bytes())
    return picked


def quick_model(dataset: Path, work: Path, per_label: int) -> Path:
    from provider.train import train_model

    subset = work / "subset"
    for label_dir in sorted(d for d in dataset.iterdir() if d.is_dir()):
        (subset / label_dir.name).mkdir(parents=True)
        for file in sorted(label_dir.glob("*.jpg"))[-per_label:]:  # not among the bench images
            shutil.copy(file, subset / label_dir.name / file.name)
    started = time.perf_counter()
    result = train_model(subset, work / "quick.model", folds=2)
    took = time.perf_counter() - started
    print(f"trained a quick model on {result.n_images} images in {took:.1f} s")
    return Path(result.model_path)


def raw_pass(classifier: object, images: list[bytes], batch_size: int) -> float:
    """Images per second of ``classify_sources`` in this process, on batches (one pass)."""
    started = time.perf_counter()
    for i in range(0, len(images), batch_size):
        outcomes = classifier.classify_sources(images[i : i + batch_size])  # type: ignore[attr-defined]
        assert all(isinstance(o, Prediction) for o in outcomes)
    return len(images) / (time.perf_counter() - started)


async def timed(backend: LocalBackend, image: bytes) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        outcome = (await backend.classify([image]))[0]
    except (BackendBusy, BackendTimeout, BackendUnavailable) as exc:
        print(f"  request failed: {exc}")
        return time.perf_counter() - started, False
    return time.perf_counter() - started, isinstance(outcome, Prediction)


async def bench(
    settings: BackendSettings, model: Path, images: list[bytes], runs: int
) -> dict[str, float | int]:
    """Alternate raw passes and backend passes, so both see the same machine load."""
    from provider.model import Classifier

    classifier = Classifier.load(model)
    batch_size = settings.local_batch_size
    raw_pass(classifier, images[: 2 * batch_size], batch_size)  # warm up
    async with LocalBackend(settings) as backend:
        await asyncio.gather(*(backend.classify([img]) for img in images[:8]))  # warm up
        raws, rates, ratios, p50s, p95s, lost = [], [], [], [], [], 0
        batches_before = backend.batches_dispatched
        for run in range(runs):
            raws.append(raw_pass(classifier, images, batch_size))  # workers idle meanwhile
            started = time.perf_counter()
            results = await asyncio.gather(*(timed(backend, img) for img in images))
            elapsed = time.perf_counter() - started
            latencies = sorted(lat for lat, _ in results)
            lost += sum(not ok for _, ok in results)
            rates.append(len(images) / elapsed)
            ratios.append(rates[-1] / raws[-1])
            p50s.append(statistics.median(latencies))
            p95s.append(latencies[int(0.95 * (len(latencies) - 1))])
            print(f"  run {run + 1}: raw {raws[-1]:.1f}/s, backend {rates[-1]:.1f}/s")
        batches = (backend.batches_dispatched - batches_before) / runs
        single = [(await timed(backend, img))[0] for img in images[:20]]
    return {
        "raw_batch_throughput": statistics.median(raws),
        "throughput": statistics.median(rates),
        "ratio": statistics.median(ratios),
        "latency_p50_s": statistics.median(p50s),
        "latency_p95_s": statistics.median(p95s),
        "lost": lost,
        "batches_per_run": batches,
        "single_latency_s": statistics.median(single),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: train a quick one)")
    parser.add_argument("--dataset", type=Path, default=FLOWERS, help="FLOWERS17 folder")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="per worker; 0 = auto")
    parser.add_argument(
        "--batch-size", type=int, default=BackendSettings.model_fields["local_batch_size"].default
    )
    parser.add_argument("--train-per-label", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    images = pick_images(args.dataset, args.concurrent)
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        work = Path(tmp)
        model = args.model or quick_model(args.dataset, work, args.train_per_label)
        settings = BackendSettings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=work / "data",
            local_workers=args.workers,
            local_worker_threads=args.threads,
            local_batch_size=args.batch_size,
            queue_size=max(64, args.concurrent),
            request_timeout_s=300,
        )
        settings.model_path.parent.mkdir(parents=True)
        shutil.copy(model, settings.model_path)
        figures = asyncio.run(bench(settings, model, images, args.runs))

    threads = worker_threads(args.workers, args.threads)
    raw = figures["raw_batch_throughput"]
    print(
        f"local backend, {args.workers} worker(s) x {threads} thread(s), "
        f"batch <= {args.batch_size}, "
        f"{args.concurrent} concurrent one-image requests, median of {args.runs} runs:\n"
        f"  raw classifier (in-process, batches of {args.batch_size}): {raw:.1f} images/s\n"
        f"  backend throughput: {figures['throughput']:.1f} images/s "
        f"({figures['ratio']:.0%} of raw; target >= 80%)\n"
        f"  latency under load: median {figures['latency_p50_s'] * 1000:.0f} ms, "
        f"p95 {figures['latency_p95_s'] * 1000:.0f} ms\n"
        f"  batches per run: {figures['batches_per_run']:.0f}; lost requests: {figures['lost']}\n"
        f"  one request at a time: median {figures['single_latency_s'] * 1000:.0f} ms"
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0 if figures["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
