"""Validation of what providers send back. Replies are JSON, never pickles, and never trusted.

A provider is an untrusted machine: every reply of :mod:`provider.serve` is parsed with a size
limit, checked against the model the requestor uploaded (its id and labels), and turned into
the same :class:`~provider.results.Prediction` / :class:`~provider.errors.ImageError` objects
the local backend returns. Anything unexpected raises :class:`ProtocolError`, which fails the
whole batch so it is retried on another instance; nothing here can crash the bot.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from provider.errors import IMAGE_ERRORS, ImageError
from provider.results import UNKNOWN, LabelScore, Prediction

PROTOCOL_VERSION = 1  # must match provider.serve.PROTOCOL_VERSION
MAX_MESSAGE_CHARS = 1000

#: What a user is told for each error code a provider may report. A provider's own text
#: (up to MAX_MESSAGE_CHARS, links included) is never shown: it is untrusted. The same
#: wording as the local decoder's (``provider.imageio``), which the bot must not import.
USER_MESSAGES: dict[str, str] = {
    "empty": "That file is empty.",
    "not_an_image": "That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).",
    "unreadable": "That file could not be read.",
    "corrupt": "That image is damaged or incomplete.",
    "too_large": "That image is too large (it has too many pixels).",
    "too_complex": "That image is too complex to decode.",
    "image_error": "That image could not be classified.",
}
#: A batch refused by the daemon: the requestor's words, never the provider's reason.
REFUSED_MESSAGE = "The classifier on the Golem provider could not process this request."
_CONFIDENCE_TOLERANCE = 1e-5  # the provider rounds confidences to 6 decimals


class ProtocolError(Exception):
    """A provider reply that breaks the protocol (malformed, oversized, wrong model, ...)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _only_protocol_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Any other exception a hostile reply provokes (``TypeError`` for an unhashable label,
    ``OverflowError`` for a huge integer, ...) becomes a :class:`ProtocolError` too."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except ProtocolError:
            raise
        except Exception as exc:
            detail = " ".join(str(exc).split())[:120] or "no detail"
            raise ProtocolError(f"malformed reply ({type(exc).__name__}: {detail})") from exc

    return wrapper


def reply_limit(n_images: int) -> int:
    """Largest reply (bytes) accepted for a batch of ``n_images``."""
    return 16 * 1024 + 8 * 1024 * max(1, n_images)


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-finite number {name} in reply")


@_only_protocol_errors
def load_reply(data: bytes | None, limit: int) -> dict[str, Any]:
    """Parse one JSON object of at most ``limit`` bytes (NaN/Infinity rejected)."""
    if data is None:
        raise ProtocolError("the provider sent no reply")
    if len(data) >= limit:
        raise ProtocolError(f"reply too large (>= {limit} bytes)")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: huge ints too
        raise ProtocolError(f"reply is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("reply is not a JSON object")
    if obj.get("ok") is not True:
        raise ProtocolError(f"provider reported an error: {_short(obj.get('error'))}")
    if obj.get("version") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {_short(obj.get('version'))}")
    return obj


@_only_protocol_errors
def check_model(obj: dict[str, Any], model_id: str, labels: Sequence[str]) -> None:
    """The reply must come from the model we uploaded."""
    if obj.get("model_id") != model_id:
        raise ProtocolError(
            f"provider serves model {_short(obj.get('model_id'))}, expected {model_id}"
        )
    got = obj.get("labels")
    if not isinstance(got, list) or sorted(map(str, got)) != sorted(labels):
        raise ProtocolError("provider's model has different labels than the uploaded one")


@_only_protocol_errors
def parse_classify_reply(
    data: bytes | None,
    *,
    n_images: int,
    top_k: int,
    model_id: str,
    labels: Sequence[str],
    heads: Sequence[tuple[str, Sequence[str]] | None] | None = None,
) -> list[Prediction | ImageError]:
    """Validate a classification reply and rebuild one outcome per image, in order.

    ``heads``: per image, the (model id, labels) of the server's head that must answer it,
    or None for the uploaded model (``model_id``, ``labels``): each prediction is checked
    against its own head's id and labels.
    """
    obj = load_reply(data, reply_limit(n_images))
    check_model(obj, model_id, labels)
    results = obj.get("results")
    if not isinstance(results, list) or len(results) != n_images:
        raise ProtocolError(
            f"expected {n_images} results, got "
            f"{len(results) if isinstance(results, list) else type(results).__name__}"
        )
    default = (model_id, frozenset(labels))
    expected = [
        (head[0], frozenset(head[1])) if head is not None else default
        for head in (heads if heads is not None else [None] * n_images)
    ]
    if len(expected) != n_images:
        raise ValueError(f"{len(expected)} heads for {n_images} images")
    return [
        _outcome(item, i, top_k, *expected[i], strict_id=expected[i] is not default)
        for i, item in enumerate(results)
    ]


def _outcome(
    item: Any, index: int, top_k: int, model_id: str, known: frozenset[str], *, strict_id: bool
) -> Prediction | ImageError:
    where = f"result {index}"
    if not isinstance(item, dict):
        raise ProtocolError(f"{where} is not an object")
    if "error" in item:
        return _image_error(item["error"], where)

    label = item.get("label")
    if not isinstance(label, str) or (label not in known and label != UNKNOWN):
        raise ProtocolError(f"{where}: unknown label {_short(label)}")
    confidence = _probability(item.get("confidence"), f"{where} confidence")
    # A server's head must name itself; the uploaded model may leave its id implicit.
    if item.get("model_id", None if strict_id else model_id) != model_id:
        raise ProtocolError(f"{where}: answered by another model")
    ood = item.get("ood_score", 0.0)
    if not _is_number(ood) or not math.isfinite(ood):
        raise ProtocolError(f"{where}: invalid ood_score")

    top_raw = item.get("top")
    if not isinstance(top_raw, list) or not 1 <= len(top_raw) <= top_k:
        raise ProtocolError(f"{where}: top must list 1..{top_k} labels")
    top: list[LabelScore] = []
    for j, entry in enumerate(top_raw):
        if not isinstance(entry, dict) or entry.get("label") not in known:
            raise ProtocolError(f"{where}: top[{j}] has an unknown label")
        score = _probability(entry.get("confidence"), f"{where} top[{j}] confidence")
        if top and score > top[-1].confidence:
            raise ProtocolError(f"{where}: top is not sorted best first")
        top.append(LabelScore(entry["label"], float(score)))
    if len({s.label for s in top}) != len(top):
        raise ProtocolError(f"{where}: top repeats a label")
    if label != UNKNOWN and label != top[0].label:
        raise ProtocolError(f"{where}: label is not the best label of top")
    if abs(confidence - top[0].confidence) > _CONFIDENCE_TOLERANCE:
        raise ProtocolError(f"{where}: confidence differs from the best label's")
    return Prediction(
        label=label,
        confidence=float(confidence),
        top=tuple(top),
        model_id=model_id,
        ood_score=float(ood),
    )


def _image_error(obj: Any, where: str) -> ImageError:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where}: error is not an object")
    code, message = obj.get("code"), obj.get("message")
    if code not in IMAGE_ERRORS:
        raise ProtocolError(f"{where}: unknown error code {_short(code)}")
    if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"{where}: invalid error message")
    return user_image_error(code)


def user_image_error(code: str) -> ImageError:
    """The typed error for ``code`` with the requestor's own message (see USER_MESSAGES)."""
    cls = IMAGE_ERRORS.get(code, ImageError)
    return cls(USER_MESSAGES.get(cls.code, USER_MESSAGES["image_error"]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _probability(value: Any, what: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ProtocolError(f"{what} is not a probability: {_short(value)}")
    return float(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
