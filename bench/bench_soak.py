"""Soak the real bot: ``python -m bot`` against the Discord simulator, local backend, mixed
traffic for a long time; every request must be answered and nothing may leak.

    python -m bench.bench_soak [--minutes 30] [--rate 1.0] [--workers 2] [--seed 9]
                               [--burst-every 180 --burst-size 100] [--rss-window-minutes 60]

The long soak of issue 20 (2 hours, a crowd's burst every 3 minutes; ``make bench-soak``):

    python -m bench.bench_soak --minutes 130 --burst-every 180 --burst-size 100 --keep

Two servers, 300 members each, an admin each. Requests arrive at random (Poisson) at
``--rate`` per second (default 1/s, at most 48 in flight), chosen as: 40% /classify of a
good photo (FLOWERS17, plus ../shared's animals when present), 20% /classify of a hostile
file (progressive-JPEG scan bombs, 40 MP PNGs, files over MAX_IMAGE_BYTES with a true or
a lying size, non-images, truncated and corrupt JPEGs), 15% the "Classify image" menu on
a message of 1-4 files, 25% a message of 1-3 images in a watched channel (one watched by
configuration, one by /autoclassify); a quarter of the files in messages are hostile. On
top: every 60 s a burst of 8 /classify from one member (past the cooldown of 5 per 30 s),
with ``--burst-size`` N every ``--burst-every`` seconds N members of one server sending a
/classify each at once (a community event, through the door; off by default),
every 20 s a /teach (1 in 6 a hostile file), every 4 minutes a /retrain (the servers in
turn); another member votes on 30% of the /classify answers ("Right", or "Wrong..." and a
label: a correction for the review queue), and every 30 s an admin opens /review and
approves or rejects the first correction. MAX_IMAGE_BYTES is 8 MB, so that files above it
still fit under the simulated client's 10 MB upload limit. All on loopback.

After the warm-up (``--warmup-minutes``, default a tenth of the run, at most 3) the traffic
pauses until every request is answered and the bot is measured idle; the same at the start
of the last ``--rss-window-minutes`` (60) when the run is long enough, and at the end.
Printed each minute and as a summary: requests and outcomes (result / clear error / busy
/ apology / unanswered), latency p50/p95, RSS of the bot and of the processes below it
(workers, forkserver), their count, the bot's open fds, its TMPDIR and data dir. Exit 1
when a criterion fails (each is printed with its figures):
every request answered; no apology (unexpected error); the bot alive throughout and exit
0 on SIGTERM; no more processes below the bot at the end than after the warm-up, no
zombies; bot RSS and workers' RSS each grow < 10%; the bot's RSS grows <= 5% over the
last window (when measured); fds grow by at most max(8, 10%); TMPDIR
grows by at most 1 MB and 10 files; the data dir without taught images and models grows
< 10% + 2 MB; taught image files grow by exactly the images learned; at most 6 model files
per scope; every REST call valid against Discord's OpenAPI spec.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_bot import tiny_model  # noqa: E402
from bench.common import OUT  # noqa: E402
from bench.soak import report  # noqa: E402
from bench.soak.corpus import FLOWERS, Corpus  # noqa: E402
from bench.soak.probes import Sample, data_files, sample  # noqa: E402
from bench.soak.traffic import SoakSimulator, Users  # noqa: E402

MAX_IN_FLIGHT = 48
MIX = {"classify": 0.40, "hostile": 0.20, "menu": 0.15, "watched": 0.25}
BURST_SIZE, BURST_EVERY_S, TEACH_EVERY_S, RETRAIN_EVERY_S = 8, 60.0, 20.0, 240.0
REVIEW_EVERY_S = 30.0  # an admin approves or rejects a member's correction
#: under the simulated client's 10 MiB upload limit, so that files above it can be sent
MAX_IMAGE_BYTES = 8 * 1024 * 1024
SAMPLE_EVERY_S = 5.0
SETTLE_S = 3.0  # after the last answer, before an idle measurement


def tiny_dataset() -> Path:
    """The 3 labels x 8 photos the tiny model was trained on (DATASET_DIR: retrains are quick)."""
    tiny_model()
    dataset = OUT / "tiny-dataset"
    for label in ("daisy", "sunflower", "tulip"):
        (dataset / label).mkdir(parents=True, exist_ok=True)
        for f in sorted((FLOWERS / label).glob("*.jpg"))[:8]:
            if not (dataset / label / f.name).exists():
                shutil.copyfile(f, dataset / label / f.name)
    return dataset


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(tempfile.mkdtemp(prefix="soak-"))
        self.data_dir = self.run_dir / "data"
        self.tmp_dir = self.run_dir / "tmp"
        self.samples: list[Sample] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.bench_errors: list[BaseException] = []
        self.bot: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0
        self.retrains = 0  # sent so far: the servers take turns
        self.reviews = 0
        self.minute = 1  # the next minute to print

    # --- set-up -----------------------------------------------------------------------
    async def start(self) -> None:
        args = self.args
        (self.data_dir / "models").mkdir(parents=True)
        self.tmp_dir.mkdir()
        # no model file is copied in: the bot trains its default model from DATASET_DIR at
        # start, with the code under test (a cached file from another version of the code
        # made every server's retrained model name shared vectors the workers lacked)
        print("preparing the files...", flush=True)
        corpus = await asyncio.to_thread(Corpus, MAX_IMAGE_BYTES, ("bluebell", "crocus"))
        self.sim = sim = SoakSimulator()
        await sim.start()
        self.app = sim.create_application("SoakBot")
        owner = sim.create_user("owner")
        a, a_watched = Users.make_server(sim, "alpha", owner, "bluebell")
        b, _ = Users.make_server(sim, "beta", owner, "crocus")
        self.servers = [a, b]
        env = {
            **{k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ},
            **sim.bot_env(self.app),
            "DATA_DIR": str(self.data_dir),
            "DATASET_DIR": str(tiny_dataset()),
            "TMPDIR": str(self.tmp_dir),
            "MESSAGE_CONTENT_INTENT": "true",
            "AUTOCLASSIFY_CHANNEL_IDS": str(a_watched.id),
            "LOCAL_WORKERS": str(args.workers),
            "MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
            "LOG_LEVEL": "WARNING",
        }
        self.log_path = self.run_dir / "bot.log"
        self.log = self.log_path.open("wb")
        print(f"starting python -m bot (run dir {self.run_dir})...", flush=True)
        self.bot = subprocess.Popen(  # noqa: ASYNC220 (returns at once; polled below)
            [sys.executable, "-m", "bot"],
            cwd=self.run_dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while not (self.app.command_syncs > 0 and sim.shard_sessions(self.app)):
            if self.bot.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not connect; see {self.log_path}")
            await asyncio.sleep(0.2)
        self.users = Users(
            sim,
            self.app,
            corpus,
            self.servers,
            seed=args.seed,
            hostile_share=0.25,
            answer_timeout_s=args.answer_timeout,
        )
        await self.users.autoclassify_on(b)

    # --- traffic ------------------------------------------------------------------------
    def clock(self) -> float:
        return time.monotonic() - self.t0

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.bench_errors.append(t.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)

    async def drive(self, until: float, due: dict[str, float]) -> None:
        """Send traffic until ``until`` (seconds since the start); ``due`` holds the next
        time of each periodic request and is advanced here."""
        users, rng = self.users, self.users.rng
        kinds: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "classify": users.classify,
            "hostile": lambda: users.classify(hostile=True),
            "menu": users.menu,
            "watched": users.watched,
        }
        while (now := self.clock()) < until:
            if now >= due["burst"]:
                self.spawn(users.burst(BURST_SIZE))
                due["burst"] += BURST_EVERY_S
            if self.args.burst_size and now >= due["crowd"]:
                self.spawn(users.crowd(self.args.burst_size))
                due["crowd"] += self.args.burst_every
            if now >= due["teach"]:
                self.spawn(users.teach())
                due["teach"] += TEACH_EVERY_S
            if now >= due["review"]:
                self.spawn(users.review(self.servers[self.reviews % 2]))
                self.reviews += 1
                due["review"] += REVIEW_EVERY_S
            if now >= due["retrain"]:
                self.spawn(users.retrain(self.servers[self.retrains % 2]))
                self.retrains += 1
                due["retrain"] += RETRAIN_EVERY_S
            if users.in_flight < MAX_IN_FLIGHT:
                [kind] = rng.choices(list(MIX), weights=list(MIX.values()))
                self.spawn(kinds[kind]())
            await asyncio.sleep(min(rng.expovariate(self.args.rate), max(0.0, until - now)))

    async def quiet_sample(self) -> Sample:
        """Wait until every request is answered (or timed out), settle, measure."""
        while self.tasks:
            await asyncio.wait(set(self.tasks))
        await asyncio.sleep(SETTLE_S)
        return await self.take_sample()

    async def take_sample(self) -> Sample:
        assert self.bot is not None
        alive = self.bot.poll() is None
        s = await asyncio.to_thread(
            sample, self.clock(), self.bot.pid, alive, self.tmp_dir, self.data_dir
        )
        self.samples.append(s)
        return s

    async def watch(self) -> None:
        """Sample every few seconds; print one line per minute."""
        print(report.MINUTE_HEADER, flush=True)
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            last = await self.take_sample()
            if last.t >= self.minute * 60:
                self.print_minute(last)

    def print_minute(self, last: Sample) -> None:
        """The line of minute ``self.minute`` (the last one may be partial, ending now)."""
        lo, hi = (self.minute - 1) * 60, self.minute * 60
        done = [r for r in self.users.records if lo <= r.done - self.t0 < hi]
        sent = sum(lo <= t - self.t0 < hi for t in self.users.sent)
        print(report.minute_line(self.minute, sent, done, last), flush=True)
        self.minute += 1

    async def run(self) -> int:
        args = self.args
        total_s = args.minutes * 60
        warmup_s = (
            args.warmup_minutes * 60
            if args.warmup_minutes is not None
            else min(180.0, total_s / 10)
        )
        window_s = args.rss_window_minutes * 60
        await self.start()
        self.t0 = time.monotonic()
        due = {
            "burst": 10.0,
            "crowd": 20.0,
            "teach": 5.0,
            "review": 15.0,
            "retrain": warmup_s / 2,
        }
        watcher = asyncio.create_task(self.watch())
        self.mark: Sample | None = None
        try:
            await self.drive(warmup_s, due)
            base = await self.quiet_sample()
            learned_before = self.learned()
            print(f"-- after warm-up, idle at {base.t:.0f} s: measured", flush=True)
            if total_s - window_s > base.t:  # long enough for the last window's own mark
                await self.drive(total_s - window_s, due)
                self.mark = await self.quiet_sample()
                print(
                    f"-- the last {args.rss_window_minutes:g} min start, idle at "
                    f"{self.mark.t:.0f} s: measured",
                    flush=True,
                )
            await self.drive(total_s, due)
            end = await self.quiet_sample()
            learned = self.learned() - learned_before
            files = data_files(self.data_dir)
        finally:
            watcher.cancel()
        while (self.minute - 1) * 60 < end.t:  # the minutes not printed yet, drain included
            self.print_minute(end)
        exit_code = self.stop_bot()
        spec_ok = True
        try:
            await self.sim.stop()
        except AssertionError as exc:
            spec_ok = False
            print(exc)
        print("\ndata dir at the end (without taught images and models):")
        print("".join(f"  {size / 1024:>8.0f} KB  {name}\n" for name, size in files[:6]), end="")
        return self.conclude(base, end, learned, exit_code, spec_ok)

    def learned(self) -> int:
        """Images taught so far: by /teach, and by approving a correction in /review."""
        return sum(
            (r.kind == "teach" and r.text.startswith("Learned **"))
            or (r.kind == "review" and r.text.startswith("Approved: the image is learned"))
            for r in self.users.records
        )

    def stop_bot(self) -> int | None:
        assert self.bot is not None
        if self.bot.poll() is None:
            self.bot.send_signal(signal.SIGTERM)
        try:
            return self.bot.wait(60)
        except subprocess.TimeoutExpired:
            self.bot.kill()
            return None
        finally:
            self.log.close()

    def conclude(
        self, base: Sample, end: Sample, learned: int, exit_code: int | None, spec_ok: bool
    ) -> int:
        records = self.users.records
        print("\n" + report.summary(records, self.samples, base, end))
        log = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in log if " ERROR " in line or line.startswith("Traceback")]
        print(f"\nbot log: {len(log)} lines, {len(errors)} ERROR/traceback lines")
        for line in errors[:5]:
            print(f"  {line[:160]}")
        print(f"interactions acknowledged late (after 3 s): {self.users.late}")
        verdicts = report.criteria(records, self.samples, base, end, learned, exit_code)
        if self.mark is not None:
            window = self.args.rss_window_minutes
            verdicts.append(report.rss_window(self.samples, self.mark, end, window))
        else:
            print(
                f"(the bot's RSS over the last {self.args.rss_window_minutes:g} min is not "
                "judged: the run is not longer than the warm-up and that window)"
            )
        verdicts += [
            report.Verdict("REST calls valid (Discord's OpenAPI spec)", spec_ok, ""),
            report.Verdict(
                "the benchmark itself ran cleanly",
                not self.bench_errors,
                "; ".join(repr(e)[:120] for e in self.bench_errors[:3]),
            ),
        ]
        print("\ncriteria:")
        for v in verdicts:
            print(f"  {'ok  ' if v.ok else 'FAIL'} {v.name}: {v.detail}")
        failed = [v.name for v in verdicts if not v.ok]
        print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'all criteria met'}")
        if not failed and not self.args.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            print(f"run dir kept: {self.run_dir}")
        return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="traffic duration")
    parser.add_argument("--warmup-minutes", type=float, help="default: a tenth, at most 3")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second (mean)")
    parser.add_argument("--workers", type=int, default=2, help="LOCAL_WORKERS")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--answer-timeout", type=float, default=90.0, help="seconds")
    parser.add_argument(
        "--burst-every", type=float, default=180.0, help="seconds between crowd bursts"
    )
    parser.add_argument(
        "--burst-size", type=int, default=0, help="members in a crowd burst (0: none)"
    )
    parser.add_argument(
        "--rss-window-minutes",
        type=float,
        default=60.0,
        help="the bot's RSS is judged over the run's last this many minutes (<= 5%%)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run dir and bot log")
    args = parser.parse_args()
    if args.burst_size < 0 or args.burst_every <= 0 or args.rss_window_minutes <= 0:
        parser.error("--burst-size >= 0, --burst-every > 0, --rss-window-minutes > 0")
    soak = Soak(args)
    try:
        return asyncio.run(soak.run())
    finally:
        if soak.bot is not None and soak.bot.poll() is None:
            soak.bot.kill()


if __name__ == "__main__":
    sys.exit(main())
