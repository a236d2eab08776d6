"""A queue that is fair between flows (servers), by size (images): start-time fair queueing.

Each flow keeps its own order; between flows, every request gets a *start tag* in images:

    start = max(V, the finish tag of its flow's previous request),  finish = start + size

and the queue releases the request with the smallest start (the earliest arrival on a tie).
``V``, the virtual time, is the start tag of the request released last. So:

* a flow that had nothing queued starts at ``V``: its first request goes next (after at
  most one request of each other flow that also starts at ``V``);
* with N flows backlogged, tags advance by images, so each gets about 1/N of the images
  released, whatever its requests' sizes;
* a flow's burst only pushes back its own later requests: another flow's request is never
  behind more than about one request of each flow;
* a flow that goes idle keeps no credit (its next start is at least ``V``; of the
  flows that went idle, the last :data:`_IDLE_MAX` are remembered, and one forgotten
  starts at ``V``: ahead by at most its last request); a request
  taken out unreleased (its caller gave up) gives its place back when it was its flow's
  last one, and otherwise leaves a gap its flow's later requests do not close.

Pure bookkeeping, no I/O, no clock: :mod:`bot.core.admission` decides when to release.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Entry", "FairQueue"]

T = TypeVar("T")
_IDLE_MAX = 1024  # idle flows remembered (their finish tags) at most


@dataclass(eq=False, slots=True)
class Entry(Generic[T]):
    """One queued request: its flow, size in images, tags, and what it carries."""

    flow: Hashable
    size: int
    start: int
    seq: int
    item: T
    queued: bool = True

    @property
    def finish(self) -> int:
        return self.start + self.size


@dataclass(eq=False, slots=True)
class _Flow(Generic[T]):
    entries: deque[Entry[T]] = field(default_factory=deque)
    images: int = 0
    finish: int = 0  # finish tag of its latest request


class FairQueue(Generic[T]):
    """See the module docstring. ``push``/``pop``/``remove``/``ahead`` are exact."""

    def __init__(self) -> None:
        self.virtual_time = 0
        self._flows: dict[Hashable, _Flow[T]] = {}  # flows with queued requests
        self._idle: dict[Hashable, int] = {}  # flows with none: their last finish tag
        self._heap: list[tuple[int, int, Entry[T]]] = []  # removed entries are skipped
        self._seq = itertools.count()
        self.images = 0  # images queued
        self.requests = 0  # requests queued

    def __len__(self) -> int:
        return self.requests

    @property
    def flows(self) -> int:
        """Flows with something queued."""
        return len(self._flows)

    def queued_for(self, flow: Hashable) -> int:
        """Images of ``flow`` waiting."""
        known = self._flows.get(flow)
        return known.images if known is not None else 0

    def start_tag(self, flow: Hashable) -> int:
        """The start tag a request of ``flow`` arriving now would get."""
        known = self._flows.get(flow)
        finish = known.finish if known is not None else self._idle.get(flow, 0)
        return max(self.virtual_time, finish)

    def ahead(self, flow: Hashable) -> int:
        """Images that would be released before a request of ``flow`` arriving now: every
        queued request whose start tag is not after the newcomer's."""
        start = self.start_tag(flow)
        total = 0
        for queued in self._flows.values():
            if queued.entries[-1].start <= start:
                total += queued.images
            elif queued.entries[0].start <= start:
                total += sum(e.size for e in queued.entries if e.start <= start)
        return total

    def push(self, flow: Hashable, size: int, item: T) -> Entry[T]:
        """Queue a request of ``size`` images (at least 1) for ``flow``."""
        if size < 1:
            raise ValueError(f"a request holds at least one image, not {size}")
        entry = Entry(flow, size, self.start_tag(flow), next(self._seq), item)
        queued = self._flows.get(flow)
        if queued is None:
            self._idle.pop(flow, None)
            queued = self._flows[flow] = _Flow()
        queued.entries.append(entry)
        queued.images += size
        queued.finish = entry.finish
        self.images += size
        self.requests += 1
        heapq.heappush(self._heap, (entry.start, entry.seq, entry))
        return entry

    def peek(self) -> Entry[T] | None:
        """The request that goes next, without releasing it."""
        heap = self._heap
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def pop(self) -> Entry[T] | None:
        """Release the request that goes next (``None`` when nothing is queued)."""
        entry = self.peek()
        if entry is None:
            return None
        heapq.heappop(self._heap)
        self.virtual_time = max(self.virtual_time, entry.start)
        self._unqueue(entry, released=True)
        return entry

    def remove(self, entry: Entry[T]) -> bool:
        """Take a request out unreleased (its caller gave up); ``False`` if it was not
        queued any more."""
        if not entry.queued:
            return False
        self._unqueue(entry, released=False)
        return True

    def clear(self) -> list[Entry[T]]:
        """Take every queued request out, in release order."""
        entries = sorted((e for _, _, e in self._heap if e.queued), key=lambda e: (e.start, e.seq))
        for entry in entries:
            self._unqueue(entry, released=False)
        self._heap.clear()
        return entries

    def _unqueue(self, entry: Entry[T], *, released: bool) -> None:
        entry.queued = False
        queued = self._flows[entry.flow]
        if queued.entries[0] is entry:
            queued.entries.popleft()
        else:
            queued.entries.remove(entry)
        if not released and queued.finish == entry.finish:  # its flow's last: place given back
            queued.finish = queued.entries[-1].finish if queued.entries else entry.start
        queued.images -= entry.size
        self.images -= entry.size
        self.requests -= 1
        if not queued.entries:
            del self._flows[entry.flow]
            self._idle[entry.flow] = queued.finish
            if len(self._idle) > _IDLE_MAX:
                self._forget_idle()

    def _forget_idle(self) -> None:
        """Forget idle flows whose finish tag is not past ``V`` (they start at ``V``
        anyway), then the longest idle ones down to half the limit: a flow forgotten
        early starts at ``V`` too, ahead by at most its last request."""
        v = self.virtual_time
        self._idle = {flow: finish for flow, finish in self._idle.items() if finish > v}
        while len(self._idle) > _IDLE_MAX // 2:
            del self._idle[next(iter(self._idle))]
