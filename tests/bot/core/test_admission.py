"""Admission by expected wait, fair between servers: shares, the idle server's first
request, refusal only past the bound, the estimate following the throughput, drain at
shutdown, cancellation, 1000 requests at once, and properties of random scenarios."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable

import pytest
from hypothesis import event as label_example
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.admission import (
    BACKLOG_FACTOR,
    PATHS,
    Admission,
    BacklogFull,
    NoCapacity,
    QueueFull,
    Turn,
)
from bot.core.errors import Busy, ShuttingDown, explain
from golem_backend import Capacity
from golem_backend.throughput import ThroughputMeter


class FixedCapacity:
    """A backend's ``capacity`` the test sets by hand."""

    def __init__(self, rate: float = 1000.0, slots: int = 8, in_flight: int = 0) -> None:
        self.rate, self.slots, self.in_flight = rate, slots, in_flight

    def __call__(self) -> Capacity:
        return Capacity(self.rate, self.in_flight, self.slots, 1, measured=True)


class Request:
    """One request through the door; an admitted one holds its turn until finished."""

    def __init__(self, door: Door, server: int | None, member: int, path: str, images: int):
        self.server, self.member, self.path, self.images = server, member, path, images
        self.finish = asyncio.Event()
        self.turn: Turn | None = None
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.queued_calls: list[float] = []
        self.entered = 0
        self.task = asyncio.create_task(self._run(door))

    async def _on_queued(self, turn: Turn) -> None:
        self.queued_calls.append(turn.expected_wait_s)

    async def _run(self, door: Door) -> None:
        try:
            async with door.admission.enter(
                server_id=self.server,
                member_id=self.member,
                path=self.path,
                images=self.images,
                on_queued=self._on_queued,
            ) as turn:
                self.turn = turn
                self.entered += 1
                door.released.append(self)
                await self.finish.wait()
            self.outcome = "answered"
        except (QueueFull, BacklogFull, NoCapacity) as exc:
            self.outcome, self.error = exc.reason, exc
        except ShuttingDown as exc:
            self.outcome, self.error = "shutting_down", exc
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise

    @property
    def holding(self) -> bool:
        return self.entered == 1 and self.outcome is None and not self.finish.is_set()


class Door:
    def __init__(self, capacity: Callable[[], Capacity], max_wait_s: float = 1e9) -> None:
        self.admission = Admission(capacity, max_wait_s)
        self.released: list[Request] = []
        self.requests: list[Request] = []

    def arrive(
        self, server: int | None, member: int = 1, path: str = "classify", images: int = 1
    ) -> Request:
        request = Request(self, server, member, path, images)
        self.requests.append(request)
        return request

    def holders(self) -> list[Request]:
        return [r for r in self.released if r.holding]

    async def finish_oldest(self) -> Request:
        request = self.holders()[0]
        request.finish.set()
        await settle()
        return request


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def assert_empty(admission: Admission) -> None:
    stats = admission.stats()
    assert (stats.queued_requests, stats.queued_images, stats.released_images) == (0, 0, 0)
    assert stats.servers_waiting == 0 and not admission._tasks and not admission._cancelled


# --- fairness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("servers", [1, 2, 3])
async def test_busy_servers_share_the_backend_by_images(servers):
    capacity = FixedCapacity(slots=8)
    door = Door(capacity)
    sizes = {0: 1, 1: 4, 2: 2}  # server 1 asks for 4 images at a time
    for server in range(servers):
        for _ in range(240 // sizes[server]):
            door.arrive(server, member=server, images=sizes[server])
    await settle()
    released = []
    while all(door.admission._queue.queued_for(("server", s)) for s in range(servers)):
        assert door.admission.stats().released_images <= capacity.slots
        released.append(await door.finish_oldest())
    images = Counter[int]()
    for request in released:
        images[request.server] += request.images  # type: ignore[index]
    total = sum(images.values())
    for server in range(servers):
        assert abs(images[server] / total - 1 / servers) < 0.03, images
    if servers == 1:  # one server: its own order
        order = [r for r in door.released]
        assert order == door.requests[: len(order)]
    while door.holders():
        await door.finish_oldest()
    assert all(r.outcome == "answered" for r in door.requests)
    assert_empty(door.admission)


async def test_an_idle_servers_first_request_goes_next():
    capacity = FixedCapacity(slots=4)
    door = Door(capacity)
    for i in range(300):
        door.arrive(1, member=i)  # one server's burst
    for i in range(100):
        door.arrive(2, member=i, images=2)  # and another's
    await settle()
    for _ in range(20):
        await door.finish_oldest()
    newcomer = door.arrive(3, member=7)
    await settle()
    assert not newcomer.holding and newcomer.queued_calls  # it waits: the backend is full
    before = len(door.released)
    await door.finish_oldest()  # one request answered: the first to go is the newcomer
    assert door.released[before] is newcomer
    assert newcomer.turn is not None and newcomer.turn.expected_wait_s < 0.01


async def test_a_request_that_need_not_wait_is_not_shown_as_queued():
    door = Door(FixedCapacity(slots=8))
    request = door.arrive(1)
    await settle()
    assert request.holding and request.queued_calls == []
    assert request.turn is not None and request.turn.waited_s is not None
    request.finish.set()
    await settle()
    assert_empty(door.admission)


async def test_a_request_larger_than_the_slots_goes_alone():
    capacity = FixedCapacity(slots=4)
    door = Door(capacity)
    big = door.arrive(1, images=10)
    small = door.arrive(2)
    await settle()
    assert big.holding and not small.holding  # alone, then the rest
    await door.finish_oldest()
    assert small.holding


# --- the bound ------------------------------------------------------------------------------


async def test_refused_only_past_the_bound_with_when_to_try_again():
    """10 images/s, a 2 s bound, 4 slots: 4 released and 16 waiting fill exactly 2 s
    (the 20th waits 2.0 s: admitted); the 21st would wait 2.1 s: refused."""
    door = Door(FixedCapacity(rate=10.0, slots=4), max_wait_s=2.0)
    burst = [door.arrive(1, member=i) for i in range(25)]
    await settle()
    admitted = [r for r in burst if r.outcome is None]
    assert len(admitted) == 20
    waits = [r.turn.expected_wait_s if r.turn else r.queued_calls[0] for r in admitted]
    assert max(waits) == pytest.approx(2.0) and all(w <= 2.0 for w in waits)
    refused = [r for r in burst if r.outcome == "queue_full"]
    assert refused == burst[20:]
    first = refused[0].error
    assert isinstance(first, QueueFull) and isinstance(first, Busy)
    assert first.expected_wait_s == pytest.approx(2.1) and first.retry_after_s == 1
    assert explain(first) == (
        "I'm busy: about 2 s of images are waiting ahead of yours. Please try again in about 1 s."
    )
    # another server's request is not behind this server's backlog: admitted
    other = door.arrive(2, member=99)
    await settle()
    assert other.outcome is None and other.queued_calls[0] == pytest.approx(0.5)
    stats = door.admission.stats()
    assert stats.refused == {("classify", "queue_full"): 5}
    assert stats.queued_requests == 17 and stats.released_images == 4


async def test_images_count_not_requests():
    door = Door(FixedCapacity(rate=10.0, slots=4), max_wait_s=2.0)
    door.arrive(1, images=4)  # released: 4 in flight
    for _ in range(4):  # 0.8, 1.2, 1.6 and 2.0 s
        door.arrive(1, images=4, path="menu")
    door.arrive(1, images=1, path="menu")  # 2.1 s
    door.arrive(2, images=1, path="menu")  # another server's: 0.5 s
    await settle()
    outcomes = [r.outcome for r in door.requests]
    assert outcomes == [None, None, None, None, None, "queue_full", None]


async def test_the_whole_backlog_is_capped_at_twice_the_bound():
    """100 servers' bursts of 20, one server after another: each request is admitted on
    the work ahead of it in the fair order (at most the 1 s bound), but later servers go
    ahead of earlier servers' tails, so the last one admitted would be answered after all
    of them: without the cap 583 images at 200/s, 2.9 s. Nothing is admitted once the
    whole backlog would take more than twice the bound: the last answer comes within
    2 s of work."""
    rate, bound = 200.0, 1.0
    door = Door(FixedCapacity(rate=rate, slots=16), max_wait_s=bound)
    for server in range(100):
        for member in range(20):
            door.arrive(server, member=member)
    await settle()
    admitted = [r for r in door.requests if r.outcome is None]
    backlog_full = [r for r in door.requests if r.outcome == "backlog_full"]
    assert backlog_full, "the cap was never reached"
    assert all(r.error.expected_wait_s > BACKLOG_FACTOR * bound for r in backlog_full)  # type: ignore[union-attr]
    assert len(admitted) <= BACKLOG_FACTOR * bound * rate
    first = explain(backlog_full[0].error)  # type: ignore[arg-type]
    assert first is not None and first.startswith("I'm busy: about 2 s of images are waiting.")
    order: list[Request] = []
    while door.holders():
        order.append(await door.finish_oldest())
    assert len(order) == len(admitted)  # the last answer: len(order) / rate s after the burst
    assert all(r.outcome == "answered" for r in admitted)
    # the price: once the backlog is full, a server that arrives later is refused even
    # its first request (one server alone never fills it: its own wait stops at the bound)
    assert {r.server for r in admitted} == set(range(max(r.server for r in admitted) + 1))
    # with the backlog gone, a newcomer is admitted at once
    newcomer = door.arrive(500)
    await settle()
    assert newcomer.holding
    newcomer.finish.set()
    await settle()
    assert_empty(door.admission)


async def test_nothing_serving_is_refused_as_no_capacity_and_nothing_waits_for_ever():
    capacity = FixedCapacity(rate=0.0, slots=0)
    door = Door(capacity, max_wait_s=10.0)
    request = door.arrive(1)
    await settle()
    assert request.outcome == "no_capacity"
    assert "No classifier is running right now" in explain(request.error)  # type: ignore[arg-type]
    capacity.rate = 50.0  # back, no slots reported yet: one request at a time still goes
    a, b = door.arrive(1), door.arrive(1)
    await settle()
    assert a.holding and not b.holding
    await door.finish_oldest()
    assert b.holding


async def test_the_expected_wait_follows_a_throughput_change():
    """The estimate from a real ThroughputMeter: 100 images/s, then the backend slows to
    50 images/s; the same backlog's expected wait doubles and fewer requests fit."""
    now = [0.0]
    meter = ThroughputMeter(100.0, clock=lambda: now[0])

    def capacity() -> Capacity:
        rate, measured = meter.images_per_s(["w"])
        return Capacity(rate, 0, 8, 1, measured)

    def work(images_per_s: float, busy_s: float) -> None:
        for _ in range(int(busy_s * images_per_s / 8)):
            meter.started("w")
            now[0] += 8 / images_per_s
            meter.finished("w", 8)

    door = Door(capacity, max_wait_s=1.0)
    work(100.0, 5.0)
    for i in range(60):
        door.arrive(1, member=i)
    await settle()
    fast = door.admission.expected_wait_s(1, 0)
    assert fast == pytest.approx(61 / 100, rel=0.02)
    work(50.0, 8.0)
    slow = door.admission.expected_wait_s(1, 0)
    assert slow == pytest.approx(61 / 50, rel=0.05)
    late = door.arrive(1, member=999)
    await settle()
    assert late.outcome == "queue_full"  # 1.2 s: past the bound now
    assert door.admission.stats().images_per_s == pytest.approx(50.0, rel=0.05)


# --- cancellation and shutdown --------------------------------------------------------------


async def test_a_waiting_request_cancelled_leaves_nothing_behind():
    door = Door(FixedCapacity(slots=4))
    requests = [door.arrive(1, member=i) for i in range(14)]
    await settle()
    waiting = [r for r in requests if not r.holding]
    assert len(waiting) == 10
    waiting[3].task.cancel()  # the member's interaction expired
    await settle()
    assert waiting[3].outcome == "cancelled" and waiting[3].entered == 0
    assert door.admission.stats().queued_requests == 9
    while door.holders():
        await door.finish_oldest()
    assert [r.outcome for r in requests].count("answered") == 13
    assert_empty(door.admission)


async def test_a_request_cancelled_just_as_its_turn_came_gives_its_images_back():
    door = Door(FixedCapacity(slots=2))
    first, second, third = door.arrive(1, images=2), door.arrive(1, images=2), door.arrive(1)
    await settle()
    assert first.holding and door.admission.stats().released_images == 2
    assert first.turn is not None
    first.turn.done()  # the backend answered: the second is released at once...
    second.task.cancel()  # ...and its member's interaction expires before it runs
    first.finish.set()
    await settle()
    assert second.outcome == "cancelled" and second.entered == 0
    assert third.holding and door.admission.stats().released_images == 1
    third.finish.set()
    await settle()
    assert_empty(door.admission)


async def test_drain_tells_every_waiting_request_and_cuts_off_the_rest():
    door = Door(FixedCapacity(slots=4))
    requests = [door.arrive(i % 3, member=i) for i in range(60)]
    await settle()
    holders = door.holders()
    assert len(holders) == 4

    stuck = asyncio.Event()

    async def on_queued_forever(turn: Turn) -> None:
        await stuck.wait()  # e.g. a "thinking..." defer that Discord never answers

    async def slow_caller() -> str:
        try:
            async with door.admission.enter(
                server_id=9, member_id=9, path="menu", images=1, on_queued=on_queued_forever
            ):
                return "answered"
        except ShuttingDown:
            return "shutting_down"

    slow = asyncio.create_task(slow_caller())
    await settle()
    started = time.monotonic()
    drain = asyncio.create_task(door.admission.drain(grace_s=0.5))
    await settle()
    told = [r for r in requests if r not in holders]
    assert all(r.outcome == "shutting_down" for r in told)  # at once, not after the grace
    assert time.monotonic() - started < 0.4
    await drain
    assert time.monotonic() - started < 0.5 + 1.0
    assert all(r.outcome == "shutting_down" for r in holders)  # cut off after the grace
    assert await slow == "shutting_down"
    assert all(r.task.done() for r in requests)
    late = door.arrive(1)
    await settle()
    assert late.outcome == "shutting_down"
    stats = door.admission.stats()
    assert stats.refused[("classify", "shutting_down")] == 56 + 1
    assert stats.refused[("menu", "shutting_down")] == 1
    assert_empty(door.admission)


async def test_tracked_work_is_refused_once_closing_and_cut_off_after_the_grace():
    """A retrain holds no images but must finish, or be told, before the bot stops."""
    admission = Admission(FixedCapacity(), max_wait_s=10.0)
    finished = asyncio.Event()

    async def retrain(seconds: float) -> str:
        try:
            async with admission.tracked():
                await asyncio.sleep(seconds)
                finished.set()
                return "finished"
        except ShuttingDown:
            return "shutting_down"

    quick, slow = asyncio.create_task(retrain(0.1)), asyncio.create_task(retrain(60))
    await settle()
    started = time.monotonic()
    await admission.drain(grace_s=0.5)
    assert await quick == "finished" and finished.is_set()  # given the grace
    assert await slow == "shutting_down"  # cut off after it, and told why
    assert 0.5 <= time.monotonic() - started < 1.5
    assert await asyncio.create_task(retrain(0)) == "shutting_down"  # refused once closing
    await settle()
    assert_empty(admission)


# --- a thousand at once ---------------------------------------------------------------------


class SimulatedBackend:
    """Answers images at ``rate`` per second in batches of up to ``batch``, its capacity
    measured by a real ThroughputMeter (a stand-in for a worker, on real time)."""

    def __init__(self, rate: float, batch: int = 8) -> None:
        self.rate, self.batch = rate, batch
        self.meter = ThroughputMeter(rate)
        self.waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self.in_flight = 0
        self.wakeup = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    def capacity(self) -> Capacity:
        rate, measured = self.meter.images_per_s(["sim"])
        return Capacity(rate, self.in_flight, 2 * self.batch, 1, measured)

    async def classify(self, images: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((images, future))
        self.in_flight += images
        self.wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.waiting:
                batch = [self.waiting.popleft()]
                while self.waiting and sum(n for n, _ in batch) < self.batch:
                    batch.append(self.waiting.popleft())
                images = sum(n for n, _ in batch)
                self.meter.started("sim")
                await asyncio.sleep(images / self.rate)
                self.meter.finished("sim", images)
                self.in_flight -= images
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


async def test_a_thousand_at_once_each_answered_or_refused_at_once_and_none_lost():
    backend = SimulatedBackend(rate=400.0)
    admission = Admission(backend.capacity, max_wait_s=1.0)
    arrivals = [(s, m) for s in range(20) for m in range(45)] + [(None, m) for m in range(100)]
    random.Random(20).shuffle(arrivals)
    outcomes: dict[int, tuple[str, float, object]] = {}

    async def one(i: int, server: int | None, member: int) -> None:
        arrived = time.monotonic()
        try:
            async with admission.enter(
                server_id=server, member_id=member, path="auto_reply", images=1
            ) as turn:
                await backend.classify(1)
                turn.done()
            outcomes[i] = ("answered", time.monotonic() - arrived, turn)
        except QueueFull as exc:
            outcomes[i] = ("refused", time.monotonic() - arrived, exc)

    started = time.monotonic()
    tasks = [asyncio.create_task(one(i, s, m)) for i, (s, m) in enumerate(arrivals)]
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    elapsed = time.monotonic() - started

    assert len(outcomes) == 1000  # none lost
    refused = [o for o in outcomes.values() if o[0] == "refused"]
    answered = [o for o in outcomes.values() if o[0] == "answered"]
    assert len(refused) + len(answered) == 1000
    assert all(took < 3.0 for _, took, _ in refused)
    assert all(exc.expected_wait_s > 1.0 for _, _, exc in refused)  # type: ignore[union-attr]
    assert all(turn.expected_wait_s <= 1.0 for _, _, turn in answered)  # type: ignore[union-attr]
    # About a second of work, and more: each server's request is judged by the work ahead
    # of it in the fair order at its arrival, and servers arriving later go ahead of
    # earlier servers' tails (with 121 servers and DMs here, ~1.25 s of work in all).
    assert 350 <= len(answered) <= 600, len(answered)
    assert max(took for _, took, _ in answered) < 3 * 1.0 + 1.0
    by_server = Counter(arrivals[i][0] for i, o in outcomes.items() if o[0] == "answered")
    assert by_server[None] == 100  # every member's first request in DMs went ahead
    assert min(by_server[s] for s in range(20)) >= 8  # the servers shared the rest
    assert elapsed < 10.0, elapsed

    # right after: a request is answered as if nothing had happened
    async def right_after() -> float:
        t0 = time.monotonic()
        async with admission.enter(server_id=77, member_id=1, path="classify", images=1) as t:
            assert t.waited_s is not None and t.waited_s < 0.05
            await backend.classify(1)
        return time.monotonic() - t0

    assert await asyncio.create_task(right_after()) < 0.5
    await settle()  # the tasks' done callbacks
    assert_empty(admission)
    backend.task.cancel()


# --- odds and ends --------------------------------------------------------------------------


async def test_stats_and_hooks_count_per_path_and_reason():
    now = [100.0]
    capacity = FixedCapacity(rate=10.0, slots=1)
    admission = Admission(capacity, max_wait_s=0.35, clock=lambda: now[0])
    door = Door(capacity)
    door.admission = admission
    seen: list[tuple[str, object]] = []
    admission.on_admitted = lambda turn: seen.append((turn.path, turn.waited_s))
    admission.on_refused = lambda path, reason: seen.append((path, reason))
    first = door.arrive(1, path="teach_as")
    second = door.arrive(2, path="correction")
    third = door.arrive(3, path="review_approval")
    fourth = door.arrive(4, path="review_approval")
    await settle()
    assert fourth.outcome == "queue_full"  # 1 in flight + 2 ahead + 1 = 0.4 s
    stats = admission.stats()
    assert (stats.queued_requests, stats.released_images, stats.servers_waiting) == (2, 1, 2)
    # a newcomer starts where the two waiting did, after them: 1 in flight + 2 + itself
    assert stats.expected_wait_s == pytest.approx(0.4)
    assert stats.backlog_s == pytest.approx(0.3)
    now[0] += 0.25
    await door.finish_oldest()
    assert second.holding
    assert seen == [
        ("teach_as", 0.0),
        ("review_approval", "queue_full"),
        ("correction", pytest.approx(0.25)),
    ]
    stats = admission.stats()
    assert stats.admitted == {"teach_as": 1, "correction": 1}
    assert stats.waited_s == {"teach_as": 0.0, "correction": pytest.approx(0.25)}
    assert stats.refused == {("review_approval", "queue_full"): 1}
    assert first.outcome == "answered" and third.outcome is None


async def test_bad_arguments_are_bugs_not_refusals():
    admission = Admission(FixedCapacity(), max_wait_s=10.0)
    with pytest.raises(ValueError, match="unknown admission path"):
        async with admission.enter(server_id=1, member_id=1, path="bogus", images=1):
            pass
    with pytest.raises(ValueError, match="at least one image"):
        async with admission.enter(server_id=1, member_id=1, path="classify", images=0):
            pass
    assert_empty(admission)
    assert set(PATHS) >= {"classify", "menu", "auto_reply", "teach_as", "correction"}


# --- properties -----------------------------------------------------------------------------

ARRIVE = st.tuples(
    st.just("arrive"), st.sampled_from([0, 1, 2, None]), st.integers(1, 4), st.integers(1, 4)
)
EVENTS = st.lists(
    st.one_of(
        ARRIVE,
        ARRIVE,
        ARRIVE,  # arrivals three times as often as anything else
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("rate"), st.sampled_from([0.0, 2.0, 5.0, 50.0])),
        st.tuples(st.just("slots"), st.integers(0, 8)),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.booleans())
def test_property_every_request_is_admitted_once_or_refused_once(events, drain_at_end):
    label_example(f"drain: {drain_at_end}")
    asyncio.run(_scenario(events, drain_at_end))


async def _scenario(events: list[tuple], drain_at_end: bool) -> None:
    capacity = FixedCapacity(rate=3.0, slots=4)
    door = Door(capacity, max_wait_s=2.0)
    admission = door.admission
    released: Counter[int] = Counter()  # by member id: each request has its own
    over_slots: list[tuple[int, int]] = []

    def on_admitted(turn: Turn) -> None:
        released[turn.member_id] += 1
        held = admission.stats().released_images
        if held != turn.images and held > capacity.slots:  # only a request alone may
            over_slots.append((held, capacity.slots))

    admission.on_admitted = on_admitted
    rate_at_arrival: dict[int, float] = {}
    for event in events:
        kind = event[0]
        if kind == "arrive":
            _, server, images = event[0], event[1], event[3]
            member = len(door.requests)
            rate_at_arrival[member] = capacity.rate
            door.arrive(server, member=member, images=images)
        elif kind == "finish" and door.holders():
            holders = door.holders()
            holders[event[1] % len(holders)].finish.set()
        elif kind == "cancel":
            live = [r for r in door.requests if not r.task.done()]
            if live:
                live[event[1] % len(live)].task.cancel()
        elif kind == "rate":
            capacity.rate = event[1]
        elif kind == "slots":
            capacity.slots = event[1]
        await settle()
        holding = sum(r.images for r in door.requests if released[r.member] and not r.task.done())
        assert admission.stats().released_images == holding
    if drain_at_end:
        await admission.drain(grace_s=0.01)
    else:
        capacity.rate = max(capacity.rate, 1.0)
        while not all(r.task.done() for r in door.requests):
            for request in door.requests:
                request.finish.set()
            await settle()
    await asyncio.gather(*(r.task for r in door.requests), return_exceptions=True)

    assert not over_slots, over_slots
    for request in door.requests:
        outcome = request.outcome
        label_example(f"outcome: {outcome}")
        assert outcome in (
            "answered",
            "queue_full",
            "backlog_full",
            "no_capacity",
            "shutting_down",
            "cancelled",
        )
        assert released[request.member] <= 1  # released at most once
        assert request.entered <= 1
        if outcome == "answered":
            assert request.entered == 1 and released[request.member] == 1
        if request.entered:
            assert released[request.member] == 1
        if outcome in ("queue_full", "backlog_full", "no_capacity"):  # refused at the door
            assert request.entered == 0 and released[request.member] == 0
            assert request.turn is None and not request.queued_calls
        if outcome == "queue_full":
            assert request.error.expected_wait_s > 2.0  # type: ignore[union-attr]
        if outcome == "backlog_full":
            assert request.error.expected_wait_s > BACKLOG_FACTOR * 2.0  # type: ignore[union-attr]
        assert (outcome == "no_capacity") == (rate_at_arrival[request.member] == 0.0)
    stats = admission.stats()
    assert sum(stats.admitted.values()) == sum(released.values())
    refusals = Counter(
        r.outcome
        for r in door.requests
        if r.outcome in ("queue_full", "backlog_full", "no_capacity")
    )
    for reason, count in refusals.items():
        assert sum(n for (_, why), n in stats.refused.items() if why == reason) == count
    assert_empty(admission)
