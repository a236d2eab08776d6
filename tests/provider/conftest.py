"""Shared fixtures of the provider tests: small real datasets and models, trained once.

Everything is real: JPEGs copied from the packaged FLOWERS17 copy, the ONNX network,
HDF5 caches and model files on disk. Session-scoped fixtures are shared by many tests, so
tests must not modify them: copy a dataset (``copy_dataset``) or a cache before changing it.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "provider" / "data" / "flowers17"
SHARED = REPO.parent / "shared" / "datasets"
SHARED_FLOWERS = SHARED / "flowers17"
SHARED_ANIMALS = SHARED / "animals4"

# Four labels that look unlike each other, so a model trained on 8 images each is sure.
LABELS = ("bluebell", "daisy", "sunflower", "tigerlily")
PER_LABEL = 8  # training images per label (the first 8 files of each label)
HELD_OUT = 4  # held-out images per label (files 8..11)


def packaged_images(label: str, start: int, stop: int) -> list[Path]:
    """Files ``start:stop`` (sorted by name) of one label of the packaged FLOWERS17 copy."""
    return sorted((PACKAGED / label).glob("*.jpg"))[start:stop]


def make_dataset(
    root: Path, labels: tuple[str, ...] = LABELS, per_label: int = PER_LABEL, start: int = 0
) -> Path:
    """Copy ``per_label`` packaged images of each label into ``root/<label>/``."""
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for src in packaged_images(label, start, start + per_label):
            shutil.copy(src, root / label / src.name)
    return root


def copy_dataset(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def require_shared(path: Path) -> Path:
    """``path`` if it exists; else skip, or fail under CI (CI=true), where it must exist."""
    if path.is_dir():
        return path
    reason = f"shared dataset {path} is not available"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide ../shared/datasets")
    pytest.skip(reason)


@dataclass(frozen=True)
class SmallModel:
    """A real model trained on ``dataset`` (LABELS x PER_LABEL) with a 3-fold CV."""

    path: Path
    dataset: Path
    cache: Path  # HDF5 cache holding the features of every image of ``dataset``
    result: object  # provider.train.TrainResult


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LABELS x PER_LABEL packaged JPEGs (read-only: copy it before changing it)."""
    return make_dataset(tmp_path_factory.mktemp("small") / "dataset")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> SmallModel:
    from provider.train import train_model

    root = tmp_path_factory.mktemp("small-model")
    cache = root / "features.h5"
    result = train_model(small_dataset, root / "small.clf", cache=cache, folds=3)
    return SmallModel(root / "small.clf", small_dataset, cache, result)


@pytest.fixture(scope="session")
def classifier(small_model: SmallModel):
    from provider.model import Classifier

    return Classifier.load(small_model.path)


@pytest.fixture(scope="session")
def held_out() -> list[Path]:
    """HELD_OUT images per label that are not in ``small_dataset``, grouped by label."""
    return [p for lb in LABELS for p in packaged_images(lb, PER_LABEL, PER_LABEL + HELD_OUT)]


@pytest.fixture(scope="session")
def held_out_features(held_out: list[Path]) -> np.ndarray:
    """cnn feature rows of ``held_out`` (N, 2984), extracted once."""
    from provider.features import get_extractor
    from provider.imageio import decode_image

    extractor = get_extractor("cnn")
    images = [decode_image(p, min_side=extractor.decode_min_side) for p in held_out]
    feats, _ = extractor.extract(images)
    return feats


@dataclass(frozen=True)
class SharedFlowersModel:
    path: Path
    labels: tuple[str, ...]
    test_images: list[Path]  # 10 per label, disjoint from the training images


@pytest.fixture(scope="session")
def shared_flowers_model(tmp_path_factory: pytest.TempPathFactory) -> SharedFlowersModel:
    """A model trained on a stratified subset of the full-size shared FLOWERS17:
    5 labels (seeded choice) x 30 images, with 10 other images per label held out."""
    from provider.train import train_model

    source = require_shared(SHARED_FLOWERS)
    rng = random.Random(9)
    labels = tuple(sorted(rng.sample(sorted(p.name for p in source.iterdir() if p.is_dir()), 5)))
    root = tmp_path_factory.mktemp("shared-flowers")
    test_images: list[Path] = []
    for label in labels:
        files = rng.sample(sorted((source / label).glob("*.jpg")), 40)
        (root / "train" / label).mkdir(parents=True)
        for src in files[:30]:
            (root / "train" / label / src.name).symlink_to(src)  # scan follows symlinks
        test_images += files[30:]
    train_model(root / "train", root / "flowers.clf", folds=0)
    return SharedFlowersModel(root / "flowers.clf", labels, test_images)


@pytest.fixture(scope="session")
def shared_features_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One HDF5 feature cache for the tests that train on packaged photos again and again."""
    return tmp_path_factory.mktemp("features") / "features.h5"


DEFAULT_SUBSET_PER_LABEL = 20


@pytest.fixture(scope="session")
def default_labels_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small stand-in for the default labels: 20 packaged photos (files 60-79) of each
    flower but sunflower, tiger lily and pansy (which tests teach under names of their
    own). Dense next to 3-10 taught photos, like the real 80 per label, and quick to fit."""
    root = tmp_path_factory.mktemp("defaults") / "default-labels"
    for flower in sorted(p.name for p in PACKAGED.iterdir() if p.is_dir()):
        if flower in ("sunflower", "tigerlily", "pansy"):
            continue
        (root / flower).mkdir(parents=True)
        for src in packaged_images(flower, 60, 60 + DEFAULT_SUBSET_PER_LABEL):
            (root / flower / src.name).symlink_to(src)
    return root
