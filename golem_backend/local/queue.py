"""The local backend's bounded request queue: one job per image, batches for the workers.

Pure bookkeeping on the event loop (no I/O, no awaits): the capacity check, the batch
window, batch selection, per-request result assembly and the counters ``/status`` shows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

from golem_backend.base import BackendBusy, BackendUnavailable, Outcome
from provider.errors import ImageTooLarge
from provider.results import Prediction


@dataclass(eq=False, slots=True)
class Request:
    """One ``classify`` call: its outcomes fill in as its images come back."""

    top_k: int
    outcomes: list[Outcome | None]
    remaining: int
    future: asyncio.Future[list[Outcome]]
    head: tuple[str, str] | None = None  # (model id, file) of its server's head; None: default
    tenant: str | None = None  # whose request it is, for the per-tenant share of the queue


@dataclass(eq=False, slots=True)
class Job:
    """One image of a request, waiting for or riding in a batch."""

    request: Request
    index: int
    data: bytes
    enqueued: float  # loop time
    attempts: int = 0  # batches this image was in whose worker crashed


class RequestQueue:
    """FIFO of jobs, bounded in images; retried jobs jump the line and travel alone."""

    def __init__(self, capacity: int, batch_size: int, max_image_bytes: int) -> None:
        self._jobs: deque[Job] = deque()
        self._capacity = capacity
        #: images one tenant may have queued: half the queue, so the rest stays for others
        self.tenant_share = max(1, capacity // 2)
        self._per_tenant: Counter[str] = Counter()
        self._batch_size = batch_size
        self._max_bytes = max_image_bytes
        self.served = 0  # requests answered (each image classified or rejected)
        self.errors = 0  # requests failed or timed out
        self.refused = 0  # requests refused as busy

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def jobs(self) -> tuple[Job, ...]:
        return tuple(self._jobs)

    def queued_for(self, tenant: str) -> int:
        """Images of ``tenant`` waiting in the queue."""
        return self._per_tenant[tenant]

    def submit(
        self,
        images: list[bytes],
        top_k: int,
        *,
        head: tuple[str, str] | None = None,
        tenant: str | None = None,
    ) -> Request:
        """Queue ``images`` as one request; raises :class:`BackendBusy` when they do not fit
        in the queue, or in ``tenant``'s half of it.

        An image over ``max_image_bytes`` is answered at once with :class:`ImageTooLarge`.
        """
        queued = len(self._jobs)
        if len(images) > self._capacity:
            self.refused += 1
            raise BackendBusy(
                f"Too many images at once ({len(images)}); "
                f"send at most {self._capacity} per request."
            )
        if queued + len(images) > self._capacity:
            self.refused += 1
            raise BackendBusy(
                f"The classifier is busy ({queued} images waiting); try again in a moment."
            )
        if tenant is not None and self._per_tenant[tenant] + len(images) > self.tenant_share:
            self.refused += 1
            raise BackendBusy(
                "This server is sending too many images at once "
                f"({self._per_tenant[tenant]} waiting; at most {self.tenant_share} per server); "
                "try again in a moment."
            )
        loop = asyncio.get_running_loop()
        request = Request(
            max(1, top_k), [None] * len(images), len(images), loop.create_future(), head, tenant
        )
        for index, data in enumerate(images):
            if len(data) > self._max_bytes:
                too_large = ImageTooLarge(
                    f"The image is too large ({len(data) / 2**20:.1f} MB; "
                    f"the limit is {self._max_bytes / 2**20:.1f} MB)."
                )
                self._settle(request, index, too_large)
            else:
                self._push(Job(request, index, bytes(data), loop.time()))
        return request

    def _push(self, job: Job, *, first: bool = False) -> None:
        if first:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)
        if job.request.tenant is not None:
            self._per_tenant[job.request.tenant] += 1

    def _pop(self) -> Job:
        job = self._jobs.popleft()
        self._forget(job)
        return job

    def _forget(self, job: Job) -> None:
        tenant = job.request.tenant
        if tenant is not None:
            self._per_tenant[tenant] -= 1
            if self._per_tenant[tenant] <= 0:
                del self._per_tenant[tenant]

    def hold_for(self, wait_s: float) -> float:
        """Seconds to keep a small batch open for more images (0: dispatch now)."""
        if not self._jobs or self._jobs[0].attempts or len(self._jobs) >= self._batch_size:
            return 0.0
        age = asyncio.get_running_loop().time() - self._jobs[0].enqueued
        return max(0.0, wait_s - age)

    def take_batch(self, idle_workers: int) -> list[Job]:
        """The next batch, sharing the queue among ``idle_workers``; a retried job goes alone."""
        if self._jobs[0].attempts:
            return [self._pop()]
        limit = min(self._batch_size, math.ceil(len(self._jobs) / max(1, idle_workers)))
        if not self._per_tenant:  # no tenants named: first come, first served
            batch: list[Job] = []
            while self._jobs and len(batch) < limit and self._jobs[0].attempts == 0:
                batch.append(self._pop())
            return batch
        return self._take_round_robin(limit)

    def _take_round_robin(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs taken in turn from each tenant (in order of their first job),
        so a tenant with a long backlog does not fill every batch ahead of the others."""
        groups: dict[object, deque[Job]] = {}
        for job in self._jobs:
            if job.attempts:
                break  # a retried job waits at the front for a batch of its own
            key = job.request.tenant if job.request.tenant is not None else id(job.request)
            groups.setdefault(key, deque()).append(job)
        batch = []
        while len(batch) < limit and groups:
            for key in list(groups):
                if len(batch) >= limit:
                    break
                group = groups[key]
                batch.append(group.popleft())
                if not group:
                    del groups[key]
        taken = {id(job) for job in batch}
        self._jobs = deque(job for job in self._jobs if id(job) not in taken)
        for job in batch:
            self._forget(job)
        return batch

    def retry_first(self, jobs: Iterable[Job]) -> None:
        """Put jobs (from a crashed batch) back at the head of the queue, in order."""
        for job in reversed(list(jobs)):
            if not job.request.future.done():
                self._push(job, first=True)

    def deliver(self, job: Job, outcome: Outcome) -> None:
        """Record one image's outcome; the request completes with its last image."""
        if not job.request.future.done():
            self._settle(job.request, job.index, outcome)

    def _settle(self, request: Request, index: int, outcome: Outcome) -> None:
        if isinstance(outcome, Prediction) and len(outcome.top) > request.top_k:
            outcome = dataclasses.replace(outcome, top=outcome.top[: request.top_k])
        request.outcomes[index] = outcome
        request.remaining -= 1
        if request.remaining == 0:
            self.served += 1
            request.future.set_result([o for o in request.outcomes if o is not None])

    def fail(self, request: Request, error: Exception) -> None:
        """Fail a whole request with ``error`` (a typed backend error) and unqueue its images."""
        if not request.future.done():
            self.errors += 1
            request.future.set_exception(error)
        self.drop(request)

    def fail_all(self, message: str) -> None:
        """Fail every queued request with :class:`BackendUnavailable` (``message``)."""
        requests = {id(job.request): job.request for job in self._jobs}
        self._jobs.clear()
        self._per_tenant.clear()
        for request in requests.values():
            self.fail(request, BackendUnavailable(message))

    def drop(self, request: Request) -> None:
        """Unqueue the images of a request that failed, timed out or was cancelled."""
        if any(job.request is request for job in self._jobs):
            for job in self._jobs:
                if job.request is request:
                    self._forget(job)
            self._jobs = deque(job for job in self._jobs if job.request is not request)
        if not request.future.done():
            request.future.cancel()
