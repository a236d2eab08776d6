"""Telling a stuck worker from a slow one, by the CPU time it uses (read from ``/proc``).

A batch's deadline used to be wall-clock time: on a loaded machine a valid 40-megapixel PNG
could pass it while its worker was working, only waiting for a core, and the worker was
killed as stuck and the image answered "too complex". What marks a stuck worker is what
its CPU does: a decoder caught in a loop burns CPU past any healthy batch's need; a frozen
or deadlocked one burns none. So :func:`run_unless_stuck` gives up on a batch when

* its worker has used more than ``budget_s`` seconds of CPU since the batch started, or
* ``budget_s`` seconds of wall time have passed and the worker used (next to) no CPU in the
  last second: frozen, not slow, or
* ``limit_s`` seconds of wall time have passed (every caller's deadline is gone).

Where ``/proc`` cannot be read (not Linux, or the pid is unknown) the deadline is
``budget_s`` of wall time, as before.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Awaitable
from typing import Final, TypeVar

__all__ = ["cpu_seconds", "run_unless_stuck"]

T = TypeVar("T")

POLL_S: Final = 0.25
PROGRESS_WINDOW_S: Final = 1.0
IDLE_CPU_S: Final = 0.02  # CPU seconds per window below which a worker counts as frozen
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads); ``None`` when that
    cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name (field 2) is in parentheses and may hold spaces: fields after it.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime: fields 14, 15
    except (OSError, ValueError, IndexError):
        return None


async def run_unless_stuck(
    work: Awaitable[T], pid: int | None, budget_s: float, limit_s: float
) -> T:
    """Await ``work`` (a batch running in process ``pid``); cancel it and raise
    :class:`TimeoutError` when that process is stuck (see the module docstring)."""
    task = asyncio.ensure_future(work)
    start_cpu = cpu_seconds(pid)
    if start_cpu is None:
        async with asyncio.timeout(min(budget_s, limit_s)):
            return await task
    started = time.monotonic()
    samples: deque[tuple[float, float]] = deque([(started, start_cpu)])
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                return task.result()
            now, cpu = time.monotonic(), cpu_seconds(pid)
            if now - started >= limit_s:
                break
            if cpu is None:  # the process is gone: its executor reports that
                continue
            if cpu - start_cpu > budget_s:
                break
            samples.append((now, cpu))
            while len(samples) > 2 and now - samples[1][0] >= PROGRESS_WINDOW_S:
                samples.popleft()
            window_start, window_cpu = samples[0]
            idle = now - window_start >= PROGRESS_WINDOW_S and cpu - window_cpu < IDLE_CPU_S
            if idle and now - started >= budget_s:
                break
    except BaseException:
        task.cancel()
        raise
    task.cancel()
    raise TimeoutError
