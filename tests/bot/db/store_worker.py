"""A process that uses the store the way the bot does, for the crash tests: it starts as
the bot starts (``check_at_start``), then teaches, retrains and forgets in a loop and
prints what it would tell a user once each is committed:

  SAVED <sha256> <label>      /teach answered "saved"
  MODEL <model id>            /retrain answered "trained"
  FORGOTTEN <label>           /forget answered "forgotten"

``python -m tests.bot.db.store_worker URL DATA_DIR SEED [KILL_AT]``: with ``KILL_AT`` it
SIGKILLs itself at that point of the first operation that gets there:
``file-written`` (an image file written, its row not committed), ``forget-committed``
(a forget's rows committed, its files not removed), ``model-written`` (a trained model
file in place, not registered), ``training`` (half a model written to its temporary
file).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import sys
import uuid
from pathlib import Path

from bot.db import Store, guild_data
from bot.db import removals as removals_module
from bot.db.repair import check_at_start
from tests.bot.harness import flower_bytes

GUILD = 111_111_111_111


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kill_at: str | None) -> None:
    if kill_at == "file-written":
        guild_data.after_file_written = lambda path: die()
    elif kill_at == "forget-committed":

        async def carry_out(self: object, rows: list[object]) -> None:
            if any(getattr(r, "kind", "") in ("file", "folder") for r in rows):
                die()

        removals_module.Removals.carry_out = carry_out  # type: ignore[method-assign]


async def retrain(store: Store, kill_at: str | None) -> str:
    """What the bot's retrain does with the store: the generation first, then the images,
    a model file written (atomically renamed), then registered against the generation."""
    g = store.guild(GUILD)
    generation = await g.generation()
    records = await g.taught()
    g.models_dir.mkdir(parents=True, exist_ok=True)
    model_id = f"m-{uuid.uuid4().hex[:8]}"
    tmp = g.models_dir / f".training-{uuid.uuid4().hex[:8]}-head.model"
    with tmp.open("wb") as f:
        f.write(b"model of %d images " % len(records))
        f.flush()
        if kill_at == "training":
            die()
        f.write(os.urandom(2048))
        f.flush()
        os.fsync(f.fileno())
    final = g.models_dir / f"{model_id}.model"
    os.replace(tmp, final)
    if kill_at == "model-written":
        die()
    await g.register_model(
        model_id, final, sorted({r.label for r in records}), {}, generation=generation
    )
    return model_id


async def main(url: str, data_dir: Path, seed: int, kill_at: str | None) -> None:
    store = Store(url, data_dir)
    await store.open()
    await check_at_start(store, grace_s=0)
    print("STARTED", flush=True)
    rng = random.Random(seed)
    g = store.guild(GUILD)
    for i in range(10_000):
        if i == 2:  # some of everything is saved by then
            arm(kill_at)
        label = f"l{seed}x{i}"
        for j in range(2):
            data = flower_bytes("daisy", rng.randrange(8)) + f"{seed}-{i}-{j}".encode()
            added, _ = await g.add_taught(label, data, "jpg", user_id=7, user_name="ann")
            assert added
            print(f"SAVED {hashlib.sha256(data).hexdigest()} {label}", flush=True)
        if i:
            print(f"FORGETTING l{seed}x{i - 1}", flush=True)
            await g.forget_label(f"l{seed}x{i - 1}")
            print(f"FORGOTTEN l{seed}x{i - 1}", flush=True)
        print(f"MODEL {await retrain(store, kill_at if i >= 2 else None)}", flush=True)


if __name__ == "__main__":
    kill = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), kill))
