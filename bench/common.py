"""Shared helpers for the benchmarks: dataset location, timing, tables."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# BENCH_SHARED: where shared/ is when it is not beside the checkout (e.g. a git worktree).
SHARED = Path(os.environ.get("BENCH_SHARED") or REPO.parent / "shared")
SHARED_FLOWERS = SHARED / "datasets" / "flowers17"
SHARED_ANIMALS = SHARED / "datasets" / "animals4"
OUT = REPO / "bench" / "out"


def flowers_dir() -> Path:
    """The full FLOWERS17 set when ../shared is present, else the compact shipped copy."""
    if SHARED_FLOWERS.is_dir():
        return SHARED_FLOWERS
    from provider.train import default_dataset

    print(f"note: {SHARED_FLOWERS} not found, using the compact copy")
    return default_dataset()


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` calls."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), "-|-".join("-" * w for w in widths)]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def usable(model: Path) -> bool:
    """A saved model file this version can load (not one of features it no longer makes:
    a benchmark retrains those instead of failing on them)."""
    from golem_backend import model_incompatibility

    return model.is_file() and model_incompatibility(model) is None
