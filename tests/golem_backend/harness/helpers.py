"""Helpers for the Golem backend tests and the bench: settings, a harness-backed backend."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from golem_backend.golem.backend import GolemBackend, dispatcher_config
from golem_backend.golem.elastic import elastic_config
from golem_backend.golem.market import build_strategy, price_caps
from golem_backend.golem.model_store import ModelArtifact, ModelStore
from golem_backend.golem.service import ClassifierService, ServiceConfig
from golem_backend.settings import BackendSettings

from .engine import Clock, LocalRuntime
from .exeunit import FaultPlan
from .market import HarnessMarket


def golem_settings(data_dir: Path, **overrides: object) -> BackendSettings:
    values: dict[str, object] = {
        "backend": "golem",
        "data_dir": data_dir,
        "golem_instances": 1,
        "golem_batch_size": 8,
        "golem_batch_wait_ms": 15.0,
        "golem_max_retries": 2,
        "golem_script_timeout_s": 8.0,
        "request_timeout_s": 60.0,
        "golem_image_hash": "0" * 56,
    }
    values.update(overrides)
    return BackendSettings(_env_file=None, **values)  # type: ignore[call-arg]


def install_model(model: Path, settings: BackendSettings) -> None:
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(model, settings.model_path)


def make_backend(
    settings: BackendSettings,
    faults: FaultPlan | None = None,
    *,
    market: HarnessMarket | None = None,
    clock: Clock = time.monotonic,
    hang_close: bool = False,
    scale_interval_s: float = 0.05,
    **config: Any,
) -> tuple[GolemBackend, LocalRuntime]:
    """A GolemBackend whose instances run through the local exe-unit harness.

    With a ``market``, instances are placed by the settings' price caps and provider lists
    (yapapi's strategy code) and cost the chosen offers' prices on ``clock``, which the
    autoscaler also uses (tests advance it instead of sleeping).
    """
    runtime = LocalRuntime(
        faults or FaultPlan(),
        health_check_interval=0.5,
        market=market,
        strategy=build_strategy(settings) if market else None,
        clock=clock,
        hang_close=hang_close,
    )
    tuned = dataclasses.replace(dispatcher_config(settings), **{"backoff_base_s": 0.2, **config})
    elastic = dataclasses.replace(
        elastic_config(settings, price_caps(settings)), interval_s=scale_interval_s
    )
    backend = GolemBackend(settings, runtime=runtime, config=tuned, elastic=elastic, clock=clock)
    return backend, runtime


class ManualClock:
    """A clock tests move forward by hand (scaling periods and prices without sleeping)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_until(condition: Callable[[], Any], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await _maybe_await(condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _maybe_await(value: Any) -> Any:
    return await value if asyncio.iscoroutine(value) else value


async def running_instances(backend: GolemBackend) -> int:
    status = await backend.status()
    return sum(1 for i in status.instances if i.state == "running")


async def wait_running(backend: GolemBackend, count: int = 1, within_s: float = 60) -> None:
    """Wait until ``count`` instances run (instance start = deploy + daemon + model load)."""

    async def enough() -> bool:
        return await running_instances(backend) >= count

    await wait_until(enough, within_s, f"{count} running instance(s)")


def client_runs(runtime: LocalRuntime) -> int:
    """How many classification execs the providers ran (one per micro-batch)."""
    return sum(
        1
        for activity in runtime.activities
        for script in activity.scripts
        for command in script
        if "run" in command and "client" in command["run"]["args"]
    )


async def open_one_service(faults: FaultPlan, model: Any) -> tuple[LocalRuntime, ClassifierService]:
    """One ClassifierService serving ``model`` (path, model_id, labels) on the harness,
    waited until it is running or has terminated. The caller closes the runtime."""
    store = ModelStore(ModelArtifact(model.path.read_bytes(), model.model_id, model.labels))
    runtime = LocalRuntime(faults)
    cluster = await runtime.open_cluster(
        1,
        [{"config": ServiceConfig(store=store, script_timeout_s=8)}],
        datetime.now(UTC) + timedelta(hours=1),
    )
    service = cluster.instances[0]
    await wait_until(lambda: service.state.value in ("running", "terminated"), 60, "start")
    return runtime, service
