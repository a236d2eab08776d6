"""Plain, immutable views of database rows that the rest of the bot works with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class TaughtRecord:
    label: str
    sha256: str
    user_id: int
    user_name: str
    added_at: dt.datetime
    path: Path
    size_bytes: int
    author_id: int | None = None  # who posted the image, if not ``user_id`` (or unknown)
    missing_since: dt.datetime | None = None  # its file was missing at a start


@dataclass(frozen=True, slots=True)
class ModelRecord:
    model_id: str
    path: Path
    labels: tuple[str, ...]
    metrics: dict[str, Any]
    created_at: dt.datetime
    is_current: bool


@dataclass(frozen=True, slots=True)
class GuildSettings:
    include_default: bool = True
    trainer_role_id: int | None = None


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """An answered image that feedback buttons refer to; ``image`` is ``None`` once the
    image is no longer kept."""

    answer_id: int
    channel_id: int
    user_id: int
    model_id: str
    label: str
    confidence: float
    sha256: str
    image: Path | None
    created_at: dt.datetime
    author_id: int | None = None  # the answered message's author (None: unknown)


@dataclass(frozen=True, slots=True)
class Tally:
    right: int
    wrong: int
    replaced: bool = False  # this member had voted before: the new vote replaced it


@dataclass(frozen=True, slots=True)
class ReviewItem:
    item_id: int
    answer_id: int | None
    sha256: str
    image: Path
    model_label: str
    model_confidence: float
    proposed_label: str
    user_id: int
    user_name: str
    created_at: dt.datetime
    author_id: int | None = None  # who posted the image (None: unknown)
    channel_id: int | None = None  # where it was answered (None: an item from before 0004)


@dataclass(frozen=True, slots=True)
class RetrainRecord:
    started_at: dt.datetime
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class Forgotten:
    images: int = 0
    models: int = 0
    files: int = 0
    reviews: int = 0  # review-queue items


class RuleAction(StrEnum):
    """What a label rule does to a message in a watched channel."""

    REPLY = "reply"
    REACT = "react"
    LOG = "log"
    DELETE = "delete"
    NOTHING = "nothing"


#: A rule's label that matches any label (the catch-all).
ANY_LABEL = "*"


@dataclass(frozen=True, slots=True)
class LabelRule:
    label: str  # a label, ``unknown``, or :data:`ANY_LABEL`
    action: RuleAction
    threshold: float  # confidence in [0, 1]
    emoji: str | None = None  # for ``react``
    log_channel_id: int | None = None  # for ``log``
    created_by: int = 0


@dataclass(frozen=True, slots=True)
class ServerOptions:
    low_confidence: float | None = None  # None: the global LOW_CONFIDENCE
    auto_retrain_after: int = 0  # 0: off
    taught_since_retrain: int = 0
