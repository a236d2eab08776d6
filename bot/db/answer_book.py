"""What this process knows of a server's answers, so that recording one more answer
rarely needs to count them all (``ScopeFeedback.record_answer``)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

#: An answer book older than this is recounted (answers another process recorded).
ANSWER_BOOK_TTL_S = 60.0


@dataclass(slots=True)
class AnswerBook:
    """What this process learnt of a server's answers when it last counted them, enough to
    tell that one more answer needs no pruning without the query that reads every answer
    of the last day (1.6 ms with 300 answers, growing with them). Kept per server in
    ``Store.answer_books``. Only this process adds answers between counts (within
    ``ANSWER_BOOK_TTL_S``), and other changes only remove them, so ``images`` is an upper
    bound and ``oldest`` a lower bound; any other write to the server (a forget, a vote)
    advances its generation and the next answer counts again. A server at its kept-image
    limit, or with answers about to expire, still counts at every answer."""

    generation: tuple[int, int]  # the server's ``Store.serving`` generation when counted
    images: int  # answers holding an image
    oldest: dt.datetime | None  # the oldest answer's time
    counted_at: float  # time.monotonic()

    def prune_due(self, generation: tuple[int, int], cutoff: dt.datetime, limit: int) -> bool:
        return (
            generation != self.generation
            or self.images + 1 > limit
            or (self.oldest is not None and self.oldest < cutoff)
            or time.monotonic() - self.counted_at > ANSWER_BOOK_TTL_S
        )
