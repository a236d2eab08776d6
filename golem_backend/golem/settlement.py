"""What happens when a batch ends: answers judged and delivered, or requests re-queued.

The dispatcher (:mod:`.dispatcher`) sends batches; a :class:`Settlement` watches each one
until it ends and settles its requests (see the dispatcher's docstring for the rules):
delivered once :mod:`.health` has judged the answers, re-run elsewhere, split after a
timeout, or failed with a typed error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from golem_backend.base import BackendUnavailable
from golem_backend.golem.batch import BatchRefused, BatchTimedOut, ClassifyBatch
from golem_backend.golem.health import HealthMonitor, MixedBatch
from golem_backend.golem.pool import DispatcherConfig, InstancePool, Worker
from golem_backend.golem.protocol import REFUSED_MESSAGE, user_image_error
from golem_backend.golem.requests import Request, split, trim

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "The Golem backend is shutting down."


class Settlement:
    """Settles the requests of ended batches; shares the dispatcher's queue."""

    def __init__(
        self,
        queue: deque[Request],
        pool: InstancePool,
        health: HealthMonitor,
        config: DispatcherConfig,
        *,
        wakeup: Callable[[], None],
        closing: Callable[[], bool],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.queue = queue
        self.pool = pool
        self.health = health
        self.config = config
        self.wakeup = wakeup
        self.closing = closing
        self.spawn = spawn
        self._held: dict[str, list[Request]] = {}  # instance id -> lone images timed out
        self.requests_served = 0
        self.images_served = 0

    async def watch(
        self,
        worker: Worker,
        batch: ClassifyBatch,
        reqs: list[Request],
        mixed: MixedBatch | None,
    ) -> None:
        try:
            outcomes = await asyncio.shield(batch.future)
        except asyncio.CancelledError:
            if not batch.future.cancelled():
                raise  # this watcher itself was cancelled
            # abandon(): every request of the batch has already ended
        except BatchTimedOut:
            worker.in_flight.pop(batch.batch_id, None)
            self._timed_out(worker, reqs)
        except BatchRefused as exc:
            if len(reqs) == 1:  # a batch of several is split first: one request may be at fault
                evict = self.health.record(worker.service, bad=True, why="refused a request")
                if evict is not None:
                    self.pool.evict(worker, evict)
            self._refused(reqs, str(exc))
        except Exception as exc:  # InstanceFailed, or anything unexpected
            for req in reqs:
                self.retry(req, str(exc) or type(exc).__name__)
        else:
            rerun: list[Request] = []
            if mixed is not None:  # judged before any user sees it
                images = [image for req in reqs for image in req.images]
                verdict = await self.health.judge(worker.service, mixed, images, outcomes)
                if verdict.evict is not None:
                    self.pool.evict(worker, verdict.evict)
                if verdict.evict is not None or verdict.rerun is not None:
                    for req in reqs:  # never a user sees answers of a replaced instance
                        self.retry(req, verdict.rerun or verdict.evict or "")
                    return
                outcomes = mixed.users_outcomes(outcomes)
                rerun = self._disputed(worker, reqs, verdict.disputed)
            self._deliver(worker, reqs, outcomes, rerun)
        finally:
            worker.in_flight.pop(batch.batch_id, None)
            self.wakeup()

    def _disputed(
        self, worker: Worker, reqs: list[Request], disputed: frozenset[int]
    ) -> list[Request]:
        """Re-run on another instance each request with an image ``worker`` called broken
        while it is readable (returns those); a request a second instance disputes too is
        answered: they agree, and it is not re-run forever."""
        rerun = []
        offset = 0
        for req in reqs:
            mine = range(offset, offset + len(req.images))
            offset += len(req.images)
            if not req.avoid and disputed.intersection(mine) and not req.future.done():
                req.avoid = req.avoid | {worker.service.id}
                self.queue.appendleft(req)
                rerun.append(req)
        return rerun

    def _deliver(
        self, worker: Worker, reqs: list[Request], outcomes: list[Any], rerun: list[Request]
    ) -> None:
        offset = 0
        for req in reqs:
            part = outcomes[offset : offset + len(req.images)]
            offset += len(req.images)
            if req in rerun:  # its answers are not trusted
                continue
            if not req.future.done():
                req.future.set_result([trim(o, req.top_k) for o in part])
                self.requests_served += 1
                self.images_served += len(req.images)
                worker.served += 1

    # --- timeouts -----------------------------------------------------------------------

    def _timed_out(self, worker: Worker, reqs: list[Request]) -> None:
        """Retry the images apart; hold an image that timed out alone until the instance's
        probe says whether the image or the instance is at fault."""
        live = [r for r in reqs if not r.future.done()]
        lone = sum(len(r.images) for r in reqs) == 1
        if self.closing():
            for req in live:
                req.future.set_exception(BackendUnavailable(SHUTTING_DOWN))
            return
        held = self._held.setdefault(worker.service.id, [])
        if lone:
            held.extend(live)
        else:
            logger.info("a batch of %d requests timed out: retrying its images apart", len(reqs))
            for req in reversed(live):  # back to the head of the queue, each image alone
                self.queue.extendleft(reversed(split(req)))
        if not self.health.of(worker.service).on_probation:
            self.health.of(worker.service).on_probation = True
            self.spawn(self._probe(worker))
        self.wakeup()

    async def _probe(self, worker: Worker) -> None:
        """Canaries alone on an instance whose batch timed out: is it well?"""
        reason = await self.health.probe_instance(worker.service, worker.in_flight)
        held = self._held.pop(worker.service.id, [])
        if reason is None:
            for req in held:  # the instance is well: the image is at fault
                if not req.future.done():
                    logger.warning("an image of %d bytes timed out alone", len(req.images[0]))
                    req.future.set_result([user_image_error("too_complex")])
                    self.requests_served += 1
                    self.images_served += 1
        else:
            self.pool.evict(worker, f"failed its canaries after a timeout: {reason}")
            for req in held:
                self.retry(req, "its instance, not the image, was at fault")
        self.wakeup()

    def _refused(self, reqs: list[Request], reason: str) -> None:
        """The daemon refused a batch: fail a lone request, retry each of several alone."""
        live = [r for r in reqs if not r.future.done()]
        if len(reqs) == 1:
            for req in live:
                logger.warning("the provider refused a request: %r", reason)
                req.future.set_exception(BackendUnavailable(REFUSED_MESSAGE))
            return
        if self.closing():
            for req in live:
                req.future.set_exception(BackendUnavailable(SHUTTING_DOWN))
            return
        logger.info(
            "a batch of %d requests was refused (%s): retrying each alone", len(reqs), reason
        )
        for req in reversed(live):  # back to the head of the queue, in their order
            req.alone = True
            self.queue.appendleft(req)
        self.wakeup()

    def retry(self, req: Request, reason: str) -> None:
        if req.future.done():
            return
        req.attempts += 1
        if self.closing():
            req.future.set_exception(BackendUnavailable(SHUTTING_DOWN))
        elif req.attempts > self.config.max_retries:
            logger.warning("request failed on %d instances, giving up: %s", req.attempts, reason)
            req.future.set_exception(
                BackendUnavailable(
                    f"The classification failed on {req.attempts} Golem providers; try again later."
                )
            )
        else:
            logger.info("re-sending a request (attempt %d): %s", req.attempts + 1, reason)
            self.queue.appendleft(req)
            self.wakeup()
