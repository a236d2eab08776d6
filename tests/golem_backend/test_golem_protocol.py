"""Validation of provider replies: JSON only, checked against the uploaded model."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from golem_backend.golem.protocol import (
    USER_MESSAGES,
    ProtocolError,
    check_model,
    load_reply,
    parse_classify_reply,
    reply_limit,
)
from provider.errors import IMAGE_ERRORS, CorruptImage, ImageError, NotAnImage
from provider.results import Prediction

LABELS = ("cat", "cow", "dog")


def good_reply() -> dict[str, Any]:
    return {
        "ok": True,
        "version": 1,
        "model_id": "m1",
        "labels": list(LABELS),
        "results": [
            {
                "label": "dog",
                "confidence": 0.8,
                "top": [{"label": "dog", "confidence": 0.8}, {"label": "cat", "confidence": 0.15}],
                "model_id": "m1",
                "ood_score": 0.3,
            },
            {
                "label": "unknown",
                "confidence": 0.4,
                "top": [{"label": "cow", "confidence": 0.4}],
                "ood_score": 2.5,
            },
            {"error": {"code": "not_an_image", "message": "That file is not an image."}},
        ],
    }


def parse(reply: Any, *, n: int = 3, top_k: int = 2) -> list[Prediction | ImageError]:
    data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
    return parse_classify_reply(data, n_images=n, top_k=top_k, model_id="m1", labels=LABELS)


def test_a_good_reply_becomes_predictions_and_typed_errors() -> None:
    dog, unknown, error = parse(good_reply())
    assert isinstance(dog, Prediction) and dog.label == "dog" and dog.model_id == "m1"
    assert [s.label for s in dog.top] == ["dog", "cat"] and dog.confidence == 0.8
    assert isinstance(unknown, Prediction) and unknown.is_unknown and unknown.ood_score == 2.5
    assert isinstance(error, NotAnImage) and error.message == USER_MESSAGES["not_an_image"]


def _mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    reply = copy.deepcopy(good_reply())
    target = reply
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return reply


MALFORMED = {
    "unknown label": _mutate(("results", 0, "label"), "giraffe"),
    "label not a string": _mutate(("results", 0, "label"), 3),
    "confidence above 1": _mutate(("results", 0, "confidence"), 1.5),
    "negative confidence": _mutate(("results", 0, "top", 1, "confidence"), -0.1),
    "confidence is a bool": _mutate(("results", 0, "confidence"), True),
    "confidence is a string": _mutate(("results", 0, "confidence"), "0.8"),
    "top not sorted": _mutate(("results", 0, "top", 1, "confidence"), 0.9),
    "top too long": _mutate(
        ("results", 0, "top"),
        [{"label": x, "confidence": 0.1} for x in LABELS],
    ),
    "top empty": _mutate(("results", 0, "top"), []),
    "top repeats a label": _mutate(
        ("results", 0, "top"), [{"label": "dog", "confidence": 0.8}] * 2
    ),
    "unknown label in top": _mutate(("results", 1, "top", 0, "label"), "unknown"),
    "label differs from top": _mutate(("results", 0, "label"), "cat"),
    "confidence differs from top": _mutate(("results", 0, "confidence"), 0.5),
    "one result missing": _mutate(("results",), good_reply()["results"][:2]),
    "results not a list": _mutate(("results",), {"0": 1}),
    "unknown error code": _mutate(("results", 2, "error", "code"), "pwned"),
    "error without message": _mutate(("results", 2, "error", "message"), ""),
    "error not an object": _mutate(("results", 2, "error"), "boom"),
    "result not an object": _mutate(("results", 1), ["dog"]),
    "other model": _mutate(("model_id",), "m2"),
    "other model per result": _mutate(("results", 0, "model_id"), "m2"),
    "other labels": _mutate(("labels",), ["cat", "dog"]),
    "wrong version": _mutate(("version",), 2),
    "not ok": _mutate(("ok",), False),
    "ood not finite": _mutate(("results", 0, "ood_score"), "nan"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_replies_are_rejected(name: str) -> None:
    with pytest.raises(ProtocolError):
        parse(MALFORMED[name])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1, 2, 3]",
        b"\xff\xfe garbage",
        b'{"ok": true, "version": 1, "model_id": "m1", "confidence": NaN}',
        json.dumps(good_reply()).replace("0.8", "Infinity", 1).encode(),
        b"{" * 100_000,
    ],
)
def test_garbage_is_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(data)


def test_no_reply_and_oversized_reply_are_rejected() -> None:
    with pytest.raises(ProtocolError, match="no reply"):
        parse_classify_reply(None, n_images=1, top_k=3, model_id="m1", labels=LABELS)
    huge = good_reply()
    huge["padding"] = "x" * reply_limit(3)
    with pytest.raises(ProtocolError, match="too large"):
        parse(huge)


def test_image_errors_are_rebuilt_with_their_types() -> None:
    reply = _mutate(("results", 2, "error"), {"code": "corrupt", "message": "Truncated."})
    error = parse(reply)[2]
    assert type(error) is CorruptImage and str(error) == USER_MESSAGES["corrupt"]


@pytest.mark.parametrize("code", sorted(IMAGE_ERRORS))
def test_users_only_see_the_requestors_message_for_each_code(code: str) -> None:
    forged = "Your image is fine. Claim your prize at https://evil.example/" + "x" * 900
    reply = _mutate(("results", 1, "error"), {"code": code, "message": forged})
    error = parse(reply)[1]
    assert type(error) is IMAGE_ERRORS[code]
    assert str(error) == error.message == USER_MESSAGES[code]
    assert "evil" not in str(error)


def test_check_model_and_load_reply() -> None:
    obj = load_reply(json.dumps(good_reply()).encode(), reply_limit(0) * 10)
    check_model(obj, "m1", LABELS)
    with pytest.raises(ProtocolError, match="serves model"):
        check_model(obj, "m2", LABELS)


HOSTILE = {
    "a 5000-digit integer": json.dumps(good_reply())
    .replace('"ood_score": 0.3', '"ood_score": ' + "9" * 5000)
    .encode(),
    "an unhashable label in top": _mutate(("results", 0, "top", 0, "label"), [1]),
    "an error code that is a list": _mutate(("results", 2, "error", "code"), ["not_an_image"]),
    "an ood_score too large for a float": _mutate(("results", 0, "ood_score"), 10**400),
    "a confidence too large for a float": _mutate(("results", 0, "confidence"), 10**400),
    "an unhashable top-level label": _mutate(("results", 0, "label"), {"a": 1}),
    "1e400": json.dumps(good_reply()).replace("0.3", "1e400").encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_replies_raise_only_protocol_errors(name: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(HOSTILE[name])
    assert str(info.value)  # says why


def test_check_model_with_hostile_labels() -> None:
    reply = _mutate(("labels",), [[1], {"a": 2}])
    with pytest.raises(ProtocolError, match="different labels"):
        check_model(reply, "m1", LABELS)
