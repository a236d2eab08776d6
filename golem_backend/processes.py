"""The local backend's worker processes, one ``ProcessPoolExecutor(max_workers=1)`` each.

A :class:`Worker` owns one warm classifier process. Processes are never ``fork`` ed from the
bot's process (its event loop and threads live there): they come from the ``forkserver``, a
clean process that has imported the classifier once (numpy, OpenCV, scikit-learn: ~1.5 s),
so a worker starts in about 0.5 s instead of 2.5-3 s with ``spawn`` (the fallback where there
is no forkserver). One executor per worker lets the dispatcher send a batch to a worker it
knows is free, and a crash breaks only that worker's batch. Code that runs *inside* the
process lives in :mod:`golem_backend.child`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.process as cf_process
import contextlib
import inspect
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from golem_backend import child
from golem_backend.base import Outcome
from provider.errors import ModelError

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 180.0  # process start + imports + model load, on a busy machine
#: Loading a swapped-in model in a running worker (a worker stuck longer is killed).
LOAD_TIMEOUT_S = _START_TIMEOUT_S
_STOP_GRACE_S = 1.0
_PRELOAD = ["golem_backend.child", "provider.model", "provider.train"]

WorkerContext = ForkServerContext | SpawnContext


def worker_context() -> WorkerContext:
    """``forkserver`` with the classifier preloaded where available, else ``spawn``; never fork.

    The preload list takes effect when this process first starts its forkserver.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def worker_threads(workers: int, configured: int = 0) -> int:
    """Native threads per worker: ``configured``, or the usable cores shared among workers."""
    if configured > 0:
        return configured
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


class Worker:
    """One classifier process and what the backend knows about it.

    ``state``: starting | idle | busy | loading | restarting | failed | stopped.
    Methods raise ``concurrent.futures.BrokenExecutor`` when the process died.
    """

    def __init__(
        self,
        name: str,
        ctx: WorkerContext,
        model_path: Path,
        threads: int,
        head_cache_bytes: int | None = None,
    ) -> None:
        self.name = name
        self.state = "starting"
        self.pid: int | None = None
        self.model_id: str | None = None  # the model loaded in the process
        self.refreshed: str | None = None  # the last model id a refresh was started for
        self.served = 0  # images classified
        self.batch: list[Any] = []  # the jobs being classified now
        self._ctx = ctx
        self._path = str(model_path)
        self._threads = threads
        self._head_cache_bytes = head_cache_bytes
        self._executor: ProcessPoolExecutor | None = None
        self.load_timeout_s = LOAD_TIMEOUT_S

    @property
    def alive(self) -> bool:
        return self._executor is not None

    async def boot(self, model_id: str | None) -> dict[str, Any]:
        """Start the process if needed, load ``model_id`` (None: what is on disk), say what it has.

        Raises ``ModelError`` from the process when the model file is unusable.
        """
        self.state = "starting"
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._ctx,
                initializer=child.init_worker,
                initargs=(self._path, self._threads, self._head_cache_bytes),
            )
        async with asyncio.timeout(_START_TIMEOUT_S):
            info = await self._call(child.describe, self._path, model_id)
        self.pid, self.model_id, self.state = info["pid"], info["model_id"], "idle"
        log.info("%s (pid %s) serves model %s", self.name, self.pid, self.model_id)
        return info

    async def refresh(self, model_id: str) -> None:
        """Load ``model_id`` (just swapped in) while idle, ahead of the next batch.

        Raises ``TimeoutError`` after ``load_timeout_s``: the process is stuck (kill it).
        """
        self.state = "loading"
        async with asyncio.timeout(self.load_timeout_s):
            info = await self._call(child.describe, self._path, model_id)
        self.model_id, self.state = info["model_id"], "idle"

    async def classify(
        self,
        model_id: str,
        sources: list[bytes],
        top_k: int,
        max_pixels: int,
        heads: list[tuple[str, str] | None] | None = None,
        cores: int = 1,
    ) -> list[Outcome | ModelError]:
        """One forward pass over ``sources`` with ``model_id`` (loaded first if it changed).

        ``heads``: per image, the (model id, file) of its server's head, or None for the
        default model; an image whose head cannot be loaded gets the ``ModelError``.
        ``cores``: how many cores a lone image may use (idle siblings' cores lent to it).
        """
        _, self.model_id, outcomes = await self._call(
            child.classify_batch, self._path, model_id, sources, top_k, max_pixels, heads, cores
        )
        if len(outcomes) != len(sources):
            raise RuntimeError(f"{len(outcomes)} outcomes for {len(sources)} images")
        self.served += len(sources)
        return outcomes

    async def head_cache_stats(self) -> dict[str, int]:
        """The process's head cache: heads, bytes, max_bytes, hits, loads, evictions, pid."""
        stats: dict[str, int] = await self._call(child.head_cache_stats)
        return stats

    async def exit_for_tests(self) -> None:
        """Test hook: make the process exit abruptly, as a segfault would."""
        await self._call(child.exit_for_tests, 70)

    async def hang_on_next_load_for_tests(self) -> None:
        """Test hook: the process's next model (re)load never returns."""
        await self._call(child.hang_on_next_load_for_tests)

    def kill(self) -> None:
        """Kill the process now (it is stuck); its pending call then fails as a crash would."""
        for process in executor_processes(self._executor):
            process.kill()

    async def shutdown(self, state: str = "stopped") -> None:
        """Stop the process for good: let it exit, then terminate, then kill."""
        executor, self._executor, self.state = self._executor, None, state
        if executor is None:
            return
        processes = executor_processes(executor)
        call_queue = getattr(executor, "_call_queue", None)  # shutdown() drops the reference
        executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(_reap, processes)
        _unblock_feeder(call_queue)

    async def _call(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise RuntimeError(f"{self.name} is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def executor_processes(executor: ProcessPoolExecutor | None) -> list[BaseProcess]:
    # ``_processes`` is private but stable since Python 3.2; the executor has no public way
    # to reach its processes, and a stuck one must not outlive us.
    return list((getattr(executor, "_processes", None) or {}).values())


def _stdlib_unblocks_feeder() -> bool:
    """Whether this Python's ProcessPoolExecutor closes the call queue's read end itself
    when a worker dies (CPython fixed this during 3.11; Debian 12's 3.11.2 lacks it)."""
    try:
        source = inspect.getsource(cf_process._ExecutorManagerThread.terminate_broken)
    except (OSError, TypeError, AttributeError):
        return False
    return "_reader.close()" in source


_FEEDER_WORKAROUND = not _stdlib_unblocks_feeder()


def _unblock_feeder(call_queue: Any) -> None:
    """Close the parent's copy of the call queue's read end once the process is gone.

    A worker that dies while a large batch (image bytes) is still in the pipe leaves the
    executor's feeder thread blocked in ``write()`` for ever, and interpreter exit joins that
    thread: the process hangs. With no reader left, the write fails with EPIPE and the thread
    ends. Only done where the standard library does not do it already: a second closer
    could race with it and close a descriptor number that a new pipe has reused.
    """
    if not _FEEDER_WORKAROUND:
        return
    reader = getattr(call_queue, "_reader", None)
    if reader is not None:
        with contextlib.suppress(OSError):
            reader.close()


def _reap(processes: list[BaseProcess]) -> None:
    """Join processes; terminate, then kill, those still running after a grace period."""
    for process in processes:
        process.join(_STOP_GRACE_S)
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(_STOP_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
