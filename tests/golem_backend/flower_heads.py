"""Servers' heads trained from the flowers the package ships (no external data needed)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from golem_backend import ModelRef
from provider.train import default_dataset

FLOWERS = default_dataset()
PER_LABEL = 8


@dataclass(frozen=True)
class Head:
    ref: ModelRef
    labels: tuple[str, ...]


def flower_files(label: str, start: int, count: int) -> list[Path]:
    return sorted((FLOWERS / label).glob("*.jpg"))[start : start + count]


def held_out(label: str, n: int = 2) -> list[bytes]:
    """Photos of ``label`` that no head here is trained on."""
    return [p.read_bytes() for p in flower_files(label, PER_LABEL, n)]


def copy_dataset(dest: Path, labels: tuple[str, ...]) -> Path:
    for label in labels:
        (dest / label).mkdir(parents=True)
        for file in flower_files(label, 0, PER_LABEL):
            shutil.copy(file, dest / label / file.name)
    return dest


def train_head(
    out_dir: Path,
    labels: tuple[str, ...],
    cache: Path,
    folds: int = 3,
    defaults: Path | None = None,
) -> Head:
    """A head on ``labels`` (8 photos each) at ``out_dir/<model_id>.model``; with
    ``defaults``, that dataset beside them, as a server keeping the default labels."""
    from provider.dataset import DatasetItem
    from provider.train import train_model

    examples = [DatasetItem(p, lb) for lb in labels for p in flower_files(lb, 0, PER_LABEL)]
    result = train_model(
        defaults,
        out_dir / "tmp.model",
        examples=examples,
        cache=cache,
        folds=folds,
        shared_base=defaults,
    )
    path = out_dir / f"{result.model_id}.model"
    Path(result.model_path).rename(path)
    return Head(ModelRef(result.model_id, path), tuple(result.labels))
