"""What answering an image needs of a server, kept in memory: its current model and its
"not sure" threshold (two queries, about 4 ms on SQLite, on every answer otherwise).

An entry is dropped by every write to its server that this process commits (the store's
write sessions do it; recording an answer, which changes neither, opts out) and is
trusted for at most ``ttl_s`` seconds, the bound on how long a change made by another
process (a second shard, ``python -m bot db``) goes unseen. A read that raced a write is
not kept: each server's entries carry a generation that every drop advances.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from bot.db.records import ModelRecord

SERVING_TTL_S = 10.0


@dataclass(frozen=True, slots=True)
class Serving:
    model: ModelRecord | None  # the server's current model; None: the default model
    low_confidence: float | None  # its own threshold; None: the global LOW_CONFIDENCE


class ServingCache:
    def __init__(
        self, ttl_s: float = SERVING_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[int, tuple[float, Serving]] = {}
        self._generations: defaultdict[int, int] = defaultdict(int)
        self._epoch = 0  # advanced by clear()
        self.hits = 0
        self.misses = 0

    def get(self, scope_id: int) -> Serving | None:
        entry = self._entries.get(scope_id)
        if entry is not None and self._clock() - entry[0] < self.ttl_s:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def generation(self, scope_id: int) -> tuple[int, int]:
        """Take before reading the database; hand to :meth:`put` with what was read."""
        return self._epoch, self._generations[scope_id]

    def put(self, scope_id: int, generation: tuple[int, int], value: Serving) -> None:
        if generation == self.generation(scope_id):  # no write committed meanwhile
            self._entries[scope_id] = (self._clock(), value)

    def drop(self, scope_id: int) -> None:
        self._generations[scope_id] += 1
        self._entries.pop(scope_id, None)

    def clear(self) -> None:
        self._epoch += 1
        self._entries.clear()
