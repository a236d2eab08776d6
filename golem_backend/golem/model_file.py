"""The requestor's model file: read its id and labels (in a throw-away process), load it."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from golem_backend import child
from golem_backend.base import BackendUnavailable
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.processes import executor_processes, worker_context


async def describe_model(path: Path, timeout_s: float) -> dict[str, Any]:
    """Model id, labels and accuracy, read in a throw-away process (keeps the bot light).

    Raises ``ModelError`` (the file is unusable) or ``BackendUnavailable`` (the process could
    not start, died, or did not answer within ``timeout_s``: it is then killed).
    """
    pool: ProcessPoolExecutor | None = None
    answered = False
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=worker_context())
        async with asyncio.timeout(timeout_s):
            info = await asyncio.get_running_loop().run_in_executor(pool, child.describe, str(path))
        answered = True
        return info
    except TimeoutError:  # before OSError: TimeoutError is one
        raise BackendUnavailable(
            f"Reading the model {path} took more than {timeout_s:g} s; "
            "check the disk or network share it is on."
        ) from None
    except (OSError, BrokenProcessPool) as exc:
        raise BackendUnavailable(f"Could not read the model {path}: {reason_of(exc)}") from exc
    finally:
        if pool is not None:
            processes = executor_processes(pool)
            pool.shutdown(wait=False, cancel_futures=True)
            if not answered:  # it may be stuck: do not leave it behind
                await asyncio.shield(asyncio.to_thread(_kill, processes))


def _kill(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()


async def load_artifact(path: Path, info: dict[str, Any]) -> ModelArtifact:
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise BackendUnavailable(f"Could not read the model {path}: {reason_of(exc)}") from exc
    return ModelArtifact(
        data=data,
        model_id=str(info["model_id"]),
        labels=tuple(info["labels"]),
        provides=provided_key(data),
    )


def provided_key(data: bytes) -> str | None:
    """The shared open-set vectors a model file provides (its header's ``ood.provides``):
    read from the JSON header alone, on the requestor's own, already verified file."""
    from provider.artifact import MAGIC

    start = len(MAGIC) + 4
    if len(data) < start or data[: len(MAGIC)] != MAGIC:
        return None
    size = int.from_bytes(data[len(MAGIC) : start], "big")
    try:
        meta = json.loads(data[start : start + size])
        key = (meta.get("ood") or {}).get("provides")
    except (ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def reason_of(exc: BaseException) -> str:
    """``str(exc)``, or the exception's type when it has no text (e.g. ``TimeoutError()``)."""
    return str(exc) or type(exc).__name__
