"""``GolemBackend``: the classifier runs on providers of the Golem Network.

* ``start()`` connects to yagna (bounded by ``GOLEM_START_TIMEOUT_S``, typed errors that
  say what to do), makes sure a model exists on this machine (trains the default one when
  there is none), and opens ``GOLEM_INSTANCES`` ClassifierService instances. It returns
  without waiting for providers: until one runs, requests wait (and time out clearly).
* The requestor holds the model artifact (:mod:`.default_model`) and uploads it to every
  instance, so Golem serves exactly the model the local backend would. ``retrain()`` trains
  here, swaps the artifact in, and uploads it to the running instances; new instances get
  it at start.
* Every instance first passes the version handshake (:mod:`.handshake`); a mismatch is in
  ``status().version_mismatch`` and the instance state ``version mismatch``.
* The budget may be raised while the bot runs (:mod:`.budget`): after a budget stop the
  Golem connection is reopened with a new allocation and instances start again.
* ``status()`` is built by :mod:`.status`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golem_backend.base import (
    Backend,
    BackendBusy,
    BackendStatus,
    BackendUnavailable,
    ModelRef,
    Outcome,
    ProgressCallback,
    TrainingSet,
    TrainReport,
)
from golem_backend.golem import canaries
from golem_backend.golem.budget import BudgetFile
from golem_backend.golem.default_model import DefaultModel
from golem_backend.golem.dispatcher import Dispatcher, DispatcherConfig
from golem_backend.golem.elastic import Autoscaler, ElasticConfig, elastic_config
from golem_backend.golem.heads import HeadShelf
from golem_backend.golem.health import HealthConfig, HealthMonitor
from golem_backend.golem.market import price_caps
from golem_backend.golem.model_file import load_artifact, reason_of
from golem_backend.golem.model_store import ModelStore
from golem_backend.golem.runtime import GolemRuntime, Runtime
from golem_backend.golem.service import ServiceConfig
from golem_backend.golem.status import golem_status
from golem_backend.lifecycle import Lifecycle
from golem_backend.processes import worker_context
from golem_backend.settings import BackendSettings
from golem_backend.throughput import Capacity
from golem_backend.trainer import Trainer
from golem_backend.training import report_from_summary
from provider.errors import EmptyImage, ImageTooLarge

logger = logging.getLogger(__name__)

_SHUTTING_DOWN = "The Golem backend is shutting down."
_STOPPED_WHILE_STARTING = "The Golem backend was stopped while it was starting."
BUDGET_SPENT = (
    "Image classification is paused: the bot's Golem budget is used up. "
    "Please tell the bot's operator."
)


def dispatcher_config(settings: BackendSettings) -> DispatcherConfig:
    """The dispatcher's knobs, from settings."""
    expiration_s = settings.golem_expiration_min * 60
    replace_before_s = min(settings.golem_replace_before_min * 60, expiration_s / 2)
    return DispatcherConfig(
        num_instances=settings.min_instances,
        batch_size=settings.golem_batch_size,
        batch_wait_s=settings.golem_batch_wait_ms / 1000,
        max_retries=settings.golem_max_retries,
        queue_size=settings.golem_queue_size,
        expiration_s=expiration_s,
        replace_before_s=replace_before_s,
        terminate_timeout_s=settings.golem_stop_timeout_s / 2,
    )


class GolemBackend(Backend):
    """Classifies on Golem providers; see the module docstring.

    ``runtime`` defaults to :class:`GolemRuntime` (yagna through yapapi); tests pass the
    local exe-unit harness. ``config`` overrides the dispatcher settings (e.g. a short
    expiration in tests), ``elastic`` the scaling ones, ``clock`` the time scaling and
    costs use. ``progress`` receives training progress when ``start()`` trains.
    """

    kind = "golem"

    def __init__(
        self,
        settings: BackendSettings,
        *,
        runtime: Runtime | None = None,
        config: DispatcherConfig | None = None,
        elastic: ElasticConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._settings = settings
        self._runtime: Runtime = runtime or GolemRuntime(settings)
        self._config = config or dispatcher_config(settings)
        self._elastic = elastic or elastic_config(settings, price_caps(settings))
        self._clock = clock
        self._autoscaler: Autoscaler | None = None
        self._progress = progress
        self._dispatcher: Dispatcher | None = None
        self._store: ModelStore | None = None
        self._model = DefaultModel(settings, self._shutting_down)
        # Servers' heads; the providers classify, so trainings may use every core.
        self._trainer = Trainer(
            worker_context(), settings, serving_threads=None, shutting_down=self._shutting_down
        )
        self._life = Lifecycle()
        self._heads = HeadShelf(settings.head_cache_bytes)
        self._transfer_dir: Path | None = None  # replies from providers, each deleted once read

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self._life.state == "stopped":
            raise BackendUnavailable("The Golem backend was stopped; create a new backend.")
        if self._life.state != "new":
            return
        await self._life.start(self._open(), self._release, _STOPPED_WHILE_STARTING)
        self._life.state = "ready"
        assert self._store is not None
        logger.info(
            "golem backend ready: model %s, %d instance(s) requested",
            self._store.current.model_id,
            self._config.num_instances,
        )

    async def _open(self) -> None:
        """Connect to yagna, make sure there is a model, open the instances."""
        await self._runtime.start()
        store = self._store = ModelStore(await self._model.load(self._progress))
        self._transfer_dir = Path(tempfile.mkdtemp(prefix="imageclassifier-golem-"))
        health = HealthMonitor(HealthConfig.from_settings(self._settings), lambda: store.canaries)
        dispatcher = Dispatcher(
            self._runtime.open_cluster, self._instance_params, self._config, health
        )
        self._dispatcher = dispatcher
        timeout = self._settings.golem_start_timeout_s
        try:  # the canaries' answers are computed here while the instances start
            await asyncio.wait_for(
                asyncio.gather(dispatcher.start(), self._refresh_canaries(store)), timeout
            )
        except BackendUnavailable:
            raise
        except TimeoutError:
            raise BackendUnavailable(
                f"Golem did not open the classifier instances within {timeout:g} s "
                "(GOLEM_START_TIMEOUT_S); check yagna and try again."
            ) from None
        except Exception as exc:
            raise BackendUnavailable(f"Could not start Golem instances: {reason_of(exc)}") from exc
        self._autoscaler = Autoscaler(
            dispatcher,
            self._runtime.ledger,
            self._elastic,
            self._clock,
            self._budget_spent,
            budget_file=BudgetFile(self._settings.data_dir),
            on_budget_raised=self._reopen,
        )
        self._autoscaler.start()

    def _budget_spent(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.fail_waiting(BUDGET_SPENT)

    async def _reopen(self, allocation_glm: float) -> None:
        """The budget was raised after a stop: a new yagna allocation, then new clusters."""
        assert self._dispatcher is not None
        await self._dispatcher.pool.forget_clusters()
        await self._runtime.reopen(allocation_glm, self._settings.golem_start_timeout_s)
        logger.warning("reconnected to Golem with %.4f GLM allocated", allocation_glm)

    async def stop(self) -> None:
        await self._life.stop(self._release)

    async def _release(self) -> None:
        """Within GOLEM_STOP_TIMEOUT_S: stop the instances (half), then yapapi (the rest:
        it ends the agreements and pays), even when a provider or yagna hangs."""
        await self._model.kill()
        await self._trainer.kill_all()
        budget = self._settings.golem_stop_timeout_s
        deadline = time.monotonic() + budget
        if self._autoscaler is not None:
            await self._autoscaler.stop()
        if self._dispatcher is not None:
            try:
                await asyncio.wait_for(self._dispatcher.stop(), budget / 2)
            except TimeoutError:
                logger.error("Golem instances did not stop within %g s; moving on", budget / 2)
        remaining = max(1.0, deadline - time.monotonic())
        try:  # yapapi ends the agreements and pays; bounded even if it waits for yagna
            await asyncio.wait_for(self._runtime.close(remaining), remaining)
        except TimeoutError:
            logger.error(
                "the Golem connection did not close within %g s (GOLEM_STOP_TIMEOUT_S); "
                "agreements still open end at their expiration, unaccepted invoices stay unpaid",
                budget,
            )
        if self._transfer_dir is not None:
            shutil.rmtree(self._transfer_dir, ignore_errors=True)
        logger.info("golem backend stopped")

    async def _refresh_canaries(self, store: ModelStore) -> None:
        """The canaries' expected answers for the store's current model."""
        model = store.current
        found = await canaries.compute(
            self._settings.model_path, model.model_id, self._settings.max_image_pixels, 120.0
        )
        if store.current is model:  # not swapped meanwhile
            store.canaries = found

    def _instance_params(self) -> dict[str, Any]:
        assert self._store is not None
        return {
            "config": ServiceConfig(
                store=self._store,
                script_timeout_s=self._settings.golem_script_timeout_s,
                max_pixels=self._settings.max_image_pixels,
                head_cache_mb=self._settings.head_cache_mb,
                transfer_dir=self._transfer_dir or Path(tempfile.gettempdir()),
            )
        }

    # --- model ------------------------------------------------------------------------

    async def retrain(
        self,
        dataset: Path | None = None,
        progress: ProgressCallback | None = None,
        *,
        training_set: TrainingSet | None = None,
        tenant: str | None = None,
    ) -> TrainReport:
        self._ready()
        if training_set is not None:
            head = training_set
            return await self._trainer.queued(tenant, lambda: self._train_head(head, progress))
        return await self._trainer.queued(tenant, lambda: self._retrain_default(dataset, progress))

    async def _train_head(
        self, training_set: TrainingSet, progress: ProgressCallback | None
    ) -> TrainReport:
        """A server's head, trained on this machine (the providers only classify)."""
        self._ready()
        return await self._trainer.train_head(training_set, progress)

    async def _retrain_default(
        self, dataset: Path | None, progress: ProgressCallback | None
    ) -> TrainReport:
        dispatcher, store = self._ready()
        if self._model.training is not None:
            raise BackendBusy("A retrain is already running; wait for it to finish.")
        previous = store.current.model_id
        summary = await self._model.train(dataset, progress, serving=True)
        store.current = await load_artifact(self._settings.model_path, summary)
        store.canaries = None  # the old model's answers: no longer valid
        await self._refresh_canaries(store)
        updated = await dispatcher.sync_model(2 * self._settings.golem_script_timeout_s)
        logger.info(
            "model %s replaced by %s on %d instance(s)", previous, summary["model_id"], updated
        )
        return report_from_summary(summary, previous_model_id=previous, instances_updated=updated)

    # --- serving ----------------------------------------------------------------------

    def _shutting_down(self) -> str | None:
        return _SHUTTING_DOWN if self._life.state == "stopped" else None

    def _ready(self) -> tuple[Dispatcher, ModelStore]:
        if self._life.state != "ready" or self._dispatcher is None or self._store is None:
            if self._life.state == "stopped":
                raise BackendUnavailable(_SHUTTING_DOWN)
            raise BackendUnavailable("The classifier is still starting up; try again in a minute.")
        if self._autoscaler is not None and self._autoscaler.budget_spent:
            raise BackendUnavailable(BUDGET_SPENT)
        return self._dispatcher, self._store

    def note_demand(self) -> None:
        """A request went to the local fallback because no instance served: with
        ``GOLEM_MIN_INSTANCES=0`` this starts one (scale from zero)."""
        if self._dispatcher is not None and self._life.state == "ready":
            self._dispatcher.note_demand()

    @property
    def serving(self) -> bool:
        """A Golem instance runs and may take a request now (what the fallback checks)."""
        spent = self._autoscaler is not None and self._autoscaler.budget_spent
        d = self._dispatcher
        return self._life.state == "ready" and d is not None and d.ready and not spent

    async def adopt_model(self) -> int:
        """Serve the model now at ``settings.model_path`` (retrained elsewhere, e.g. by the
        local fallback); returns how many instances confirmed it."""
        dispatcher, store = self._ready()
        store.current = await self._model.reload()
        return await dispatcher.sync_model(2 * self._settings.golem_script_timeout_s)

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        dispatcher, store = self._ready()
        head = None
        if model is not None and model.model_id != store.current.model_id:
            head = await self._heads.get(model)  # uploaded to each instance when it lacks it
        limit = self._settings.max_image_bytes
        outcomes: list[Outcome | None] = [None] * len(images)
        send: list[int] = []
        for i, data in enumerate(images):
            if not data:
                outcomes[i] = EmptyImage("The file is empty.")
            elif len(data) > limit:
                outcomes[i] = ImageTooLarge(
                    f"The image is too large ({len(data) / 2**20:.1f} MB; "
                    f"the limit is {limit / 2**20:.1f} MB)."
                )
            else:
                send.append(i)
        if send:
            results = await dispatcher.submit(
                [images[i] for i in send],
                max(1, top_k),
                self._settings.request_timeout_s,
                head=head,
                tenant=tenant,
            )
            for i, outcome in zip(send, results, strict=True):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def capacity(self) -> Capacity:
        """The running instances' measured rates; none while not serving, unless scaled
        to zero by policy (``GOLEM_MIN_INSTANCES=0``): then a request is what starts an
        instance, so one instance at its prior rate is reported (a door that saw no
        capacity would let no request through, and none would ever start)."""
        dispatcher = self._dispatcher
        if dispatcher is None or self._life.state != "ready":
            return Capacity(0.0, 0, 0, 0, measured=False)
        if self.serving:
            return dispatcher.capacity()
        spent = self._autoscaler is not None and self._autoscaler.budget_spent
        if self._settings.min_instances == 0 and not spent and not dispatcher.pool.halted:
            return dispatcher.capacity(from_zero=True)
        return Capacity(0.0, 0, 0, 0, measured=False)

    async def status(self) -> BackendStatus:
        dispatcher = self._dispatcher
        started = self._life.state == "ready" and dispatcher is not None
        return golem_status(
            self._settings,
            # scaled to zero by policy (GOLEM_MIN_INSTANCES=0) is ready: a request starts one
            ready=started
            and (dispatcher.ready or self._settings.min_instances == 0)
            and not dispatcher.pool.halted,
            store=self._store,
            dispatcher=dispatcher,
            scaler=self._autoscaler,
            runtime=self._runtime,
            wanted=dispatcher.pool.target if dispatcher else self._config.num_instances,
            accuracy=self._model.accuracy,
            retraining=self._model.training is not None,
        )
