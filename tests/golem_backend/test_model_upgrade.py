"""``model_incompatibility``: what the bot reads from a server's model file, after an
upgrade, to decide that the model must be retrained (the header only, nothing unpickled)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from golem_backend import model_incompatibility
from provider.artifact import MAGIC, save_model
from provider.features import get_extractor

PREVIOUS_CNN = {"name": "cnn", "version": "lite0-ort-ms1-draft256", "dim": 1984}
PREVIOUS_RELEASE_CNN = {"name": "cnn", "version": "lite0-ort-ms1-draft240-bicubic", "dim": 1984}


def artifact(path: Path, extractor: dict[str, object]) -> Path:
    """A real model file (header + pickled payload) trained on ``extractor``'s features."""
    save_model({"fitted": True}, None, {"labels": ["daisy", "rose"], "extractor": extractor}, path)
    return path


def rewrite_header(path: Path, **changes: object) -> None:
    data = path.read_bytes()
    (size,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    meta = json.loads(data[start : start + size])
    meta.update(changes)
    header = json.dumps(meta).encode()
    path.write_bytes(MAGIC + struct.pack(">I", len(header)) + header + data[start + size :])


def test_a_model_of_the_current_features_is_usable(tmp_path: Path):
    ext = get_extractor("cnn")
    current = {"name": ext.name, "version": ext.version, "dim": ext.dim}
    assert model_incompatibility(artifact(tmp_path / "now.model", current)) is None


def test_a_model_of_the_previous_features_must_be_retrained(tmp_path: Path):
    why = model_incompatibility(artifact(tmp_path / "old.model", PREVIOUS_CNN))
    assert why == (
        "old.model was trained with feature extractor cnn@lite0-ort-ms1-draft256, "
        "which this version does not provide; retrain the model."
    )


def test_another_scikit_learn_or_format_must_be_retrained(tmp_path: Path):
    ext = get_extractor("cnn-int8")
    current = {"name": ext.name, "version": ext.version, "dim": ext.dim}
    path = artifact(tmp_path / "sk.model", current)
    rewrite_header(path, versions={"scikit-learn": "0.24.2"})
    why = model_incompatibility(path)
    assert why is not None and "scikit-learn 0.24.2" in why
    rewrite_header(path, format=0)
    assert model_incompatibility(path) == "sk.model uses model format 0; retrain the model."


def test_a_model_of_the_previous_release_must_be_retrained(tmp_path: Path):
    """The previous release wrote format 1 (one `unknown` threshold for all labels) on
    features without the ImageNet part: the bot retrains such a server model once at
    start (issue 18), and loading it is refused cleanly, never unpickled."""
    from provider.artifact import load_model
    from provider.errors import ModelError

    path = artifact(tmp_path / "v1.model", PREVIOUS_RELEASE_CNN)
    rewrite_header(path, format=1)
    why = model_incompatibility(path)
    assert why == "v1.model uses model format 1; retrain the model."
    with pytest.raises(ModelError, match="model format 1; retrain the model"):
        load_model(path)
    rewrite_header(path, format=2)  # the format alone is not enough: the features differ
    assert "cnn@lite0-ort-ms1-draft240-bicubic," in str(model_incompatibility(path))


def test_files_that_are_not_models_are_left_to_classification(tmp_path: Path):
    """Missing, empty, foreign or damaged files are not 'stale': retraining is not their
    remedy, and classifying them already reports them (the default model answers)."""
    (tmp_path / "empty.model").write_bytes(b"")
    (tmp_path / "text.model").write_text("not a model")
    (tmp_path / "dir.model").mkdir()
    (tmp_path / "cut.model").write_bytes(MAGIC + struct.pack(">I", 4000) + b'{"format": 1')
    for name in ("missing.model", "empty.model", "text.model", "dir.model", "cut.model"):
        assert model_incompatibility(tmp_path / name) is None, name
