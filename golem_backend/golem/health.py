"""Is an instance honest and well? Error rates over a sliding window, and canaries.

A provider is untrusted. The dispatcher asks this module, batch after batch:

* **Rates.** Each batch an instance ends is one event in its window of the last
  ``window`` batches: bad when the daemon refused it (a batch of one request: a batch of
  several is split first, so that one poison request is not held against the instance), or
  when the provider called an image broken (``corrupt``, ``not_an_image``, ...) that the
  requestor's own decoder reads. Past
  ``max_bad_ratio`` of bad batches (after ``min_batches``), the instance is replaced. An
  honest provider seeing genuinely broken images is not blamed: those images fail here too.
* **Canaries** (:mod:`.canaries`): the first batch of each instance, and a random share
  ``canary_rate`` of the later ones, carries a canary image at a random position, named
  like the others and padded to the size of one of them. A wrong label or a confidence
  far from the requestor's fails the batch: its results are dropped (users never see
  them), the instance is replaced and the batch re-run elsewhere.
* **Probation.** After a batch times out, the instance gets no batch but a probe of
  canaries alone: if it answers them right, the instance is well and the image that timed
  out alone is at fault; if not, the instance is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from golem_backend.base import Outcome
from golem_backend.golem.batch import ClassifyBatch
from golem_backend.golem.canaries import Canary, CanarySet, disguise, mismatch
from golem_backend.golem.model_store import ModelArtifact
from golem_backend.golem.service import ClassifierService
from golem_backend.settings import BackendSettings
from provider.errors import ImageError

logger = logging.getLogger(__name__)

#: Codes an honest daemon gives only for images the requestor's decoder also rejects.
DISPUTABLE = frozenset({"empty", "not_an_image", "unreadable", "corrupt"})


@dataclass(frozen=True, slots=True)
class HealthConfig:
    window: int = 20  # batches per instance considered
    max_bad_ratio: float = 0.5  # replaced when this share of them went bad
    min_batches: int = 4  # judged only once it has ended this many
    canary_rate: float = 0.1  # share of batches (after the first) that carry a canary
    max_pixels: int = 40_000_000  # for the requestor's own decode of disputed images

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> HealthConfig:
        return cls(
            window=settings.golem_health_window,
            max_bad_ratio=settings.golem_health_max_bad_ratio,
            min_batches=settings.golem_health_min_batches,
            canary_rate=settings.golem_canary_rate,
            max_pixels=settings.max_image_pixels,
        )


@dataclass(eq=False)
class InstanceHealth:
    """What one instance has done lately."""

    events: deque[bool]  # True: the batch went bad
    checked: bool = False  # has answered a canary right
    on_probation: bool = False  # timed out: gets no batch until a probe passes

    def bad_ratio(self) -> float:
        return sum(self.events) / len(self.events) if self.events else 0.0


@dataclass(eq=False)
class MixedBatch:
    """The images sent to a provider: the users' images with canaries at random positions."""

    images: list[bytes]
    heads: list[ModelArtifact | None]  # per image; [] = none
    canaries: dict[int, Canary] = field(default_factory=dict)  # position -> canary
    model_id: str = ""  # the model the canaries' answers belong to

    def users_outcomes(self, outcomes: list[Outcome]) -> list[Outcome]:
        return [o for i, o in enumerate(outcomes) if i not in self.canaries]

    def canary_failure(self, outcomes: list[Outcome]) -> str | None:
        for position, canary in self.canaries.items():
            reason = mismatch(outcomes[position], canary.expected, self.model_id)
            if reason is not None:
                return reason
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a batch's answers."""

    evict: str | None = None  # replace the instance, for this reason
    rerun: str | None = None  # do not deliver the answers: re-run the batch, for this reason
    disputed: frozenset[int] = frozenset()  # users' images called broken that are readable


class HealthMonitor:
    """Per-instance rates, canaries and probation (see the module docstring)."""

    def __init__(
        self, config: HealthConfig, canaries: Callable[[], CanarySet | None] = lambda: None
    ) -> None:
        self.config = config
        self._canaries = canaries
        self._instances: weakref.WeakKeyDictionary[object, InstanceHealth] = (
            weakref.WeakKeyDictionary()
        )
        self._random = random.Random()
        self._sizes: deque[int] = deque(maxlen=256)  # of users' images lately: canaries match
        self.canary_failures = 0

    def of(self, key: object) -> InstanceHealth:
        health = self._instances.get(key)
        if health is None:
            health = InstanceHealth(deque(maxlen=self.config.window))
            self._instances[key] = health
        return health

    # --- canaries ---------------------------------------------------------------------

    def mix(
        self, key: object, images: list[bytes], heads: list[ModelArtifact | None]
    ) -> MixedBatch:
        """Add canaries to a batch for instance ``key`` when it is due a check."""
        canaries = self._canaries()
        health = self.of(key)
        self._sizes.extend(len(image) for image in images)
        due = not health.checked or self._random.random() < self.config.canary_rate
        if canaries is None or not due:
            return MixedBatch(list(images), list(heads))
        return self._with_canaries(canaries, images, heads, 1 if health.checked else 2)

    def probe(self) -> MixedBatch | None:
        """A batch of canaries alone (None: no canaries to probe with)."""
        canaries = self._canaries()
        return None if canaries is None else self._with_canaries(canaries, [], [], 2)

    def _with_canaries(
        self,
        canaries: CanarySet,
        images: list[bytes],
        heads: list[ModelArtifact | None],
        count: int,
    ) -> MixedBatch:
        mixed = MixedBatch(list(images), list(heads), model_id=canaries.model_id)
        picked = self._random.sample(canaries.canaries, min(count, len(canaries.canaries)))
        sizes = [len(image) for image in images] or list(self._sizes) or [0]
        for canary in picked:
            position = self._random.randint(0, len(mixed.images))
            image = disguise(canary.image, self._random.choice(sizes), self._random)
            mixed.images.insert(position, image)
            if mixed.heads:
                mixed.heads.insert(position, None)  # canaries are answered by the default model
            shifted = {(p + 1 if p >= position else p): c for p, c in mixed.canaries.items()}
            mixed.canaries = {**shifted, position: canary}
        return mixed

    async def probe_instance(
        self, service: ClassifierService, in_flight: dict[str, ClassifyBatch]
    ) -> str | None:
        """Send ``service`` canaries alone (it is on probation meanwhile); why it failed them,
        or None when it answered them right (or there are no canaries to check it with)."""
        health = self.of(service)
        health.on_probation = True
        probe = self.probe()
        reason = None
        if probe is not None:
            future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
            batch = ClassifyBatch(f"batch-{uuid.uuid4().hex[:12]}", probe.images, 1, future)
            in_flight[batch.batch_id] = batch  # failed by the pool if the instance stops
            try:
                service.send_message_nowait(batch)
                reason = probe.canary_failure(await future)
            except Exception as exc:
                reason = f"{type(exc).__name__} {exc}".strip()
            finally:
                in_flight.pop(batch.batch_id, None)
            if reason is None:
                health.checked = True
        health.on_probation = False
        return reason

    def canary_passed(self, key: object, mixed: MixedBatch) -> None:
        if mixed.canaries:
            self.of(key).checked = True

    async def judge(
        self, key: object, mixed: MixedBatch, images: list[bytes], outcomes: list[Outcome]
    ) -> Verdict:
        """Judge the answers of ``mixed`` (``images``: the users' images in it, in order)."""
        failure = mixed.canary_failure(outcomes)
        if failure is not None:
            self.canary_failures += 1
            why = f"failed a canary: {failure}"
            return Verdict(evict=why, rerun=why)
        self.canary_passed(key, mixed)
        disputed = await self.unfounded_errors(images, mixed.users_outcomes(outcomes))
        why = f"called {len(disputed)} readable image(s) broken"
        evict = self.record(key, bad=bool(disputed), why=why)
        return Verdict(evict=evict, disputed=disputed)

    # --- rates ------------------------------------------------------------------------

    def record(self, key: object, *, bad: bool, why: str = "") -> str | None:
        """One batch ended on instance ``key``; returns a reason to replace it, or None."""
        health = self.of(key)
        health.events.append(bad)
        if bad:
            logger.info("instance batch went bad: %s", why)
        if len(health.events) >= self.config.min_batches:
            ratio = health.bad_ratio()
            if ratio >= self.config.max_bad_ratio:
                return (
                    f"{ratio:.0%} of its last {len(health.events)} batches went bad "
                    f"(refused, or images it called broken that are not); last: {why}"
                )
        return None

    async def unfounded_errors(
        self, images: list[bytes], outcomes: list[Outcome]
    ) -> frozenset[int]:
        """Positions of the images the provider called broken that the requestor's own
        decoder reads (decoded in a thread, only when a provider reports such an error)."""
        disputed = {
            i
            for i, outcome in enumerate(outcomes)
            if isinstance(outcome, ImageError) and outcome.code in DISPUTABLE
        }
        if not disputed:
            return frozenset()
        readable = await asyncio.to_thread(self._readable, [images[i] for i in sorted(disputed)])
        return frozenset(i for i, ok in zip(sorted(disputed), readable, strict=True) if ok)

    def _readable(self, images: list[bytes]) -> list[bool]:
        from provider.imageio import decode_image  # numpy & Pillow: only when disputed

        readable = []
        for image in images:
            try:
                decode_image(image, max_pixels=self.config.max_pixels, min_side=224, shrink=True)
            except Exception:  # ImageError, or anything else our decoder trips on
                readable.append(False)
            else:
                readable.append(True)
        return readable
