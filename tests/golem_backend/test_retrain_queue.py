"""The fair retrain queue: one per tenant, a bounded number at once, a deadline."""

from __future__ import annotations

import asyncio

import pytest

from golem_backend import BackendBusy, BackendTimeout
from golem_backend.retrain_queue import RetrainQueue

pytestmark = pytest.mark.asyncio


class Gate:
    """A retrain that records when it ran and finishes when released."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self) -> str:
        self.log.append(f"start {self.name}")
        self.started.set()
        await self.release.wait()
        self.log.append(f"end {self.name}")
        return self.name


async def test_a_second_retrain_for_the_same_tenant_is_refused_at_once():
    queue = RetrainQueue(concurrency=1, timeout_s=10)
    log: list[str] = []
    first = Gate("a1", log)
    task = asyncio.create_task(queue.run("guild:1", first))
    await first.started.wait()
    with pytest.raises(BackendBusy, match="retrain for this server is already running"):
        await queue.run("guild:1", Gate("a2", log))
    first.release.set()
    assert await task == "a1"
    assert log == ["start a1", "end a1"]
    second = Gate("a3", log)
    second.release.set()
    assert await queue.run("guild:1", second) == "a3"  # free again once finished


async def test_a_waiting_retrain_also_counts_as_its_tenants_one():
    queue = RetrainQueue(concurrency=1, timeout_s=10)
    log: list[str] = []
    a, b = Gate("a", log), Gate("b", log)
    ta = asyncio.create_task(queue.run("guild:1", a))
    await a.started.wait()
    tb = asyncio.create_task(queue.run("guild:2", b))
    await asyncio.sleep(0.01)
    assert (queue.running, queue.waiting) == (1, 1)
    with pytest.raises(BackendBusy):
        await queue.run("guild:2", Gate("b2", log))
    with pytest.raises(BackendBusy, match="the default model"):
        await asyncio.gather(queue.run(None, Gate("d", log)), queue.run(None, Gate("d2", log)))
    a.release.set()
    b.release.set()
    await asyncio.gather(ta, tb)


async def test_concurrency_bounds_how_many_run_and_waiters_go_in_arrival_order():
    queue = RetrainQueue(concurrency=2, timeout_s=10)
    log: list[str] = []
    gates = [Gate(f"g{i}", log) for i in range(4)]
    tasks = [asyncio.create_task(queue.run(f"guild:{i}", g)) for i, g in enumerate(gates)]
    await gates[0].started.wait()
    await gates[1].started.wait()
    await asyncio.sleep(0.01)
    assert queue.running == 2 and not gates[2].started.is_set()
    gates[1].release.set()
    await gates[2].started.wait()
    assert not gates[3].started.is_set()
    for g in gates:
        g.release.set()
    assert await asyncio.gather(*tasks) == ["g0", "g1", "g2", "g3"]
    starts = [e for e in log if e.startswith("start")]
    assert starts == ["start g0", "start g1", "start g2", "start g3"]


async def test_the_deadline_counts_the_wait_and_cancels_the_retrain():
    queue = RetrainQueue(concurrency=1, timeout_s=0.2)
    log: list[str] = []
    blocker, waiter = Gate("blocker", log), Gate("waiter", log)
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            return await blocker()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    t1 = asyncio.create_task(queue.run("guild:1", slow))
    t2 = asyncio.create_task(queue.run("guild:2", waiter))
    for task in (t1, t2):
        with pytest.raises(BackendTimeout, match="RETRAIN_TIMEOUT_S"):
            await task
    assert cancelled.is_set()  # the running retrain was cancelled (its clean-up ran)
    assert not waiter.started.is_set()  # the waiting one never started
    assert (queue.running, queue.waiting) == (0, 0)
    assert not queue.busy("guild:1") and not queue.busy("guild:2")


async def test_a_timeout_raised_by_the_retrain_itself_is_not_the_deadline():
    queue = RetrainQueue(concurrency=1, timeout_s=10)

    async def fails() -> None:
        raise TimeoutError("a read timed out")

    with pytest.raises(TimeoutError, match="a read timed out"):
        await queue.run("guild:1", fails)


async def test_an_error_frees_the_tenant():
    queue = RetrainQueue(concurrency=1, timeout_s=10)

    async def boom() -> None:
        raise RuntimeError("bad")

    with pytest.raises(RuntimeError):
        await queue.run("guild:1", boom)
    assert not queue.busy("guild:1")
