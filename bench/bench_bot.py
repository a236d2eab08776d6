"""Benchmark the bot end to end: simulated Discord -> real bot -> real local backend.

    python -m bench.bench_bot [--model PATH] [--runs 40] [--burst 100]

Measures, for one image per /classify: the time from the gateway event (INTERACTION_CREATE
sent) to the bot's first response (the answer itself when it is quick, else "thinking")
and to its answer (p50/p95): *sent* is when the answer's request reached the simulator,
*accepted* when the simulator had checked it (against Discord's OpenAPI spec, about 2-3 ms
of the simulator's own work in this process) and made the message; then sends ``--burst``
/classify interactions at once (distinct users) and checks that every one is answered
(a result, or refused at the door with the expected wait), none lost, and that the bot
still answers afterwards. Target (issue 10): event -> answer (sent) p50 <= 15 ms. The
bursts of issue 20 (and the previous admission beside the door) are
``bench/bench_burst.py``'s.

Without ``--model`` a small model (3 labels x 8 images of the shipped FLOWERS17 copy) is
trained once into bench/out/ and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import usable  # noqa: E402
from bot.core.client import ClassifierBot, configure_endpoints  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from tests.discord_sim import DiscordSimulator, Interaction, Message  # noqa: E402
from tests.discord_sim.model import LOADING  # noqa: E402

FLOWERS = ROOT / "provider" / "data" / "flowers17"
OUT = ROOT / "bench" / "out"
TARGET_P50_S = 0.015  # gateway event -> answer, one image (issue 10)
REFUSED = re.compile(r"I'm busy: about \d+ s of images are waiting")  # the door's refusals


def tiny_model() -> Path:
    model = OUT / "tiny.model"
    if usable(model):
        return model
    from provider.train import train_model

    dataset = OUT / "tiny-dataset"
    for label in ("daisy", "sunflower", "tulip"):
        (dataset / label).mkdir(parents=True, exist_ok=True)
        for f in sorted((FLOWERS / label).glob("*.jpg"))[:8]:
            shutil.copyfile(f, dataset / label / f.name)
    print("training a small model for the benchmark...", flush=True)
    train_model(dataset, model, folds=2)
    return model


def answered_at(msg: Message) -> float:
    return next(t for t, _, _, flags in msg.history if not flags & LOADING)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    sim = DiscordSimulator()
    await sim.start()
    app = sim.create_application("BenchBot")
    owner = sim.create_user("owner")
    guild = sim.create_guild("Bench", owner)
    channel = sim.create_channel(guild, "bench")
    data_dir = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    (data_dir / "models").mkdir()
    shutil.copyfile(args.model or tiny_model(), data_dir / "models" / "current.model")
    os.environ.update(
        {
            **sim.bot_env(app),
            "DATA_DIR": str(data_dir),
            "DEV_GUILD_ID": str(guild.id),
            "LOG_LEVEL": "WARNING",
        }
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    configure_endpoints(settings)
    bot = ClassifierBot(settings)
    task = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
    await sim.wait_connected(app, timeout_s=300)
    image = sorted((FLOWERS / "daisy").glob("*.jpg"))[-1].read_bytes()
    users = iter(sim.create_user(f"user{i}") for i in range(100_000))

    async def classify(user_name: str | None = None) -> Interaction:
        user = next(users)
        sim.add_member(guild, user)
        att = sim.upload(image, "bench.jpg", content_type="image/jpeg")
        return await sim.slash(app, channel, user, "classify", {"image": att})

    try:
        for _ in range(3):  # warm-up
            await sim.wait_response(await classify(), timeout_s=60)
        acks, answers, sent = [], [], []
        for _ in range(args.runs):
            ix = await classify()
            msg = await sim.wait_response(ix, timeout_s=60)
            assert msg.embeds and "%" in msg.embeds[0]["title"], msg.text
            acks.append((ix.responded_at or 0) - ix.created)
            answers.append(answered_at(msg) - ix.created)
            quick = msg.history[0][3] & LOADING == 0  # the response was the answer itself
            reached = ix.response_received_at if quick else None
            sent.append((reached or answered_at(msg)) - ix.created)

        t0 = time.monotonic()
        burst = [await classify() for _ in range(args.burst)]
        replies = await asyncio.gather(
            *(sim.wait_response(ix, timeout_s=120) for ix in burst), return_exceptions=True
        )
        burst_s = time.monotonic() - t0
        lost = [r for r in replies if isinstance(r, BaseException)]
        ok = [r for r in replies if isinstance(r, Message) and r.embeds]
        busy = [r for r in replies if isinstance(r, Message) and REFUSED.match(r.content)]
        other = len(replies) - len(lost) - len(ok) - len(busy)
        late = sum(ix.late for ix in burst)
        after = await classify()
        t1 = time.monotonic()
        after_msg = await sim.wait_response(after, timeout_s=30)
        after_s = time.monotonic() - t1
    finally:
        await bot.close()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    ms = 1000.0
    rows = [
        ("one image: event -> first response, p50", f"{statistics.median(acks) * ms:.0f} ms"),
        ("one image: event -> first response, p95", f"{pct(acks, 0.95) * ms:.0f} ms"),
        ("one image: event -> answer sent, p50", f"{statistics.median(sent) * ms:.1f} ms"),
        ("one image: event -> answer sent, p95", f"{pct(sent, 0.95) * ms:.1f} ms"),
        ("one image: event -> answer accepted, p50", f"{statistics.median(answers) * ms:.1f} ms"),
        ("one image: event -> answer accepted, p95", f"{pct(answers, 0.95) * ms:.1f} ms"),
        (f"burst of {args.burst}: results", str(len(ok))),
        (f"burst of {args.burst}: busy", str(len(busy))),
        (f"burst of {args.burst}: other / lost / late", f"{other} / {len(lost)} / {late}"),
        (f"burst of {args.burst}: all answered in", f"{burst_s:.1f} s"),
        ("after the burst: next answer in", f"{after_s * ms:.0f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  value\n{'-' * width}  -----")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    target = statistics.median(sent) <= TARGET_P50_S
    healthy = not lost and not other and not late and bool(after_msg.embeds)
    print(
        f"\np50 <= {TARGET_P50_S * ms:.0f} ms: {'yes' if target else 'NO'}; burst all answered: "
        f"{'yes' if healthy else 'NO'}"
    )
    return 0 if target and healthy else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: train a small one)")
    parser.add_argument("--runs", type=int, default=40, help="sequential single-image runs")
    parser.add_argument("--burst", type=int, default=100, help="concurrent /classify calls")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
