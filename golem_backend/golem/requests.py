"""A request as the dispatcher holds it, and how it is split to retry its images apart."""

from __future__ import annotations

import asyncio
import dataclasses

from golem_backend.base import Outcome
from golem_backend.golem.model_store import ModelArtifact
from provider.results import Prediction


@dataclasses.dataclass(eq=False)
class Request:
    """One caller's images; ``future`` gets one outcome per image, or a typed error."""

    images: list[bytes]
    top_k: int
    future: asyncio.Future[list[Outcome]]
    enqueued_at: float
    attempts: int = 0
    alone: bool = False  # retried in a batch of its own (refused or timed out with others)
    head: ModelArtifact | None = None  # the server's head that answers it (None: default)
    tenant: str | None = None  # whose request it is: one tenant holds at most half the queue
    #: instances (service ids) that called one of its readable images broken: not sent there
    avoid: frozenset[str] = frozenset()


def split(req: Request) -> list[Request]:
    """One request per image of ``req``, each ``alone``; their outcomes, once all have
    them, become ``req``'s (the first error of one fails ``req``), and when ``req`` ends
    first (its caller timed out), the parts are cancelled."""
    if len(req.images) == 1:
        req.alone = True
        return [req]
    loop = asyncio.get_running_loop()
    parts = [
        dataclasses.replace(req, images=[image], future=loop.create_future(), alone=True)
        for image in req.images
    ]

    def gather(_: object) -> None:
        if req.future.done() or not all(p.future.done() for p in parts):
            return
        if any(p.future.cancelled() for p in parts):
            req.future.cancel()
            return
        error = next((e for p in parts if (e := p.future.exception()) is not None), None)
        if error is not None:
            req.future.set_exception(error)
        else:
            req.future.set_result([o for p in parts for o in p.future.result()])

    def cancel_parts(_: object) -> None:
        for part in parts:
            if not part.future.done():
                part.future.cancel()

    for part in parts:
        part.future.add_done_callback(gather)
    req.future.add_done_callback(cancel_parts)
    return parts


def trim(outcome: Outcome, top_k: int) -> Outcome:
    """A batch asks for the largest ``top_k`` of its requests; give each request its own."""
    if isinstance(outcome, Prediction) and len(outcome.top) > top_k:
        return dataclasses.replace(outcome, top=outcome.top[:top_k])
    return outcome
