"""ClassifierService alone, run by yapapi's ServiceRunner through the local exe-unit harness."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from yapapi import events

from golem_backend.golem import layout
from golem_backend.golem.batch import ClassifyBatch, InstanceFailed
from golem_backend.golem.model_store import ModelArtifact, ModelStore
from golem_backend.golem.service import ServiceConfig
from provider.results import Prediction
from tests.golem_backend.harness import FaultPlan, LocalRuntime
from tests.golem_backend.harness.helpers import open_one_service, wait_until


async def test_lifecycle_one_script_per_batch_and_a_failed_batch(tiny_model, sample_images):
    faults = FaultPlan()
    runtime, service = await open_one_service(faults, tiny_model)
    loop = asyncio.get_running_loop()
    try:
        assert service.state.value == "running" and service.model_id == tiny_model.model_id
        activity = runtime.activities[0]
        assert activity.daemon_running
        batch = ClassifyBatch("batch-t1", list(sample_images[:3]), 2, loop.create_future())
        await service.send_message(batch)
        outcomes = await asyncio.wait_for(batch.future, 30)
        assert len(outcomes) == 3 and all(isinstance(o, Prediction) for o in outcomes)
        assert all(len(o.top) <= 2 and o.label in (*tiny_model.labels, "unknown") for o in outcomes)
        assert service.batches_served == 1 and service.images_served == 3

        faults.add("fail")  # the next batch's client exec exits non-zero
        failing = ClassifyBatch("batch-t2", [sample_images[0]], 3, loop.create_future())
        await service.send_message(failing)
        with pytest.raises(InstanceFailed) as failed:
            await asyncio.wait_for(failing.future, 30)
        assert str(failed.value) == (
            "`provider.serve client` failed on the provider "
            "(ExeScript command exited with code 3): injected failure"
        )
        assert service.failure == str(failed.value)
        await wait_until(lambda: service.state.value == "terminated", 30, "termination")
        assert not service.restart_condition  # the dispatcher replaces it, not yapapi
    finally:
        await runtime.close()

    scripts = [[next(iter(c)) for c in s] for s in activity.scripts]
    assert scripts[0] == ["deploy", "start"]
    assert scripts[1] == ["run", "transfer"]  # the version handshake: versions, report
    assert scripts[2] == ["transfer", "run", "run", "transfer"]  # model, daemon, ping, ready
    assert scripts[3] == ["transfer"] * 3 + ["run", "transfer"]  # images, client, reply
    assert scripts[4] == ["transfer", "run", "transfer"]  # the failed batch
    assert scripts[5] == ["terminate"]  # shutdown()
    uploads = [c["transfer"]["to"] for c in activity.scripts[3][:3]]
    assert uploads == [f"container:{layout.INPUT_DIR}/batch-t1-{i}" for i in range(3)]
    states = [
        (e.old.value, e.new.value)
        for e in runtime.engine.events
        if isinstance(e, events.ServiceStateChanged)
    ]
    assert states == [
        ("pending", "starting"),
        ("starting", "running"),
        ("running", "stopping"),
        ("stopping", "terminated"),
    ]
    assert runtime.processes() == []  # the daemon went with the activity


async def test_an_unloadable_model_fails_the_start_fast(tiny_model):
    """The daemon cannot load the upload: ping fails at once (no waiting for its timeout)."""
    store = ModelStore(ModelArtifact(b"not a model", "bogus", tiny_model.labels))
    runtime = LocalRuntime(FaultPlan())
    try:
        cluster = await runtime.open_cluster(
            1, [{"config": ServiceConfig(store=store)}], datetime.now(UTC) + timedelta(hours=1)
        )
        service = cluster.instances[0]
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: service.state.value == "terminated", 60, "the failed start")
        assert asyncio.get_running_loop().time() - started < 30  # not the 120 s prepare timeout
        assert service.failure is not None
        assert "classifier daemon did not start" in service.failure
        assert "cannot load the model" in service.failure, service.failure
    finally:
        await runtime.close()
    assert runtime.processes() == []
