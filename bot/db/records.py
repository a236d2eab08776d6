"""Plain, immutable views of database rows that the rest of the bot works with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
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
