"""A Backend double for failure paths that the real LocalBackend cannot produce on demand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from golem_backend import (
    Backend,
    BackendError,
    BackendStatus,
    BackendUnavailable,
    Capacity,
    LabelScore,
    ModelRef,
    Outcome,
    Prediction,
    ProgressCallback,
    TrainingSet,
    TrainReport,
)


class ScriptedBackend(Backend):
    """Answers every image with a fixed prediction, or raises ``fail_with`` for the request.

    ``gate`` (when set) makes ``classify`` wait until it is set, to hold requests in flight.
    ``retrain`` reports ``retrain_steps`` progress steps, ``retrain_step_s`` apart, then
    waits for ``retrain_gate`` (when set); ``retraining`` is set while a retrain waits.
    ``capacity()`` reports ``images_per_s`` and ``slots`` as the test sets them, and the
    images in ``classify`` now (the door, ``bot.core.admission``, reads it).
    """

    kind = "scripted"

    def __init__(self) -> None:
        self.fail_with: BackendError | None = None
        self.retrain_fails_with: BackendError | None = None  # retrains only
        self.fail_start: BackendError | None = None
        self.ready = True  # what status() reports
        self.status_error: Exception | None = None  # status() raises it
        self.gate: asyncio.Event | None = None
        self.started = self.stopped = False
        self.calls: list[int] = []
        self.images_per_s = 1000.0  # what capacity() reports
        self.slots = 8
        self.in_flight = 0  # images in classify() now
        self.requests: list[tuple[ModelRef | None, str | None]] = []  # (model, tenant)
        self.trained: list[TrainingSet | None] = []
        self.heads: dict[str, tuple[str, ...]] = {}  # model id -> labels, from retrain()
        self.entered = asyncio.Event()  # set when a classification starts
        self.cancelled = 0
        self.retrain_steps = 0
        self.retrain_step_s = 0.0
        self.retrain_gate: asyncio.Event | None = None
        self.retraining = asyncio.Event()
        self.prediction = Prediction(
            "daisy", 0.9, (LabelScore("daisy", 0.9), LabelScore("tulip", 0.1)), "scripted-1"
        )
        #: the default model's answer for particular images (by their bytes)
        self.answers: dict[bytes, Prediction] = {}

    async def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.started = True

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        self.calls.append(len(images))
        self.requests.append((model, tenant))
        self.entered.set()
        self.in_flight += len(images)
        try:
            if self.gate is not None:
                try:
                    await self.gate.wait()
                except asyncio.CancelledError:
                    self.cancelled += 1
                    raise
        finally:
            self.in_flight -= len(images)
        if self.fail_with is not None:
            raise self.fail_with
        if model is not None:  # a server head answers with its own first label
            labels = self.heads.get(model.model_id)
            if labels is None or not model.path.is_file():
                raise BackendUnavailable(f"model {model.model_id} cannot be loaded")
            return [
                Prediction(labels[0], 0.8, (LabelScore(labels[0], 0.8),), model.model_id)
                for _ in images
            ]
        return [self.answers.get(data, self.prediction) for data in images]

    async def retrain(
        self,
        dataset: Path | None = None,
        progress: ProgressCallback | None = None,
        *,
        training_set: TrainingSet | None = None,
        tenant: str | None = None,
    ) -> TrainReport:
        """A server's retrain writes ``<out_dir>/<model_id>.model`` like the real backends
        (the id derived from the examples, so the same set gives the same id)."""
        self.trained.append(training_set)
        for step in range(self.retrain_steps):
            if progress is not None:
                progress("training", step, self.retrain_steps)
            await asyncio.sleep(self.retrain_step_s)
        if self.retrain_gate is not None:
            self.retraining.set()
            await self.retrain_gate.wait()
        if (self.retrain_fails_with or self.fail_with) is not None:
            raise self.retrain_fails_with or self.fail_with  # type: ignore[misc]
        if training_set is None:
            return TrainReport("scripted-2", ("daisy",), 1, None, None, 0.0)
        import hashlib

        labels = tuple(sorted({e.label for e in training_set.examples}))
        digest = hashlib.sha256(
            repr(
                (
                    sorted((e.label, e.path.name) for e in training_set.examples),
                    training_set.include_default,
                )
            ).encode()
        ).hexdigest()[:16]
        path = training_set.out_dir / f"{digest}.model"
        path.parent.mkdir(parents=True, exist_ok=True)  # as the real backends do
        path.write_bytes(b"scripted head " + digest.encode())
        self.heads[digest] = labels or ("daisy",)
        counts = {lb: sum(e.label == lb for e in training_set.examples) for lb in labels}
        return TrainReport(
            digest,
            labels,
            len(training_set.examples),
            0.75,
            0.05,
            0.0,
            extra={
                "model_path": str(path),
                "per_label_recall": {lb: 0.5 for lb in labels},
                "label_counts": counts,
                # half of each label's images answered right, the rest as the next label
                "confusion": [
                    [
                        (counts[t] - counts[t] // 2)
                        if p == t
                        else (
                            counts[t] // 2
                            if p == labels[(labels.index(t) + 1) % len(labels)]
                            else 0
                        )
                        for p in labels
                    ]
                    for t in labels
                ],
                "confusion_labels": labels,
                # as provider.quality reports it: a hint for each label short of 10 photos
                "quality": {
                    "accuracy": 0.7,
                    "unknown_rate": 0.05,
                    "ece": 0.08,
                    "per_label": {
                        lb: {"images": counts[lb], "recall": 0.5, "unknown_rate": 0.05}
                        for lb in labels
                    },
                    "hints": [
                        {"label": lb, "add": 10 - n, "reason": f"only {n} photos"}
                        for lb, n in counts.items()
                        if n < 10
                    ],
                },
            },
        )

    def capacity(self) -> Capacity:
        units = 1 if self.images_per_s > 0 else 0
        return Capacity(self.images_per_s, self.in_flight, self.slots, units, measured=True)

    async def status(self) -> BackendStatus:
        if self.status_error is not None:
            raise self.status_error
        return BackendStatus(
            "scripted",
            self.ready,
            "scripted-1",
            ("daisy", "tulip"),
            None,
            0,
            0,
            0,
            detail="" if self.ready else "all workers failed",
        )

    async def stop(self) -> None:
        self.stopped = True


class DecodingBackend(ScriptedBackend):
    """DEV ONLY until provider.train lands: decodes with the real decoder, fixed answer."""

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        self.requests.append((model, tenant))
        from provider.errors import ImageError
        from provider.imageio import decode_image

        out: list[Outcome] = []
        for data in images:
            try:
                decode_image(data, max_bytes=10 << 20, max_pixels=40_000_000)
                out.append(
                    Prediction(
                        "daisy",
                        0.9,
                        (
                            LabelScore("daisy", 0.9),
                            LabelScore("sunflower", 0.07),
                            LabelScore("tulip", 0.03),
                        )[:top_k],
                        "dev-1",
                    )
                )
            except ImageError as exc:
                out.append(exc)
        return out

    async def status(self) -> BackendStatus:
        return BackendStatus("dev", True, "dev-1", ("daisy", "sunflower", "tulip"), 0.9, 0, 0, 0)


@dataclass(eq=False)
class Held:
    tenant: str | None
    images: int
    answer: asyncio.Future[None]


class HeldBackend(ScriptedBackend):
    """Holds every classification until the test answers it (``answer``), in any order:
    ``held`` lists the requests in the backend now, oldest first; ``arrivals`` every
    request's tenant in the order it reached the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Held] = []
        self.arrivals: list[str | None] = []

    async def classify(
        self,
        images: list[bytes],
        top_k: int = 3,
        *,
        model: ModelRef | None = None,
        tenant: str | None = None,
    ) -> list[Outcome]:
        held = Held(tenant, len(images), asyncio.get_running_loop().create_future())
        self.held.append(held)
        self.arrivals.append(tenant)
        self.in_flight += len(images)
        try:
            await held.answer
        finally:
            self.in_flight -= len(images)
            self.held.remove(held)
        return await super().classify(images, top_k, model=model, tenant=tenant)

    def answer(self, index: int = 0) -> Held:
        """Let the ``index``-th held request (oldest first) be answered."""
        held = self.held[index]
        held.answer.set_result(None)
        return held
