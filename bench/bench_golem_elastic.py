"""Elastic Golem instances under a load ramp, through the local exe-unit harness.

Real ClassifierService scripts, yapapi's ServiceRunner, the real provider daemon; offers
from the harness market (4 providers at 0.1 GLM per CPU-hour, 0.05 GLM per hour, 0.01 GLM
per start, the default caps), billed on the real clock. The load is a number of one-image
requests kept outstanding: low, then high, then low, then none. Scaling thresholds are
shortened so the ramp fits in about two minutes (up after 5 s of >= 4 waiting, down after
10 s without requests, 1-3 instances).

Prints the instances over time, every scaling decision, the queue wait (submit -> sent to
an instance) p95 per phase, and the cost per 1000 images at harness prices.

Usage: python -m bench.bench_golem_elastic [--model M] [--high 24] [--high-s 45]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_golem_harness import flower_images, small_model  # noqa: E402
from bench.common import usable  # noqa: E402
from golem_backend.golem.backend import GolemBackend  # noqa: E402
from tests.golem_backend.harness.helpers import (  # noqa: E402
    golem_settings,
    install_model,
    make_backend,
    wait_running,
)
from tests.golem_backend.harness.market import HarnessMarket, Offer  # noqa: E402

OFFERS = [Offer(f"provider-{i}", f"0x{i:040x}", 0.1, 0.05, 0.01) for i in range(1, 5)]


class Ramp:
    """Keeps ``outstanding`` one-image requests in the backend; counts answers."""

    def __init__(self, backend: GolemBackend, images: list[bytes]) -> None:
        self.backend, self.images = backend, images
        self.outstanding = 0
        self.answered = self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._next = 0

    async def _one(self, image: bytes) -> None:
        try:
            await self.backend.classify([image])
            self.answered += 1
        except Exception as exc:
            self.failed += 1
            print(f"  request failed: {exc}", flush=True)

    def top_up(self) -> None:
        while len(self._tasks) < self.outstanding:
            image = self.images[self._next % len(self.images)]
            self._next += 1
            task = asyncio.create_task(self._one(image))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks)


def p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=20)[-1]


async def run(model: Path, images: list[bytes], high: int, high_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = golem_settings(
            Path(tmp),
            golem_min_instances=1,
            golem_max_instances=3,
            golem_batch_size=4,
            golem_scale_up_wait_s=600,
            golem_scale_up_depth=4,
            golem_scale_up_after_s=5,
            golem_scale_down_idle_s=10,
            golem_queue_size=500,
            request_timeout_s=300,
        )
        install_model(model, settings)
        market = HarnessMarket(OFFERS)
        backend, runtime = make_backend(settings, market=market, scale_interval_s=0.25)
        await backend.start()
        await wait_running(backend, 1, within_s=120)
        dispatcher = backend._dispatcher
        assert dispatcher is not None
        ramp = Ramp(backend, images)
        phases = [("low", 2, 15.0), ("high", high, high_s), ("low", 2, 15.0), ("idle", 0, 35.0)]
        t0 = time.monotonic()
        waits_by_phase: dict[str, list[float]] = {}
        print(" time  phase  load  running/target  queue  GLM spent", flush=True)
        for name, load, seconds in phases:
            ramp.outstanding = load
            end = time.monotonic() + seconds
            seen = len(dispatcher.queue_waits)
            last_print = 0.0
            while time.monotonic() < end:
                ramp.top_up()
                now = time.monotonic() - t0
                if now - last_print >= 3:
                    last_print = now
                    status = await backend.status()
                    running = sum(1 for i in status.instances if i.state == "running")
                    print(
                        f"{now:5.0f}  {name:5}  {load:4}  {running:7}/{dispatcher.pool.target:<6}"
                        f"  {status.queue_depth:5}  {runtime.ledger.total:.5f}",
                        flush=True,
                    )
                await asyncio.sleep(0.05)
            key = f"{name}@{len(waits_by_phase)}"
            waits_by_phase[key] = list(dispatcher.queue_waits)[seen:]
        await ramp.drain()
        status = await backend.status()
        await backend.stop()

    print("\nscaling decisions:")
    for d in status.scaling:
        print(f"  +{d.at:6.1f} s  {d.action:5} -> {d.instances}: {d.reason}")
    print("\nqueue wait (submit -> sent to an instance), p95 per phase:")
    for key, waits in waits_by_phase.items():
        print(f"  {key:8} {len(waits):5} requests  p95 {p95(waits):6.2f} s")
    all_waits = [w for waits in waits_by_phase.values() for w in waits]
    costs = status.costs
    assert costs is not None
    per_1000 = costs.glm_per_1000_images or 0.0
    print(
        f"\nanswered {ramp.answered}, failed {ramp.failed}; overall queue wait p95 "
        f"{p95(all_waits):.2f} s; agreements {len(market.signed)}; "
        f"GLM {costs.spent_glm:.5f} for {costs.images} images = {per_1000:.5f} GLM per 1000 "
        f"images at harness prices"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "var" / "models" / "current.model")
    parser.add_argument("--high", type=int, default=24, help="outstanding requests at peak")
    parser.add_argument("--high-s", type=float, default=45.0, help="seconds of peak load")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root, images = flower_images(60)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model if usable(args.model) else small_model(root, Path(tmp))
        asyncio.run(run(model, images, args.high, args.high_s))


if __name__ == "__main__":
    main()
