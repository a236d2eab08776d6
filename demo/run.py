"""``make demo``: try the bot without Discord.

Starts the project's Discord simulator (``tests/discord_sim``, the one the end-to-end tests
use) and the real bot as a separate process (``python -m bot``: local backend, its worker
processes, SQLite in a temporary folder) pointed at it, then plays a short conversation
(``demo/conversation.py``) and prints it as a transcript.

The first run trains the default model from the shipped photos (as the bot's first start
does) and keeps it, with its feature cache, in ``var/demo-cache/``; later runs start from
that copy. ``--fresh`` trains again. Not product code: nothing in ``bot/`` imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from demo.conversation import Conversation
from demo.transcript import Transcript
from tests.discord_sim import DiscordSimulator

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "demo-cache"
#: the files of a bot's DATA_DIR worth keeping between runs: the default model and the
#: features of the shipped photos it was trained on (a server's retrain reuses them)
CACHED = ("models/current.model", "features.h5")
START_TIMEOUT_S = 600.0


@dataclass
class DemoResult:
    transcript: list[str]
    start_s: float  # from launching the bot to its first connection (training included)
    conversation_s: float
    trained: bool  # the default model was trained in this run (no cache)


def bot_environment(sim: DiscordSimulator, app: object, data_dir: Path) -> dict[str, str]:
    from bot.core.settings import Settings

    names = {n.upper() for n in Settings.model_fields}  # the caller's .env must not leak in
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(sim.bot_env(app))  # type: ignore[arg-type]
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "BACKEND": "local",
            "COOLDOWN_USES": "100",
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def restore_cache(cache: Path, data_dir: Path) -> bool:
    if not all((cache / name).is_file() for name in CACHED):
        return False
    for name in CACHED:
        (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache / name, data_dir / name)
    return True


def save_cache(data_dir: Path, cache: Path) -> None:
    if not all((data_dir / name).is_file() for name in CACHED):
        return
    for name in CACHED:
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / name, cache / f"{name}.part")
        os.replace(cache / f"{name}.part", cache / name)


async def run_demo(*, cache: Path = CACHE, echo: bool = True) -> DemoResult:
    """Play the demo; the transcript and the times it took."""
    transcript = Transcript(echo=echo)
    sim = DiscordSimulator()
    await sim.start()
    app = sim.create_application("Classifier")
    conversation = Conversation(sim, app, transcript)
    with tempfile.TemporaryDirectory(prefix="classifier-demo-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        cached = restore_cache(cache, data_dir)
        log_path = Path(tmp) / "bot.log"
        transcript.add(
            "Starting the bot (python -m bot, local backend) against the Discord simulator; "
            + (
                "the default model comes from var/demo-cache."
                if cached
                else "first run: training the default model from the shipped photos (~30 s)..."
            )
        )
        started = time.monotonic()
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=tmp,
                env=bot_environment(sim, app, data_dir),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        try:
            await wait_connected(sim, app, proc, log_path)
            start_s = time.monotonic() - started
            if not cached:
                save_cache(data_dir, cache)
            transcript.add(f"The bot is connected ({start_s:.1f} s).")
            began = time.monotonic()
            await conversation.play()
            conversation_s = time.monotonic() - began
        finally:
            await stop(proc)
            sim.expect_spec_violations = False
            await sim.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"the bot exited with {proc.returncode}:\n{log_path.read_text()}")
    return DemoResult(transcript.lines, start_s, conversation_s, trained=not cached)


async def wait_connected(
    sim: DiscordSimulator, app: object, proc: asyncio.subprocess.Process, log_path: Path
) -> None:
    connected = asyncio.create_task(sim.wait_connected(app, timeout_s=START_TIMEOUT_S))  # type: ignore[arg-type]
    exited = asyncio.create_task(proc.wait())
    await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
    if not connected.done():
        connected.cancel()
        output = await asyncio.to_thread(log_path.read_text)
        raise RuntimeError(f"the bot stopped before connecting:\n{output}")
    exited.cancel()
    connected.result()


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="train the default model again")
    args = parser.parse_args(argv)
    if args.fresh:
        shutil.rmtree(CACHE, ignore_errors=True)
    result = asyncio.run(run_demo())
    print()
    print(
        f"Done: the bot started in {result.start_s:.0f} s"
        f"{' (default model trained, now cached)' if result.trained else ''}, "
        f"the conversation took {result.conversation_s:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
