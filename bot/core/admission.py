"""Admission by expected wait: one door for every path that classifies.

A request (a server, or ``None`` in DMs; a member; a path; a size in images) is refused
only when its *expected wait* would pass ``max_wait_s`` (``MAX_QUEUE_WAIT_S``):

    expected wait = (images in flight + images ahead of it in the fair order + its own)
                    / the backend's measured images per second

(``Backend.capacity()``), or when the whole backlog (everything in flight and waiting,
and its own images) would take more than :data:`BACKLOG_FACTOR` times the bound: servers
that arrive later go ahead of earlier servers' tails, so without that cap a burst from
many servers at once keeps the last requests of the first ones waiting up to several
times the bound (three times with 100 servers of 20 requests each, arriving server after
server); with it, about twice at most, the price being that a server arriving while the
backlog is that full is refused even its first request (one server alone never fills it:
its own wait stops at the bound). Otherwise it queues in a fair queue across servers
(:mod:`bot.core.fair_queue`: an idle server's first request goes next, N busy servers
get about 1/N each, in images), and is *released* when its turn comes: the queue keeps
the backend just busy, with about ``Capacity.slots`` images handed over and not yet
answered (a request larger than that goes alone), so the fair order, not the backend's
own queue, decides who goes next. A released request holds its images until its turn
ends (:meth:`Turn.done`, or leaving the ``async with``).

::

    async with admission.enter(server_id=g, member_id=m, path="classify", images=1,
                               on_queued=show_thinking) as turn:
        ...download, classify...
        turn.done()  # the backend has answered: the next request may go
    ...reply...

Refusals are typed errors carrying the user's message: :class:`QueueFull` and
:class:`BacklogFull` (each says when to try again), :class:`NoCapacity` (nothing
serves), and ``ShuttingDown``. A waiting request
whose task is cancelled (its interaction expired) leaves the queue with nothing held.
:meth:`Admission.drain` (shutdown) tells every waiting request at once, gives released
ones ``grace_s`` to finish, then cancels them (each answers ``ShuttingDown``); work that
classifies nothing but must finish before the bot stops (a retrain) is tracked the same
way with :meth:`Admission.tracked`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from bot.core.errors import Busy, ShuttingDown, UserError
from bot.core.fair_queue import Entry, FairQueue
from golem_backend import Capacity

__all__ = [
    "BACKLOG_FACTOR",
    "PATHS",
    "Admission",
    "AdmissionStats",
    "BacklogFull",
    "NoCapacity",
    "QueueFull",
    "Turn",
]

log = logging.getLogger(__name__)

PATHS: Final = (
    "classify",  # /classify
    "menu",  # the "Classify image" message menu
    "auto_reply",  # images posted in watched channels
    "teach",  # /teach images (checks the images with the backend's decoder)
    "teach_zip",  # /teach zip, a chunk of its images at a time
    "teach_channel",  # /teach from-channel, a chunk of the channel's images at a time
    "dashboard_upload",  # images and zips uploaded on the dashboard, a chunk at a time
    "teach_as",  # the "Teach as..." message menu
    "correction",  # a trainer's correction, taught at once
    "review_approval",  # an approved review item (/review or the dashboard's review grid)
)
"""Paths through the door (a fixed vocabulary: metrics labels stay bounded)."""

REASONS: Final = ("queue_full", "backlog_full", "no_capacity", "shutting_down")
"""Why a request was refused (metrics labels)."""

BACKLOG_FACTOR: Final = 2.0
"""Nothing is admitted while the whole backlog would take more than this many times the
bound (see the module docstring)."""


class QueueFull(Busy):
    """The request's expected wait passes the bound; the message says when to retry."""

    reason = "queue_full"

    def __init__(self, expected_wait_s: float, retry_after_s: float) -> None:
        UserError.__init__(
            self,
            f"I'm busy: about {expected_wait_s:.0f} s of images are waiting ahead of yours. "
            f"Please try again in about {retry_after_s:.0f} s.",
        )
        self.expected_wait_s = expected_wait_s
        self.retry_after_s = retry_after_s


class BacklogFull(Busy):
    """Everything waiting and in flight would take more than :data:`BACKLOG_FACTOR` times
    the bound, however little is ahead of this request; the message says when to retry."""

    reason = "backlog_full"

    def __init__(self, backlog_s: float, retry_after_s: float) -> None:
        UserError.__init__(
            self,
            f"I'm busy: about {backlog_s:.0f} s of images are waiting. "
            f"Please try again in about {retry_after_s:.0f} s.",
        )
        self.expected_wait_s = backlog_s
        self.retry_after_s = retry_after_s


class NoCapacity(Busy):
    """No worker or instance serves right now (starting, restarting, every one lost)."""

    reason = "no_capacity"

    def __init__(self) -> None:
        UserError.__init__(
            self,
            "No classifier is running right now (it may be restarting). Please try again "
            "in a minute.",
        )
        self.retry_after_s = 60.0


def _reason(error: UserError) -> str:
    return getattr(error, "reason", "shutting_down")


@dataclass(eq=False)
class Turn:
    """One request through the door. ``expected_wait_s``: at arrival (what "thinking..."
    is decided on); ``waited_s``: from arrival to release (``None`` until released)."""

    server_id: int | None
    member_id: int
    path: str
    images: int
    expected_wait_s: float
    arrived_at: float
    waited_s: float | None = None
    _admission: Admission | None = field(default=None, repr=False)
    _decided: asyncio.Future[bool] | None = field(default=None, repr=False)  # True: go
    _holding: bool = False  # released, its images not given back yet

    @property
    def released(self) -> bool:
        return self.waited_s is not None

    @property
    def holding(self) -> bool:
        """Released and its images not given back: the backend may be called for it."""
        return self._holding

    def done(self) -> None:
        """The backend has answered: give the images back so the next request may go
        (idempotent; leaving the ``async with`` does it too)."""
        if self._holding and self._admission is not None:
            self._holding = False
            self._admission._give_back(self)


@dataclass(frozen=True, slots=True)
class AdmissionStats:
    """A snapshot for metrics and ``/status``."""

    queued_requests: int
    queued_images: int
    released_images: int  # handed to the backend (or downloading), not answered yet
    servers_waiting: int
    images_per_s: float
    measured: bool
    expected_wait_s: float  # of a one-image request from a server with nothing queued
    backlog_s: float  # until everything queued and in flight is answered
    admitted: dict[str, int]  # by path
    refused: dict[tuple[str, str], int]  # by (path, reason)
    waited_s: dict[str, float]  # total seconds waited, by path


class Admission:
    """See the module docstring. ``capacity`` is ``Backend.capacity``."""

    def __init__(
        self,
        capacity: Callable[[], Capacity],
        max_wait_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capacity = capacity
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._queue: FairQueue[Turn] = FairQueue()
        self._released_images = 0
        self._tasks: set[asyncio.Task[object]] = set()  # entered, until they finish
        self._cancelled: set[asyncio.Task[object]] = set()
        self.closing = False
        self.admitted: Counter[str] = Counter()
        self.refused: Counter[tuple[str, str]] = Counter()
        self.waited_s: Counter[str] = Counter()
        #: metrics hooks: the turn at its release (``path``, ``waited_s``); (path, reason)
        #: at a refusal
        self.on_admitted: Callable[[Turn], None] | None = None
        self.on_refused: Callable[[str, str], None] | None = None

    # --- what a request would wait ------------------------------------------------------

    @staticmethod
    def _flow(server_id: int | None, member_id: int) -> Hashable:
        """Servers share fairly; outside servers each member is a flow of their own."""
        return ("server", server_id) if server_id is not None else ("member", member_id)

    def _wait_s(self, flow: Hashable, images: int, capacity: Capacity) -> float:
        if capacity.images_per_s <= 0:
            return math.inf
        in_flight = max(self._released_images, capacity.in_flight)
        return (in_flight + self._queue.ahead(flow) + images) / capacity.images_per_s

    def expected_wait_s(self, server_id: int | None, member_id: int, images: int = 1) -> float:
        """Seconds until a request arriving now would be answered (``inf``: nothing serves)."""
        return self._wait_s(self._flow(server_id, member_id), images, self._capacity())

    def stats(self) -> AdmissionStats:
        capacity = self._capacity()
        rate = capacity.images_per_s
        in_flight = max(self._released_images, capacity.in_flight)
        backlog = (in_flight + self._queue.images) / rate if rate > 0 else math.inf
        return AdmissionStats(
            queued_requests=len(self._queue),
            queued_images=self._queue.images,
            released_images=self._released_images,
            servers_waiting=self._queue.flows,
            images_per_s=rate,
            measured=capacity.measured,
            expected_wait_s=self._wait_s(object(), 1, capacity),
            backlog_s=backlog,
            admitted=dict(self.admitted),
            refused=dict(self.refused),
            waited_s=dict(self.waited_s),
        )

    # --- the door -----------------------------------------------------------------------

    @asynccontextmanager
    async def enter(
        self,
        *,
        server_id: int | None,
        member_id: int,
        path: str,
        images: int,
        on_queued: Callable[[Turn], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Turn]:
        """Wait for this request's turn (see the module docstring). Raises
        :class:`QueueFull`, :class:`NoCapacity` or ``ShuttingDown`` at once when refused.
        ``on_queued(turn)`` runs when the request has to wait (e.g. to show
        "thinking..." when ``turn.expected_wait_s`` is long)."""
        if path not in PATHS:
            raise ValueError(f"unknown admission path {path!r}")
        if images < 1:
            raise ValueError(f"a request holds at least one image, not {images}")
        turn, entry = self._arrive(server_id, member_id, path, images)
        task = self._track()
        try:
            if not turn.released:
                if on_queued is not None:
                    await on_queued(turn)
                assert turn._decided is not None
                if not await turn._decided:
                    raise ShuttingDown()
            yield turn
        except asyncio.CancelledError:
            self._cut_off(task)
            raise
        finally:
            if self._queue.remove(entry):  # gave up waiting: nothing was held
                self._release()
            turn.done()

    @asynccontextmanager
    async def tracked(self) -> AsyncIterator[None]:
        """Work that goes through no door but must finish (or be told) before the bot
        stops, e.g. a retrain: ``ShuttingDown`` once :meth:`drain` began; during it,
        ``grace_s`` to finish, then cancelled (leaving the block as ``ShuttingDown``)."""
        if self.closing:
            raise ShuttingDown()
        task = self._track()
        try:
            yield
        except asyncio.CancelledError:
            self._cut_off(task)
            raise

    def _track(self) -> asyncio.Task[object]:
        """Track the current task until it ends (its reply included) for :meth:`drain`."""
        task = asyncio.current_task()
        assert task is not None
        if task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._forget)
        return task

    def _cut_off(self, task: asyncio.Task[object]) -> None:
        """A cancellation by :meth:`drain` becomes ``ShuttingDown`` (the user is told why);
        any other cancellation goes on."""
        if task in self._cancelled:
            self._cancelled.discard(task)
            task.uncancel()
            raise ShuttingDown() from None

    def _arrive(
        self, server_id: int | None, member_id: int, path: str, images: int
    ) -> tuple[Turn, Entry[Turn]]:
        """Refuse, or queue and release what may go now (no await: atomic on the loop)."""
        if self.closing:
            self._refuse(path, ShuttingDown())
        capacity = self._capacity()
        flow = self._flow(server_id, member_id)
        wait = self._wait_s(flow, images, capacity)
        if math.isinf(wait):
            self._refuse(path, NoCapacity())
        if wait > self.max_wait_s:
            self._refuse(path, QueueFull(wait, max(1.0, math.ceil(wait - self.max_wait_s))))
        in_flight = max(self._released_images, capacity.in_flight)
        backlog = (in_flight + self._queue.images + images) / capacity.images_per_s
        cap = BACKLOG_FACTOR * self.max_wait_s
        if backlog > cap:
            self._refuse(path, BacklogFull(backlog, max(1.0, math.ceil(backlog - cap))))
        turn = Turn(server_id, member_id, path, images, wait, self._clock(), _admission=self)
        turn._decided = asyncio.get_running_loop().create_future()
        entry = self._queue.push(flow, images, turn)
        self._release(capacity)
        return turn, entry

    def _refuse(self, path: str, error: UserError) -> None:
        reason = _reason(error)
        self.refused[(path, reason)] += 1
        if self.on_refused is not None:
            self.on_refused(path, reason)
        raise error

    def _release(self, capacity: Capacity | None = None) -> None:
        """Release requests in fair order while the backend has room for them."""
        target = (capacity or self._capacity()).slots
        while (entry := self._queue.peek()) is not None:
            if self._released_images and self._released_images + entry.size > target:
                return
            self._queue.pop()
            turn = entry.item
            assert turn._decided is not None
            if turn._decided.done():  # cancelled while waiting; its task is on its way out
                continue
            turn.waited_s = self._clock() - turn.arrived_at
            turn._holding = True
            self._released_images += turn.images
            self.admitted[turn.path] += 1
            self.waited_s[turn.path] += turn.waited_s
            if self.on_admitted is not None:
                self.on_admitted(turn)
            turn._decided.set_result(True)

    def _give_back(self, turn: Turn) -> None:
        self._released_images -= turn.images
        self._release()

    def _forget(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        self._cancelled.discard(task)

    # --- shutdown -----------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Refuse new requests, tell every waiting one (``ShuttingDown``), give every
        task that entered ``grace_s`` to finish (the told ones reply and end at once),
        then cancel the rest (a request cut off inside the door answers ``ShuttingDown``)."""
        self.closing = True
        told = self._queue.clear()
        for entry in told:
            turn = entry.item
            self.refused[(turn.path, "shutting_down")] += 1
            if self.on_refused is not None:
                self.on_refused(turn.path, "shutting_down")
            assert turn._decided is not None
            if not turn._decided.done():
                turn._decided.set_result(False)
        if told:
            log.info("told %d waiting request(s) that the bot is restarting", len(told))
        pending = self._tasks - {asyncio.current_task()}
        if not pending:
            return
        log.info("waiting up to %.0f s for %d request(s) in flight", grace_s, len(pending))
        _, pending = await asyncio.wait(pending, timeout=grace_s)
        if not pending:
            return
        log.warning("cancelling %d request(s) still in flight", len(pending))
        for task in pending:
            self._cancelled.add(task)
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=5.0)
        if pending:
            log.warning("%d request(s) did not stop in time", len(pending))
