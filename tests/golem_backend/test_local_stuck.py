"""golem_backend.local.stuck against real processes: a loaded worker is slow, not stuck;
a frozen one and a spinning one are stuck."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from golem_backend.local.stuck import cpu_seconds, run_unless_stuck

SPIN = "while True: pass"
# about a third of a core: the CPU a worker gets on a machine loaded three times over
THROTTLED = (
    "import time\n"
    "while True:\n"
    "    end = time.monotonic() + 0.03\n"
    "    while time.monotonic() < end: pass\n"
    "    time.sleep(0.06)\n"
)


@pytest.fixture
def process(request) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", request.param])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def finishes_after(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "answer"


def test_cpu_seconds_reads_a_process_and_refuses_what_it_cannot():
    own = cpu_seconds(os.getpid())
    assert own is not None and own > 0
    busy_until = time.process_time() + 0.2
    while time.process_time() < busy_until:
        pass
    assert cpu_seconds(os.getpid()) >= own + 0.15  # type: ignore[operator]
    assert cpu_seconds(None) is None
    assert cpu_seconds(2**22 + 12345) is None  # beyond pid_max: never a process


@pytest.mark.parametrize("process", [THROTTLED], indirect=True)
async def test_a_slow_but_working_process_is_waited_for(process):
    """Past its budget in wall time, within it in CPU time: the answer is kept."""
    started = time.monotonic()
    got = await run_unless_stuck(finishes_after(3.0), process.pid, budget_s=1.5, limit_s=30)
    assert got == "answer" and time.monotonic() - started >= 3.0


@pytest.mark.parametrize("process", [SPIN], indirect=True)
async def test_a_frozen_process_is_stuck_after_its_budget(process):
    os.kill(process.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_unless_stuck(finishes_after(60), process.pid, budget_s=1.5, limit_s=30)
    assert 1.5 <= time.monotonic() - started < 4


@pytest.mark.parametrize("process", [SPIN], indirect=True)
async def test_a_process_burning_past_its_cpu_budget_is_stuck(process):
    started_cpu = cpu_seconds(process.pid) or 0.0
    with pytest.raises(TimeoutError):
        await run_unless_stuck(finishes_after(60), process.pid, budget_s=1.0, limit_s=30)
    assert (cpu_seconds(process.pid) or 0.0) - started_cpu > 1.0


@pytest.mark.parametrize("process", [THROTTLED], indirect=True)
async def test_the_wall_clock_limit_still_ends_a_slow_process(process):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_unless_stuck(finishes_after(60), process.pid, budget_s=30, limit_s=2.0)
    assert 2.0 <= time.monotonic() - started < 4


async def test_without_proc_the_budget_is_wall_time():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await run_unless_stuck(finishes_after(60), None, budget_s=1.0, limit_s=30)
    assert 1.0 <= time.monotonic() - started < 2
    assert await run_unless_stuck(finishes_after(0.1), None, 1.0, 30) == "answer"


async def test_the_work_is_cancelled_when_given_up():
    work = asyncio.ensure_future(finishes_after(60))
    with pytest.raises(TimeoutError):
        await run_unless_stuck(work, None, budget_s=0.2, limit_s=30)
    await asyncio.sleep(0)
    assert work.cancelled()
