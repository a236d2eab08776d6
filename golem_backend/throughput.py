"""What a backend can do now: measured images per second, images in flight, useful slots.

Each worker (local backend) or instance (Golem) is a *unit*. A unit's rate is the images
it answered per second of its *busy* time: time with at least one of its batches in
flight, cut at each finished batch, so batches that overlap on one unit (Golem keeps two
in flight per instance) are not counted twice. The images and busy seconds are summed with
exponential forgetting over :data:`MEMORY_S` seconds of busy time (an EWMA weighted by
time): a unit that slows down, or speeds up, shows it within a few seconds of work, and
idle time never ages the estimate. Until a unit has worked, its rate is a prior: the mean
of the units measured so far, else the backend's prior; the prior is also the first
:data:`PRIOR_WEIGHT_S` seconds of its history, so it fades out as work comes in.

Only batches that were answered count: a batch that failed (a crashed or stuck worker, an
instance lost, a timeout blamed on a hostile image) or was dropped unrun (all its callers
gone) adds nothing, so one poison image does not make a healthy unit look slow (a unit
that is really broken is replaced by its backend). A batch that ran on more
cores than its unit's share (the local backend lends idle workers' cores to a lone image)
counts its time once per share it used, so the rate stays "per unit".

The backend's throughput is the sum over its serving units: a unit that starts serving (a
new Golem instance, a restarted worker) adds its rate, one that stops removes it.
Small batches cost more per image than full ones, so a rate measured under light load is
lower than the rate under a burst (by about a quarter on the local backend): the estimate
errs towards refusing, and rises within the first batches of a burst.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MEMORY_S",
    "PRIOR_WEIGHT_S",
    "UNMEASURED",
    "Capacity",
    "ThroughputMeter",
    "UnitRate",
]

MEMORY_S: Final = 2.0
"""Busy seconds over which a unit's past work fades by a factor e."""
PRIOR_WEIGHT_S: Final = 0.25
"""Busy seconds of history the prior stands for before any work was measured."""


@dataclass(frozen=True, slots=True)
class Capacity:
    """A snapshot of what a backend can do (``Backend.capacity()``: cheap, synchronous).

    ``images_per_s``: images answered per second while every serving unit is busy,
    measured from finished work (``measured``) or a prior; 0 when nothing serves.
    ``in_flight``: images at the backend now, waiting in its queue or being classified.
    ``slots``: images worth handing to the backend at once: enough for a batch on every
    serving unit and one more batch ready behind it, so no unit waits for work; more only
    waits in the backend's queue (and never more than one server may queue there).
    ``units``: serving workers (local) or running instances (Golem).
    """

    images_per_s: float
    in_flight: int
    slots: int
    units: int
    measured: bool


UNMEASURED: Final = Capacity(images_per_s=20.0, in_flight=0, slots=8, units=1, measured=False)
"""What a backend that measures nothing reports (the interface's default)."""


class UnitRate:
    """Images per busy second of one unit; see the module docstring."""

    __slots__ = ("_images", "_mark", "_running", "_seconds", "busy_s")

    def __init__(self, prior_per_s: float) -> None:
        self._images = prior_per_s * PRIOR_WEIGHT_S
        self._seconds = PRIOR_WEIGHT_S
        self._running = 0  # its batches in flight
        self._mark = 0.0  # where its busy time not yet counted starts
        self.busy_s = 0.0  # busy time measured so far

    @property
    def images_per_s(self) -> float:
        return self._images / self._seconds

    @property
    def measured(self) -> bool:
        return self.busy_s > 0

    def started(self, now: float) -> None:
        if self._running == 0:
            self._mark = now
        self._running += 1

    def finished(self, images: int, now: float, share: float = 1.0) -> None:
        """A batch was answered: ``images`` images; ``share``: how many units' worth of
        cores it ran on."""
        elapsed = max(0.0, now - self._mark) * max(share, 1e-9)
        self._end(now)
        self._add(max(0, images), elapsed)

    def abandoned(self, now: float) -> None:
        """A batch failed or was dropped: its time is not counted."""
        self._end(now)

    def _end(self, now: float) -> None:
        self._running = max(0, self._running - 1)
        self._mark = now

    def _add(self, images: int, seconds: float) -> None:
        keep = math.exp(-seconds / MEMORY_S)
        self._images = self._images * keep + images
        self._seconds = self._seconds * keep + seconds
        self.busy_s += seconds


class ThroughputMeter:
    """Rates of a backend's units, by unit name; ``prior_per_unit`` before any work."""

    def __init__(self, prior_per_unit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.prior_per_unit = prior_per_unit
        self._clock = clock
        self._units: dict[str, UnitRate] = {}

    def _unit(self, name: str) -> UnitRate:
        unit = self._units.get(name)
        if unit is None:
            unit = self._units[name] = UnitRate(self._prior())
        return unit

    def _prior(self) -> float:
        """The mean rate of the units measured so far, else the backend's prior."""
        measured = [u.images_per_s for u in self._units.values() if u.measured]
        return sum(measured) / len(measured) if measured else self.prior_per_unit

    def started(self, unit: str) -> None:
        """``unit`` began a batch."""
        self._unit(unit).started(self._clock())

    def finished(self, unit: str, images: int, *, share: float = 1.0) -> None:
        """``unit`` answered a batch of ``images`` images."""
        self._unit(unit).finished(images, self._clock(), share)

    def abandoned(self, unit: str) -> None:
        """``unit``'s batch failed or was dropped unrun."""
        self._unit(unit).abandoned(self._clock())

    def rate_of(self, unit: str) -> float:
        """``unit``'s images per second (the prior for a unit that has not worked)."""
        known = self._units.get(unit)
        return known.images_per_s if known is not None else self._prior()

    def images_per_s(self, serving: Iterable[str]) -> tuple[float, bool]:
        """The summed rate of the ``serving`` units, and whether any of them was measured."""
        total, measured = 0.0, False
        for name in serving:
            known = self._units.get(name)
            total += known.images_per_s if known is not None else self._prior()
            measured = measured or (known is not None and known.measured)
        return total, measured

    def retain(self, units: Iterable[str]) -> None:
        """Forget every unit not in ``units`` (instances that are gone for good)."""
        keep = set(units)
        for name in [n for n in self._units if n not in keep]:
            del self._units[name]
