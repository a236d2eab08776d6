"""Shared fixtures: a tiny real dataset and a tiny real model trained from it (once)."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

ANIMALS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "animals4"
TINY_LABELS = ("cat", "cow", "dog")
PER_LABEL = 6


@dataclass(frozen=True)
class TinyModel:
    path: Path
    model_id: str
    labels: tuple[str, ...]
    dataset: Path


def _copy_tiny_dataset(dest: Path, labels: tuple[str, ...], start: int) -> Path:
    if not ANIMALS.is_dir():
        pytest.skip(f"shared dataset {ANIMALS} is not available")
    for label in labels:
        files = sorted((ANIMALS / label).glob("*.jpg"))[start : start + PER_LABEL]
        (dest / label).mkdir(parents=True)
        for file in files:
            shutil.copy(file, dest / label / file.name)
    return dest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cat/cow/dog, 6 photos each, from the shared animals4 set."""
    return _copy_tiny_dataset(tmp_path_factory.mktemp("tiny") / "dataset", TINY_LABELS, 0)


@pytest.fixture(scope="session")
def other_tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different tiny dataset (other photos, 'monkey' instead of 'cow'), for retraining."""
    return _copy_tiny_dataset(
        tmp_path_factory.mktemp("tiny2") / "dataset", ("cat", "dog", "monkey"), 3
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> TinyModel:
    """A real model trained (in this process, once per session) on ``tiny_dataset``."""
    from provider.train import train_model

    out = tmp_path_factory.mktemp("tiny-model") / "tiny.model"
    result = train_model(tiny_dataset, out, folds=3)
    return TinyModel(Path(result.model_path), result.model_id, tuple(result.labels), tiny_dataset)


@pytest.fixture(scope="session")
def sample_images(tiny_dataset: Path) -> list[bytes]:
    """Encoded photos the tiny model has not seen: two per label."""
    return [
        path.read_bytes()
        for label in TINY_LABELS
        for path in sorted((ANIMALS / label).glob("*.jpg"))[PER_LABEL : PER_LABEL + 2]
    ]
