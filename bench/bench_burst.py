"""Benchmark bursts through the door: simulated Discord -> real bot -> real local backend.

    python -m bench.bench_burst [--model PATH] [--runs 3] [--gates door,legacy]
                                [--flood 1000] [--flood-servers 10] [--singles 40]

Issue 20's targets, each run on a fresh bot with the default settings, for the door
(``bot.core.admission``) and, in the same run, the previous admission (``--gates``
``legacy``: the fixed limit of 16 requests at once, half per server, kept in
``bench/legacy_gate.py``), printed side by side (medians over ``--runs``):

* 100 /classify at once from 100 members of one server: answered with a label, refused,
  lost; the time of the last answer; another server's request sent right after the
  burst (while it is answered) and its answer time;
* 60 at once, 20 members in each of three servers: answered, the last answer;
* ``--flood`` (1000) at once over ``--flood-servers`` servers: answered, refused with the
  expected wait in the message, other, lost; the slowest first response (an answer,
  "thinking..." or a refusal: Discord wants one within 3 s) and how many came late; the
  last answer; then one more request and its answer time;
* one image, gateway event -> answer sent, p50 over ``--singles`` requests (as
  ``bench/bench_bot.py`` measures it).

Times are from the first gateway event of a burst (INTERACTION_CREATE sent) to the
answer accepted by the simulator. The bot is ``python -m bot`` in a process of its own
(as in production, and as the soak runs it), so that the simulator's own work (every
call checked against Discord's spec) does not share the bot's event loop; it is stopped
with SIGTERM after each run (exit 0 expected). Without ``--model`` the small model of
``bench/bench_bot.py`` is used (trained once into bench/out/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_bot import FLOWERS, answered_at, tiny_model  # noqa: E402
from bench.legacy_gate import REFUSALS  # noqa: E402
from tests.discord_sim import Channel, DiscordSimulator, Guild, Interaction, Message  # noqa: E402
from tests.discord_sim.model import LOADING  # noqa: E402

WITH_WAIT = re.compile(r"I'm busy: about \d+ s of images are waiting")
ANSWER_TIMEOUT_S = 90.0
TARGETS = {
    "burst_answered": ">= 95",
    "burst_last_s": "<= 10 s",
    "other_s": "<= 2 s",
    "spread_answered": ">= 57",
    "spread_last_s": "<= 10 s",
    "flood_lost": "0",
    "flood_first_max_s": "<= 3 s",
    "flood_late": "0",
    "after_ms": "answers",
    "p50_ms": "<= 15 ms",
}


@dataclass
class Outcome:
    """What one burst came to."""

    answered: int = 0
    with_wait: int = 0  # refused, saying how long the wait is
    busy: int = 0  # refused without saying (the old gate)
    other: int = 0
    lost: int = 0
    late: int = 0  # acknowledged after Discord's 3 s
    first_max_s: float = 0.0  # the slowest first response
    last_s: float = 0.0  # the last answer with a label, from the burst's first event
    texts: dict[str, int] = field(default_factory=dict)


def is_answer(msg: Message) -> bool:
    return bool(msg.embeds) and "%" in msg.embeds[0].get("title", "")


def tally(ixs: list[Interaction], replies: list[Message | BaseException]) -> Outcome:
    out = Outcome()
    start = min(ix.created for ix in ixs)
    for ix, reply in zip(ixs, replies, strict=True):
        out.late += ix.late
        if ix.responded_at is not None:
            out.first_max_s = max(out.first_max_s, ix.responded_at - ix.created)
        if not isinstance(reply, Message):
            out.lost += 1
        elif is_answer(reply):
            out.answered += 1
            out.last_s = max(out.last_s, answered_at(reply) - start)
        elif WITH_WAIT.match(reply.content):
            out.with_wait += 1
        elif reply.content in REFUSALS:
            out.busy += 1
        else:
            out.other += 1
            out.texts[reply.text[:80]] = out.texts.get(reply.text[:80], 0) + 1
    return out


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.image = sorted((FLOWERS / "daisy").glob("*.jpg"))[-1].read_bytes()
        self.users = 0

    async def start(self) -> None:
        self.sim = sim = DiscordSimulator()
        await sim.start()
        owner = sim.create_user("owner")
        n = max(3, self.args.flood_servers)
        self.guilds: list[Guild] = [sim.create_guild(f"Bench {i}", owner) for i in range(n)]
        self.channels: list[Channel] = [sim.create_channel(g, "bench") for g in self.guilds]

    async def request(self, server: int) -> Interaction:
        """A /classify from a member who never asked before (no cooldown in the way)."""
        sim = self.sim
        self.users += 1
        user = sim.create_user(f"user{self.users}")
        sim.add_member(self.guilds[server], user)
        att = sim.upload(self.image, "bench.jpg", content_type="image/jpeg")
        return await sim.slash(self.app, self.channels[server], user, "classify", {"image": att})

    async def replies(self, ixs: list[Interaction]) -> list[Message | BaseException]:
        return list(
            await asyncio.gather(
                *(self.sim.wait_response(ix, timeout_s=ANSWER_TIMEOUT_S) for ix in ixs),
                return_exceptions=True,
            )
        )

    async def bot_for(self, gate: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A fresh ``python -m bot`` with the default settings (``gate``: its admission;
        the old one is ``python -m bench.legacy_gate``). A process of its own, as in
        production: the simulator's work (checking every call against Discord's spec)
        does not run on the bot's event loop."""
        sim = self.sim
        self.app = app = sim.create_application(f"Burst-{gate}-{time.monotonic_ns()}")
        for guild in self.guilds:
            guild.members.setdefault(app.user.id, [])
        run_dir = Path(tempfile.mkdtemp(prefix="bench-burst-"))
        (run_dir / "data" / "models").mkdir(parents=True)
        model = self.args.model or tiny_model()
        shutil.copyfile(model, run_dir / "data" / "models" / "current.model")
        env = {
            **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
            **sim.bot_env(app),
            "PYTHONPATH": str(ROOT),
            "DATA_DIR": str(run_dir / "data"),
            "LOG_LEVEL": "WARNING",
        }
        if self.args.workers:
            env["LOCAL_WORKERS"] = str(self.args.workers)
        module = "bench.legacy_gate" if gate == "legacy" else "bot"
        log = (run_dir / "bot.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; waited for below)
            [sys.executable, "-m", module], cwd=run_dir, env=env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 300
        while not (app.command_syncs > 0 and sim.shard_sessions(app)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not connect; see {run_dir / 'bot.log'}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # discord.py's guild_ready_timeout: the bot is ready
        return proc, run_dir

    async def one_run(self, gate: str) -> dict[str, float]:
        proc, run_dir = await self.bot_for(gate)
        try:
            result = await self.measure()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
        log = (run_dir / "bot.log").read_text(errors="replace")
        if code != 0 or "Traceback" in log:
            print(f"  the bot exited {code}; its log: {run_dir / 'bot.log'}", flush=True)
            result["clean_exit"] = 0.0
        else:
            result["clean_exit"] = 1.0
            shutil.rmtree(run_dir, ignore_errors=True)
        return result

    async def measure(self) -> dict[str, float]:
        args, sim = self.args, self.sim
        for _ in range(3):  # warm-up
            await sim.wait_response(await self.request(0), timeout_s=60)
        sent = []
        for _ in range(args.singles):
            ix = await self.request(0)
            msg = await sim.wait_response(ix, timeout_s=60)
            quick = msg.history[0][3] & LOADING == 0  # the response was the answer itself
            reached = ix.response_received_at if quick else None
            sent.append((reached or answered_at(msg)) - ix.created)
        await asyncio.sleep(1.0)

        burst = [await self.request(0) for _ in range(100)]
        other = await self.request(1)  # another server, while the burst is answered
        burst_out = tally(burst, await self.replies(burst))
        other_msg = await sim.wait_response(other, timeout_s=ANSWER_TIMEOUT_S)
        other_s = answered_at(other_msg) - other.created if is_answer(other_msg) else float("inf")
        await asyncio.sleep(1.0)

        spread = [await self.request(s) for _ in range(20) for s in range(3)]
        spread_out = tally(spread, await self.replies(spread))
        await asyncio.sleep(1.0)

        flood = [await self.request(i % args.flood_servers) for i in range(args.flood)]
        flood_out = tally(flood, await self.replies(flood))
        after = await self.request(0)
        after_msg = await sim.wait_response(after, timeout_s=60)
        after_ms = (answered_at(after_msg) - after.created) * 1000 if is_answer(after_msg) else -1
        for name, out in (("100", burst_out), ("60", spread_out), ("flood", flood_out)):
            if out.other or out.lost:
                print(f"  {name}: other {out.texts}, lost {out.lost}", flush=True)
        return {
            "burst_answered": burst_out.answered,
            "burst_refused": burst_out.with_wait + burst_out.busy,
            "burst_lost": burst_out.lost + burst_out.other,
            "burst_last_s": burst_out.last_s,
            "other_s": other_s,
            "spread_answered": spread_out.answered,
            "spread_last_s": spread_out.last_s,
            "flood_answered": flood_out.answered,
            "flood_with_wait": flood_out.with_wait,
            "flood_busy": flood_out.busy,
            "flood_other": flood_out.other,
            "flood_lost": flood_out.lost,
            "flood_first_max_s": flood_out.first_max_s,
            "flood_late": flood_out.late,
            "flood_last_s": flood_out.last_s,
            "after_ms": after_ms,
            "p50_ms": statistics.median(sent) * 1000,
        }


ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("100 at once, one server: answered with a label", "burst_answered", "{:.0f}".format),
    ("100 at once, one server: refused", "burst_refused", "{:.0f}".format),
    ("100 at once, one server: lost or unexpected", "burst_lost", "{:.0f}".format),
    ("100 at once, one server: last answer", "burst_last_s", "{:.2f} s".format),
    ("another server's request during it: answer", "other_s", "{:.2f} s".format),
    ("60 at once, three servers: answered", "spread_answered", "{:.0f}".format),
    ("60 at once, three servers: last answer", "spread_last_s", "{:.2f} s".format),
    ("{flood} at once: answered", "flood_answered", "{:.0f}".format),
    ("{flood} at once: refused with the expected wait", "flood_with_wait", "{:.0f}".format),
    ("{flood} at once: refused without it (busy)", "flood_busy", "{:.0f}".format),
    ("{flood} at once: unexpected answers", "flood_other", "{:.0f}".format),
    ("{flood} at once: lost", "flood_lost", "{:.0f}".format),
    ("{flood} at once: slowest first response", "flood_first_max_s", "{:.2f} s".format),
    ("{flood} at once: acknowledged after 3 s", "flood_late", "{:.0f}".format),
    ("{flood} at once: last answer", "flood_last_s", "{:.2f} s".format),
    ("right after: the next answer", "after_ms", "{:.0f} ms".format),
    ("one image, event -> answer sent, p50", "p50_ms", "{:.1f} ms".format),
    ("stopped cleanly (SIGTERM, exit 0)", "clean_exit", lambda v: "yes" if v == 1 else "NO"),
]


def report(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    gates = list(results)
    header = ["measure", *(f"{g} (median of {len(results[g])})" for g in gates), "target"]
    rows = []
    for name, key, fmt in ROWS:
        cells = [fmt(statistics.median(r[key] for r in results[g])) for g in gates]
        rows.append([name.format(flood=args.flood), *cells, TARGETS.get(key, "")])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    if any(len(results[g]) > 1 for g in gates):
        print("\nevery run:")
        for g in gates:
            for i, r in enumerate(results[g]):
                print(f"  {g} run {i + 1}: " + ", ".join(f"{k}={v:.3g}" for k, v in r.items()))


async def run(args: argparse.Namespace) -> int:
    bench = Bench(args)
    await bench.start()
    results: dict[str, list[dict[str, float]]] = {g: [] for g in args.gates}
    try:
        for i in range(args.runs):
            for gate in args.gates:  # the gates take turns: the machine's load hits both
                print(f"run {i + 1}/{args.runs}: {gate}...", flush=True)
                results[gate].append(await bench.one_run(gate))
    finally:
        await bench.sim.stop()
    print()
    report(args, results)
    door = results.get("door")
    if not door:
        return 0

    def med(key: str) -> float:
        return statistics.median(r[key] for r in door)

    met = (
        med("burst_answered") >= 95
        and med("burst_lost") == 0
        and med("burst_last_s") <= 10
        and med("other_s") <= 2
        and med("spread_answered") >= 57
        and med("flood_lost") == 0
        and med("flood_first_max_s") <= 3
        and med("after_ms") >= 0
        and med("p50_ms") <= 15
        and min(r["clean_exit"] for r in door) == 1
    )
    print(f"\nthe door meets issue 20's targets: {'yes' if met else 'NO'}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model file (default: train a small one)")
    parser.add_argument("--runs", type=int, default=3, help="runs of every gate (medians)")
    parser.add_argument(
        "--gates",
        type=lambda s: [g for g in s.split(",") if g],
        default=["door", "legacy"],
        help="door, legacy or both (comma-separated; default both)",
    )
    parser.add_argument("--flood", type=int, default=1000, help="requests at once")
    parser.add_argument("--flood-servers", type=int, default=10, help="servers they come from")
    parser.add_argument("--singles", type=int, default=40, help="one-image requests (p50)")
    parser.add_argument("--workers", type=int, help="LOCAL_WORKERS (default: the setting's)")
    args = parser.parse_args()
    if not set(args.gates) <= {"door", "legacy"}:
        parser.error("--gates takes door and/or legacy")
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
