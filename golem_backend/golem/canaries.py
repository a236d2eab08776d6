"""Canary images of known answer, to check that a provider runs the classifier honestly.

The canaries are photos of the dataset the package ships (``provider/data``), a random
few at each start. Their expected answers are computed when the backend starts (and after
each retrain) by the requestor's own copy of the model, in a throw-away process, with the
same code the provider's daemon runs, so the expected answer is what an honest daemon
returns for that model. Only candidates whose best label leads the second by a clear
margin are kept, so a rounding difference between two machines cannot flip them.

Each time a canary is sent it is :func:`disguise` d: padded with a comment segment of
random bytes to the size of one of the users' images it travels with. Decoders skip
comments, so its pixels and answer are unchanged, while its size and hash are new each time.
The dataset is public, though: a provider that decodes every image and compares it with
that dataset could still recognise canaries. They catch a provider that lies or breaks
blindly, not one built to dodge them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from golem_backend import child
from golem_backend.processes import executor_processes, worker_context
from provider.results import Prediction

logger = logging.getLogger(__name__)

#: The dataset shipped with the package (``provider.train.default_dataset``, without
#: importing the training stack into the bot's process).
SHIPPED_DATASET = Path(__file__).resolve().parents[2] / "provider" / "data" / "flowers17"
CANDIDATES = 16  # photos classified at start; the clearest ``KEPT`` become canaries
KEPT = 6
MIN_MARGIN = 0.1  # best label's confidence minus the second's, for a canary
CONFIDENCE_TOLERANCE = 0.05  # a provider's confidence may differ from ours by this much


@dataclass(frozen=True, slots=True)
class Canary:
    image: bytes
    expected: Prediction


@dataclass(frozen=True, slots=True)
class CanarySet:
    """Canaries of one model (their answers are only valid for ``model_id``)."""

    model_id: str
    canaries: tuple[Canary, ...]


def candidate_images(
    dataset: Path = SHIPPED_DATASET, count: int = CANDIDATES, rng: random.Random | None = None
) -> list[bytes]:
    """``count`` photos of the dataset, drawn at random (``rng``; a new draw each start)."""
    files = sorted(p for p in dataset.rglob("*.jpg") if p.is_file())
    chosen = (rng or random.Random()).sample(files, min(count, len(files)))
    return [path.read_bytes() for path in chosen]


_SOI = b"\xff\xd8"
_COMMENT = b"\xff\xfe"  # a JPEG comment segment: decoders skip it by its length
_MAX_SEGMENT = 65533  # a segment's length field counts itself (2 bytes) and is 16-bit


def disguise(image: bytes, size: int, rng: random.Random) -> bytes:
    """``image`` (a JPEG) padded to about ``size`` bytes with comments of random bytes
    right after its start marker; unchanged when it is not smaller, or not a JPEG."""
    missing = size - len(image)
    if missing < 4 or not image.startswith(_SOI):
        return image
    segments = []
    while missing >= 4:
        body = min(missing - 4, _MAX_SEGMENT - 2)
        segments.append(_COMMENT + (body + 2).to_bytes(2, "big") + rng.randbytes(body))
        missing -= body + 4
    return _SOI + b"".join(segments) + image[len(_SOI) :]


def _margin(prediction: Prediction) -> float:
    scores = [s.confidence for s in prediction.top]
    return scores[0] - scores[1] if len(scores) > 1 else scores[0]


def choose(images: list[bytes], outcomes: list[object], model_id: str) -> CanarySet:
    """The clearest answered candidates (largest margin first)."""
    answered = [
        Canary(image, outcome)
        for image, outcome in zip(images, outcomes, strict=True)
        if isinstance(outcome, Prediction) and _margin(outcome) >= MIN_MARGIN
    ]
    # Known labels first (an "unknown" canary cannot catch a provider answering "unknown"
    # to everything), then the clearest.
    answered.sort(key=lambda c: (c.expected.is_unknown, -_margin(c.expected)))
    return CanarySet(model_id, tuple(answered[:KEPT]))


def mismatch(got: object, want: Prediction, model_id: str) -> str | None:
    """Why ``got`` is not the canary's expected answer, or None when it is."""
    if not isinstance(got, Prediction):
        return f"an error ({getattr(got, 'code', type(got).__name__)}) for a canary"
    if got.model_id and got.model_id != model_id:
        return None  # answered by another model (a retrain in between): nothing to compare
    if got.label != want.label:
        return f"label {got.label!r} for a canary of label {want.label!r}"
    if abs(got.confidence - want.confidence) > CONFIDENCE_TOLERANCE:
        return f"confidence {got.confidence:.3f} for a canary of {want.confidence:.3f}"
    return None


async def compute(
    model_path: Path, model_id: str, max_pixels: int, timeout_s: float
) -> CanarySet | None:
    """Canaries for the model at ``model_path`` (None if they could not be computed)."""
    images = await asyncio.to_thread(candidate_images)
    if not images:
        logger.warning("no canary images found in %s: providers are not checked", SHIPPED_DATASET)
        return None
    pool = ProcessPoolExecutor(max_workers=1, mp_context=worker_context())
    answered = False
    try:
        future = asyncio.get_running_loop().run_in_executor(
            pool, child.classify_batch, str(model_path), model_id, images, 3, max_pixels
        )
        _, answered_by, outcomes = await asyncio.wait_for(future, timeout_s)
        answered = True
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        logger.warning("could not compute the canaries' answers (%s): not checked", reason)
        return None
    finally:
        processes = executor_processes(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        if not answered:  # it may be stuck: do not leave it behind
            for process in processes:
                if process.is_alive():
                    process.kill()
        await asyncio.shield(asyncio.to_thread(_join, processes))
    if answered_by != model_id:
        return None
    canaries = choose(images, list(outcomes), model_id)
    logger.info("%d canary image(s) for model %s", len(canaries.canaries), model_id)
    return canaries if canaries.canaries else None


def _join(processes: list[BaseProcess]) -> None:
    for process in processes:
        process.join(10)
