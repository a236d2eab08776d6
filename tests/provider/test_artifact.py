"""The model artifact: what it records, and every way a bad file is refused on load."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import sklearn
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from provider.artifact import (
    FORMAT_VERSION,
    MAGIC,
    load_model,
    model_id_for,
    read_header,
    save_model,
)
from provider.errors import ModelError
from provider.features import get_extractor
from provider.model import Classifier
from provider.ood import OpenSetScorer
from tests.provider.conftest import LABELS, PER_LABEL, packaged_images


def rewrite_header(
    src: Path, dst: Path, mutate: Callable[[dict], None], *, reseal: bool = True
) -> Path:
    """Copy a model file with its JSON header changed by ``mutate``; the payload is kept.

    With ``reseal`` the model id is recomputed as ``save_model`` would have (a header
    written by other code, not a damaged one), so the check under test is the one reached.
    """
    meta, offset = read_header(src)
    payload = src.read_bytes()[offset:]
    mutate(meta)
    if reseal:
        identity = {k: meta[k] for k in ("labels", "extractor", "classifier", "dataset")}
        meta["model_id"] = model_id_for(meta["payload_sha256"], identity)
    header = json.dumps(meta, sort_keys=True).encode()
    dst.write_bytes(MAGIC + struct.pack(">I", len(header)) + header + payload)
    return dst


def _set(path: list[str], value) -> Callable[[dict], None]:
    def mutate(meta: dict) -> None:
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


# ---------------------------------------------------------------- metadata


def test_metadata_records_everything_the_contract_lists(small_model):
    meta, offset = read_header(small_model.path)
    assert meta["format"] == FORMAT_VERSION
    assert meta["labels"] == list(LABELS)
    cnn = get_extractor("cnn")
    assert meta["extractor"] == {
        "name": "cnn",
        "version": cnn.version,
        "dim": 2984,
        "classifier_dim": 1984,
    }
    assert meta["classifier"] == "lr"
    metrics = small_model.result
    quality = metrics.quality
    assert meta["metrics"] == {
        "cv_accuracy": metrics.accuracy,
        "cv_accuracy_std": metrics.accuracy_std,
        "cv_folds": 3,
        "per_label_recall": metrics.per_label_recall,
        "cv_open_accuracy": quality.accuracy,
        "cv_unknown_rate": quality.unknown_rate,
        "cv_ece": quality.ece,
        "per_label": {label: q.to_json() for label, q in quality.per_label.items()},
    }
    assert meta["calibration"]["method"] == "temperature"
    assert meta["calibration"]["temperature"] > 0
    assert set(metrics.per_label_recall) == set(LABELS)
    assert all(0.0 <= r <= 1.0 for r in metrics.per_label_recall.values())
    assert re.fullmatch(r"[0-9a-f]{16}", meta["dataset"]["fingerprint"])
    assert meta["dataset"]["n_images"] == len(LABELS) * PER_LABEL
    assert meta["dataset"]["per_label"] == dict.fromkeys(LABELS, PER_LABEL)
    assert meta["versions"] == {
        "python": meta["versions"]["python"],
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }
    thresholds = meta["ood"]["thresholds"]
    assert set(thresholds) == set(LABELS) and all(0 < t < 2 for t in thresholds.values())
    assert meta["ood"]["quantile"] == 0.99 and meta["ood"]["semantic_weight"] == 0.5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["created_at"])
    payload = small_model.path.read_bytes()[offset:]
    assert meta["payload_size"] == len(payload)
    assert meta["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    identity = {k: meta[k] for k in ("labels", "extractor", "classifier", "dataset")}
    assert meta["model_id"] == model_id_for(meta["payload_sha256"], identity)
    assert re.fullmatch(r"[0-9a-f]{12}", meta["model_id"])


def test_loaded_artifact_holds_a_fitted_pipeline_with_its_scaler(small_model):
    artifact = load_model(small_model.path)
    assert artifact.model_id == small_model.result.model_id
    assert artifact.labels == LABELS
    assert isinstance(artifact.pipeline, Pipeline)
    scaler = artifact.pipeline.steps[0][1]
    assert isinstance(scaler, StandardScaler) and scaler.mean_.shape == (1984,)
    assert list(artifact.pipeline.classes_) == list(LABELS)
    assert isinstance(artifact.ood, OpenSetScorer)
    assert artifact.ood.bank_.shape == (len(LABELS) * PER_LABEL, 2984)
    assert artifact.ood.bank_.dtype == np.float16
    assert artifact.ood.thresholds_.shape == (len(LABELS),)


def test_model_id_depends_on_payload_and_identity():
    ident = {"labels": ["a", "b"], "classifier": "lr"}
    base = model_id_for("0" * 64, ident)
    assert model_id_for("0" * 64, dict(reversed(ident.items()))) == base  # key order
    assert model_id_for("1" * 64, ident) != base
    assert model_id_for("0" * 64, {**ident, "classifier": "svm"}) != base


def test_save_is_atomic_and_overwrites(tmp_path, small_model):
    artifact = load_model(small_model.path)
    out = tmp_path / "models" / "m.clf"
    out.parent.mkdir()
    out.write_bytes(b"an older model")
    saved = save_model(artifact.pipeline, artifact.ood, {"labels": list(LABELS)}, out)
    assert out.read_bytes().startswith(MAGIC)
    assert [p.name for p in out.parent.iterdir()] == ["m.clf"]  # no temp file left behind
    assert read_header(out)[0]["model_id"] == saved.model_id


# ---------------------------------------------------------------- refusals


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(ModelError, match="No model file at"):
        load_model(tmp_path / "nothing.clf")


@pytest.mark.parametrize(
    "content",
    [b"", b"IMGC", b"a text file, not a model\n" * 10, b"\x80\x05K\x01."],  # the last: a pickle
    ids=["empty", "short", "text", "bare-pickle"],
)
def test_non_model_file_is_refused(tmp_path, content):
    path = tmp_path / "x.clf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="is not a model file of this classifier"):
        load_model(path)


def test_an_image_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="not a model file"):
        load_model(packaged_images("daisy", 0, 1)[0])


def test_a_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="is a directory, not a model file"):
        load_model(tmp_path)


def test_unreadable_model_file_is_not_called_corrupted(tmp_path, small_model, monkeypatch):
    """A permission problem must say so (not "corrupted header"), so the operator can fix it.

    The OS error is injected: these tests may run as root, which reads any file.
    """
    path = tmp_path / "m.clf"
    path.write_bytes(small_model.path.read_bytes())
    real_open = Path.open

    def denied(self: Path, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ModelError, match="No permission to read the model file") as info:
        load_model(path)
    assert "corrupted" not in str(info.value)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_model_gets_the_umask_mode_like_any_file(tmp_path, small_model, umask):
    """mkstemp makes 0600 files; a model another user serves must stay readable by umask."""
    artifact = load_model(small_model.path)
    old = os.umask(umask)
    try:
        save_model(artifact.pipeline, artifact.ood, {"labels": list(LABELS)}, tmp_path / "m.clf")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.clf").stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("keep", [0.5, 0.99, "header"])
def test_truncated_file_is_refused(tmp_path, small_model, keep):
    data = small_model.path.read_bytes()
    _, offset = read_header(small_model.path)
    cut = offset - 10 if keep == "header" else int(len(data) * keep)
    path = tmp_path / "cut.clf"
    path.write_bytes(data[:cut])
    expected = "corrupted header" if keep == "header" else r"truncated or corrupted \(checksum"
    with pytest.raises(ModelError, match=expected):
        load_model(path)


@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_flipped_payload_byte_is_refused(tmp_path, small_model, where):
    data = bytearray(small_model.path.read_bytes())
    _, offset = read_header(small_model.path)
    data[min(offset + int((len(data) - offset) * where), len(data) - 1)] ^= 0x10
    path = tmp_path / "flipped.clf"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"checksum mismatch"):
        load_model(path)


def test_trailing_bytes_are_refused(tmp_path, small_model):
    path = tmp_path / "longer.clf"
    path.write_bytes(small_model.path.read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="checksum"):
        load_model(path)


def test_header_claiming_another_extractor_version_is_refused(tmp_path, small_model):
    path = rewrite_header(
        small_model.path, tmp_path / "m.clf", _set(["extractor", "version"], "lite0-v0")
    )
    with pytest.raises(ModelError, match=r"feature extractor cnn@lite0-v0.*retrain"):
        load_model(path)


def test_header_claiming_an_unknown_extractor_is_refused(tmp_path, small_model):
    path = rewrite_header(small_model.path, tmp_path / "m.clf", _set(["extractor", "name"], "vit"))
    with pytest.raises(ModelError, match="feature extractor vit@"):
        load_model(path)


def test_header_claiming_another_scikit_learn_is_refused(tmp_path, small_model):
    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    other = f"{major}.{minor + 1}.0"
    path = rewrite_header(
        small_model.path, tmp_path / "m.clf", _set(["versions", "scikit-learn"], other)
    )
    with pytest.raises(ModelError, match=rf"scikit-learn {re.escape(other)}, this is"):
        load_model(path)


def test_header_with_another_scikit_learn_patch_release_is_accepted(tmp_path, small_model):
    major, minor = sklearn.__version__.split(".")[:2]
    patch_release = _set(["versions", "scikit-learn"], f"{major}.{minor}.99")
    path = rewrite_header(small_model.path, tmp_path / "m.clf", patch_release)
    assert load_model(path).labels == LABELS


@pytest.mark.parametrize("other", [FORMAT_VERSION - 1, FORMAT_VERSION + 1])
def test_header_of_another_format_is_refused(tmp_path, small_model, other):
    """Format 1 is the previous release's (one `unknown` threshold for all labels)."""
    path = rewrite_header(small_model.path, tmp_path / "m.clf", _set(["format"], other))
    with pytest.raises(ModelError, match=f"model format {other}; retrain the model"):
        load_model(path)


def test_header_whose_labels_disagree_with_the_classifier_is_refused(tmp_path, small_model):
    path = rewrite_header(
        small_model.path, tmp_path / "m.clf", _set(["labels"], list(LABELS[::-1]))
    )
    with pytest.raises(ModelError, match="labels do not match"):
        load_model(path)
    one = rewrite_header(small_model.path, tmp_path / "one.clf", _set(["labels"], ["daisy"]))
    with pytest.raises(ModelError, match="no usable label list"):
        load_model(one)


@pytest.mark.parametrize(
    "mutate",
    [_set(["extractor"], "cnn"), _set(["versions"], "1.9"), _set(["extractor"], None)],
    ids=["extractor-string", "versions-string", "extractor-null"],
)
def test_malformed_header_fields_are_a_model_error(tmp_path, small_model, mutate):
    """A header is untrusted input: wrong JSON types must be a ModelError, not a crash."""
    path = rewrite_header(small_model.path, tmp_path / "m.clf", mutate)
    with pytest.raises(ModelError):
        load_model(path)


def test_header_that_is_not_json_or_not_an_object_is_refused(tmp_path):
    for i, header in enumerate([b"{not json", b"[1, 2]", b"\xff\xfe"]):
        path = tmp_path / f"h{i}.clf"
        path.write_bytes(MAGIC + struct.pack(">I", len(header)) + header)
        with pytest.raises(ModelError, match="corrupted header"):
            load_model(path)
    huge = tmp_path / "huge.clf"
    huge.write_bytes(MAGIC + struct.pack(">I", 1 << 30) + b"{}")
    with pytest.raises(ModelError, match="corrupted header"):
        load_model(huge)


@pytest.mark.parametrize(
    "mutate",
    [_set(["model_id"], "000000000000"), _set(["classifier"], "svm")],
    ids=["model_id", "classifier"],
)
def test_edited_identity_fields_in_the_header_are_refused(tmp_path, small_model, mutate):
    """The header is not covered by the payload checksum, but the model id is derived from
    the payload's sha256 and the identity fields: a header whose id no longer matches was
    altered (or bit-flipped) and must be refused, not served under a false id."""
    path = rewrite_header(small_model.path, tmp_path / "m.clf", mutate, reseal=False)
    with pytest.raises(ModelError):
        load_model(path)


def test_classifier_load_raises_model_error_too(tmp_path):
    with pytest.raises(ModelError, match="No model file"):
        Classifier.load(tmp_path / "none.clf")
    with pytest.raises(ModelError, match="not a model file"):
        Classifier.load(str(packaged_images("daisy", 0, 1)[0]))
