"""``/status`` of the Golem backend: instances, costs, scaling and what needs the operator."""

from __future__ import annotations

from golem_backend.base import BackendStatus, InstanceInfo
from golem_backend.golem.dispatcher import Dispatcher
from golem_backend.golem.elastic import Autoscaler
from golem_backend.golem.model_store import ModelStore
from golem_backend.golem.runtime import Runtime
from golem_backend.settings import BackendSettings

#: The state /status (and the instance-state metric) gives instances the handshake retired.
VERSION_MISMATCH_STATE = "version mismatch"


def golem_status(
    settings: BackendSettings,
    *,
    ready: bool,
    store: ModelStore | None,
    dispatcher: Dispatcher | None,
    scaler: Autoscaler | None,
    runtime: Runtime,
    wanted: int,
    accuracy: float | None,
    retraining: bool,
) -> BackendStatus:
    s = settings
    instances = dispatcher.instances() if dispatcher else []
    running = sum(1 for _, state, _ in instances if state == "running")
    paid = runtime.ledger.per_instance()
    budget = scaler.config.budget_glm if scaler else s.golem_budget_glm
    detail = (
        f"{running}/{wanted} instance(s) running "
        f"({s.min_instances}-{s.max_instances}); subnet {s.golem_subnet}; "
        f"payments {s.golem_payment_driver}/{s.golem_payment_network}, "
        f"budget {budget:g} GLM"
    )
    if dispatcher and dispatcher.instance_failures:
        detail += f"; {dispatcher.instance_failures} instance failure(s) so far"
    if retraining:
        detail += "; retraining"
    if scaler is not None and scaler.budget_note:
        detail += f"; {scaler.budget_note}"
    mismatch = dispatcher.pool.version_mismatch if dispatcher else None
    retired = dispatcher.pool.retired() if dispatcher and mismatch else []
    if dispatcher and dispatcher.pool.halted:
        detail += "; no more instances are started: the VM image runs other versions"
    listed = [
        InstanceInfo(
            name=svc.name,
            state=state,
            provider_id=svc.provider_id or "",
            requests_served=n,
            glm_accepted=paid.get(svc.name),
        )
        for svc, state, n in instances
    ]
    listed += [InstanceInfo(name=name, state=VERSION_MISMATCH_STATE) for name in retired]
    return BackendStatus(
        kind="golem",
        ready=ready,
        model_id=store.current.model_id if store else None,
        labels=store.current.labels if store else (),
        accuracy=accuracy,
        queue_depth=dispatcher.queue_depth if dispatcher else 0,
        requests_served=dispatcher.requests_served if dispatcher else 0,
        errors=dispatcher.errors if dispatcher else 0,
        instances=tuple(listed),
        glm_spent=runtime.ledger.total if runtime.connected else None,
        detail=detail,
        worker_restarts=dispatcher.instance_failures if dispatcher else 0,
        answered_by="golem",
        costs=scaler.costs(running) if scaler else None,
        scaling=tuple(scaler.decisions) if scaler else (),
        version_mismatch=mismatch or "",
    )
