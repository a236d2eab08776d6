"""How to run EfficientNet-Lite0 on this machine's cores: layouts and batch sizes, one run.

    python -m bench.bench_network [--rounds 6] [--images 64]

Compares, interleaved round by round so that the VM's changing speed hits every row alike:
two single-threaded networks in parallel threads (what ``cnn.NetworkPool`` does with
batches) against one network using every thread, each with 1, 2, 4 and 8 images per
forward pass. Figures are images per second (decoded images in; preprocessing, forward
pass and embedding included), medians over the rounds.
"""

from __future__ import annotations

import argparse
import time

import cv2

from bench.common import flowers_dir, median, table
from provider.dataset import scan_dataset
from provider.features import cnn
from provider.imageio import decode_image

BATCH_SIZES = (1, 2, 4, 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    items = scan_dataset(flowers_dir()).items[::7][: args.images]
    images = [decode_image(i.path, min_side=cnn.RESIZE_SHORTER) for i in items]
    cores = cnn.default_parallelism()
    parallel, single = cnn.NetworkPool(cores), cnn.NetworkPool(1)

    def run_parallel(bs: int) -> float:
        cv2.setNumThreads(1)
        t0 = time.perf_counter()
        parallel(images, batch_size=bs)
        return len(images) / (time.perf_counter() - t0)

    def run_single(bs: int) -> float:
        cv2.setNumThreads(cores)
        t0 = time.perf_counter()
        single(images, batch_size=bs)
        return len(images) / (time.perf_counter() - t0)

    layouts = {
        f"{cores} networks x 1 thread": run_parallel,
        f"1 network x {cores} threads": run_single,
    }
    rates: dict[tuple[str, int], list[float]] = {(n, b): [] for n in layouts for b in BATCH_SIZES}
    for name, bs in rates:  # warm-up
        layouts[name](bs)
    for r in range(args.rounds):
        for name, bs in rates:
            rates[(name, bs)].append(layouts[name](bs))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    cv2.setNumThreads(1)
    rows = [
        (name, str(bs), f"{median(v):.1f}", " ".join(f"{x:.0f}" for x in v))
        for (name, bs), v in rates.items()
    ]
    print(f"{len(images)} images, {args.rounds} rounds, default batch size {cnn.BATCH_SIZE}")
    print(table(rows, ("layout", "images per pass", "images/s (median)", "rounds")))
    best = max(rates, key=lambda k: median(rates[k]))
    print(f"fastest: {best[0]}, {best[1]} images per pass")


if __name__ == "__main__":
    main()
