"""Temporary files on the requestor: images do not outlive their batch, disk use is bounded.

The harness's storage keeps files as yapapi's ``GftpProvider`` does (uploads until released,
replies received into the file asked for, else into its own files kept until the engine
stops), and its exe-unit sends replies to the requestor in chunks, as gftp writes what the
network brings, so the requestor's guard can watch an oversized reply arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from golem_backend.golem.protocol import reply_limit
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan
from tests.golem_backend.harness.helpers import (
    golem_settings,
    install_model,
    make_backend,
    wait_running,
)

HOSTILE_REPLY = 48 * 2**20  # bytes a hostile provider sends back for one batch


def _files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.is_dir() for p in folder.rglob("*") if p.is_file()]


def _disk_bytes(paths: list[Path]) -> int:
    """Bytes allocated on disk (a truncated file written on at an offset is sparse)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += os.stat(path).st_blocks * 512
    return total


async def test_no_file_outlives_its_batch_and_an_oversized_reply_stays_bounded(
    tmp_path, tiny_model, sample_images
):
    settings = golem_settings(tmp_path, golem_script_timeout_s=3.0)
    install_model(tiny_model.path, settings)
    faults = FaultPlan()
    backend, runtime = make_backend(settings, faults)
    peak = 0

    async def sample(folders: tuple[Path, ...]) -> None:
        nonlocal peak
        while True:
            peak = max(peak, _disk_bytes(_files(*folders)))
            await asyncio.sleep(0.002)

    try:
        await backend.start()
        await wait_running(backend)
        folders = (runtime.engine.storage.root, backend._transfer_dir)
        assert folders[1] is not None and folders[1].is_dir()
        sampler = asyncio.create_task(sample(folders))  # type: ignore[arg-type]
        pair = list(sample_images[:2])
        for _ in range(10):  # normal batches
            assert all(isinstance(o, Prediction) for o in await backend.classify(pair))
        faults.add("hang")  # a batch that times out (its images are retried apart)
        faults.add("fail")  # a batch whose command fails (its instance is replaced)
        faults.add("reply", reply=b" " * HOSTILE_REPLY)  # an oversized reply
        for _ in range(3):
            assert all(isinstance(o, Prediction) for o in await backend.classify(pair))
        assert {f[0] for f in faults.fired} == {"hang", "fail", "reply"}
        sampler.cancel()

        left = _files(*folders)  # type: ignore[arg-type]
        print(f"files left: {len(left)}, {_disk_bytes(left)} bytes; peak on disk: {peak} bytes")
        assert left == [], f"{len(left)} files, {_disk_bytes(left)} bytes left"
        # The hostile reply was truncated while it arrived: at most the largest batch's limit
        # plus what arrives between two looks of the guard (10 ms at ~256 MB/s here).
        bound = reply_limit(len(pair) + 2) + 4 * 2**20
        assert peak < bound, f"{peak} bytes on disk at once (bound {bound})"
    finally:
        await backend.stop()
    assert runtime.processes() == []
