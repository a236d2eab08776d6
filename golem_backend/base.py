"""The async interface every backend implements, and its typed errors."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from golem_backend.throughput import UNMEASURED, Capacity
from provider.errors import ImageError
from provider.results import Prediction

#: One entry per input image: a prediction, or the typed reason that image was rejected.
Outcome = Prediction | ImageError

#: ``progress(stage, done, total)``: stage is a short human-readable phrase
#: ("extracting features", "cross-validating", "fitting"); done/total count work units.
ProgressCallback = Callable[[str, int, int], Awaitable[None] | None]


class BackendError(Exception):
    """Base of backend failures; ``str(error)`` is the message a user may see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BackendUnavailable(BackendError):
    """The backend cannot serve at all (not started, yagna down, no model, ...)."""


class BackendBusy(BackendError):
    """The request queue is full; try again in a moment."""


class BackendTimeout(BackendError):
    """The request did not finish within its deadline."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A trained head to classify with: its content-derived id and its artifact file."""

    model_id: str
    path: Path


@dataclass(frozen=True, slots=True)
class Example:
    """One taught image: a file on this machine and its (already normalised) label."""

    path: Path
    label: str


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """What a server's head is trained on; the artifact goes to ``out_dir/<model_id>.model``."""

    out_dir: Path  # where the new artifact is written (per-server folder)
    examples: tuple[Example, ...]  # the server's taught images
    include_default: bool = True  # plus every image of the default dataset


@dataclass(frozen=True, slots=True)
class TrainReport:
    model_id: str
    labels: tuple[str, ...]
    n_images: int
    accuracy: float | None  # cross-validated accuracy in [0, 1], None when not measured
    accuracy_std: float | None
    duration_s: float
    skipped: tuple[str, ...] = ()  # files that could not be read, "path: reason"
    warnings: tuple[str, ...] = ()  # e.g. labels with too few images
    confusion_png: bytes | None = None  # confusion-matrix image, when available
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    name: str  # provider name (Golem) or worker name (local)
    state: str  # e.g. "starting", "running", "failed"
    provider_id: str = ""
    requests_served: int = 0
    glm_accepted: float | None = None  # Golem: paid to this instance's agreements so far


@dataclass(frozen=True, slots=True)
class CostSummary:
    """What Golem has cost so far and what the budget still allows (GLM, hours)."""

    budget_glm: float
    spent_glm: float
    per_instance: tuple[tuple[str, float], ...]  # (instance name, GLM accepted)
    images: int  # images classified on Golem
    glm_per_1000_images: float | None  # None before the first image
    glm_per_hour: float  # spent so far / hours since start
    projected_glm_per_hour: float  # live agreements at their prices (else at the caps)
    hours_left: float | None  # remaining budget / projected rate; None when nothing runs


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    """One decision of the elastic instance count, with the reason an operator reads."""

    at: float  # seconds since the backend started
    action: str  # "up" | "down" | "hold" | "stop" | "resume"
    instances: int  # the target after the decision
    reason: str


@dataclass(frozen=True, slots=True)
class BackendStatus:
    kind: str  # "local" | "golem"
    ready: bool
    model_id: str | None
    labels: tuple[str, ...]
    accuracy: float | None
    queue_depth: int
    requests_served: int
    errors: int
    instances: tuple[InstanceInfo, ...] = ()
    glm_spent: float | None = None  # Golem only
    detail: str = ""
    worker_restarts: int = 0  # workers/instances replaced after a crash, since start
    answered_by: str = ""  # the engine that answered the last request ("golem", "local")
    costs: CostSummary | None = None  # Golem only
    scaling: tuple[ScalingDecision, ...] = ()  # Golem only: recent decisions, oldest first
    #: Golem only: the version handshake's error (a provider's VM image runs other library
    #: or extractor versions than this bot), naming both and the fix; empty when none
    version_mismatch: str = ""


class Backend(abc.ABC):
    """Classifies images somewhere. All methods are coroutines; none blocks the event loop."""

    kind: str = "abstract"

    @abc.abstractmethod
    async def start(self) -> None:
        """Make the backend ready to classify. Raises :class:`BackendUnavailable`."""

    @abc.abstractmethod
    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        """Classify encoded images (JPEG/PNG/... bytes); one outcome per image, in order.

        ``model`` names the head to use (None: the default model). ``tenant`` (e.g.
        ``"guild:123"``) is only for fairness: one tenant may hold at most half of the queue.
        Raises :class:`BackendBusy`, :class:`BackendTimeout` or :class:`BackendUnavailable`
        (also for a head whose file is missing or fails verification) for failures of the
        whole request; a bad image is an :class:`ImageError` *in* the list.
        """

    @abc.abstractmethod
    async def retrain(
        self,
        dataset: Path | None = None,
        progress: ProgressCallback | None = None,
        *,
        training_set: TrainingSet | None = None,
        tenant: str | None = None,
    ) -> TrainReport:
        """Train a new model.

        Without ``training_set``: from ``dataset`` or the default one, and swap it in as the
        default model. With one: a head from the shared feature cache, written atomically to
        ``training_set.out_dir/<model_id>.model``; the default model is not changed. At most
        one retrain per ``tenant`` at a time, ``RETRAIN_CONCURRENCY`` overall, each within
        ``RETRAIN_TIMEOUT_S``. ``TrainReport.extra`` holds ``model_path``,
        ``per_label_recall``, ``label_counts``, ``quality``: the model's cross-validated
        figures (``accuracy``, ``unknown_rate``, ``ece``, ``per_label``, ``hints``, ...;
        see :func:`golem_backend.child.quality_summary` and docs/classifier.md) and, when
        cross-validated, ``confusion`` (counts, rows = true label, columns = predicted) in
        the order of ``confusion_labels``.
        """

    def capacity(self) -> Capacity:
        """Measured throughput, images in flight and useful slots, now (cheap, no await;
        :class:`~golem_backend.throughput.Capacity`). A backend that measures nothing
        reports a fixed prior."""
        return UNMEASURED

    @abc.abstractmethod
    async def status(self) -> BackendStatus:
        """A snapshot for ``/status``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release everything (workers, Golem instances). Safe to call twice."""

    async def __aenter__(self) -> Backend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
