"""The local request queue shared fairly: one tenant holds at most half of it, and batches
take turns between tenants."""

from __future__ import annotations

import pytest

from golem_backend import BackendBusy
from golem_backend.local.queue import RequestQueue

pytestmark = pytest.mark.asyncio
IMAGE = b"\xff\xd8 not decoded here"


async def test_one_tenant_holds_at_most_half_the_queue_and_others_still_get_in():
    queue = RequestQueue(capacity=10, batch_size=4, max_image_bytes=1024)
    for _ in range(5):
        queue.submit([IMAGE], 3, tenant="guild:a")
    with pytest.raises(BackendBusy, match="This server is sending too many images at once"):
        queue.submit([IMAGE], 3, tenant="guild:a")
    assert queue.queued_for("guild:a") == 5
    for _ in range(5):
        queue.submit([IMAGE], 3, tenant="guild:b")  # the other half is still there
    with pytest.raises(BackendBusy, match="busy"):
        queue.submit([IMAGE], 3, tenant="guild:c")  # the queue itself is full now
    assert queue.refused == 2


async def test_a_request_larger_than_the_share_is_refused_whole():
    queue = RequestQueue(capacity=10, batch_size=4, max_image_bytes=1024)
    with pytest.raises(BackendBusy, match="at most 5 per server"):
        queue.submit([IMAGE] * 6, 3, tenant="guild:a")
    assert len(queue) == 0 and queue.queued_for("guild:a") == 0


async def test_the_share_frees_up_as_images_are_taken_dropped_or_failed():
    queue = RequestQueue(capacity=10, batch_size=4, max_image_bytes=1024)
    first = queue.submit([IMAGE] * 3, 3, tenant="guild:a")
    queue.submit([IMAGE] * 2, 3, tenant="guild:a")
    assert queue.queued_for("guild:a") == 5
    batch = queue.take_batch(1)
    assert len(batch) == 4 and queue.queued_for("guild:a") == 1
    queue.retry_first(batch[:1])  # a crashed image back in line counts again
    assert queue.queued_for("guild:a") == 2
    queue.drop(first)
    assert queue.queued_for("guild:a") == 1
    queue.fail_all("stopping")
    assert queue.queued_for("guild:a") == 0 and len(queue) == 0


async def test_batches_take_turns_between_tenants():
    queue = RequestQueue(capacity=64, batch_size=4, max_image_bytes=1024)
    flood = [queue.submit([IMAGE], 3, tenant="guild:a") for _ in range(20)]
    other = queue.submit([IMAGE, IMAGE], 3, tenant="guild:b")
    batch = queue.take_batch(1)
    tenants = [job.request.tenant for job in batch]
    # b's two images ride in the very next batch despite 20 of a's queued ahead of them.
    assert tenants.count("guild:b") == 2 and tenants.count("guild:a") == 2
    assert [job.request for job in batch if job.request.tenant == "guild:a"] == flood[:2]
    assert all(job.request is other for job in batch if job.request.tenant == "guild:b")
    assert len(queue) == 18
    # a's remaining images keep their order.
    rest = [job.request for job in queue.jobs]
    assert rest == flood[2:]


async def test_without_tenants_the_queue_is_first_come_first_served():
    queue = RequestQueue(capacity=64, batch_size=4, max_image_bytes=1024)
    requests = [queue.submit([IMAGE], 3) for _ in range(6)]
    assert [job.request for job in queue.take_batch(1)] == requests[:4]
