"""The model artifact: one file holding the fitted pipeline, the OOD scorer and metadata.

Layout: ``MAGIC`` (8 bytes), header length (4 bytes, big-endian), the UTF-8 JSON header,
then the pickled payload. The header records the payload's size and sha256, so a
truncated or altered file is refused before anything is unpickled. Only load artifacts you
trust (pickle); the Golem requestor never unpickles anything that comes from a provider.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import struct
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from provider.errors import ModelError
from provider.features import EXTRACTORS

MAGIC = b"IMGCLF\x00\x01"
FORMAT_VERSION = 2  # 2: per-label open-set thresholds (provider.ood.OpenSetScorer)
MAX_HEADER = 1 << 20


@cache
def sklearn_version() -> str:
    """scikit-learn's version, read from its package metadata: the bot checks model headers
    (:func:`check_compatible`) without importing scikit-learn and SciPy (about 70 MB)."""
    return version("scikit-learn")


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
    }


@dataclass(slots=True)
class ModelArtifact:
    pipeline: Any  # fitted sklearn Pipeline with predict_proba
    ood: Any  # fitted provider.ood.OpenSetScorer
    metadata: dict[str, Any]

    @property
    def model_id(self) -> str:
        return str(self.metadata["model_id"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.metadata["labels"])


def model_id_for(payload_sha256: str, identity: dict[str, Any]) -> str:
    """Content-derived id: same payload and identity fields -> same id (12 hex digits)."""
    blob = json.dumps(identity, sort_keys=True).encode() + payload_sha256.encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; restored at once
    os.umask(mask)
    return mask


def save_model(pipeline: Any, ood: Any, metadata: dict[str, Any], path: Path) -> ModelArtifact:
    """Write atomically (temp file + rename); fills in ``model_id`` and payload fields."""
    payload = pickle.dumps({"pipeline": pipeline, "ood": ood}, protocol=5)
    digest = hashlib.sha256(payload).hexdigest()
    identity = {
        k: metadata[k] for k in ("labels", "extractor", "classifier", "dataset") if k in metadata
    }
    meta = dict(metadata)
    meta.update(
        format=FORMAT_VERSION,
        payload_sha256=digest,
        payload_size=len(payload),
        model_id=model_id_for(digest, identity),
        versions=library_versions(),
    )
    header = json.dumps(meta, sort_keys=True).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + struct.pack(">I", len(header)) + header + payload)
            fh.flush()
            # mkstemp creates 0600; give the model the mode a plain open() would (umask).
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ModelArtifact(pipeline, ood, meta)


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Metadata and payload offset, without unpickling. Raises :class:`ModelError`."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            start = fh.read(len(MAGIC) + 4)
            if len(start) < len(MAGIC) + 4 or start[: len(MAGIC)] != MAGIC:
                raise ModelError(f"{path.name} is not a model file of this classifier.")
            (size,) = struct.unpack(">I", start[len(MAGIC) :])
            if size > MAX_HEADER:
                raise ModelError(f"{path.name} has a corrupted header.")
            meta = json.loads(fh.read(size).decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(f"No model file at {path}.") from None
    except IsADirectoryError:
        raise ModelError(f"{path} is a directory, not a model file.") from None
    except PermissionError:
        raise ModelError(f"No permission to read the model file {path}.") from None
    except OSError as exc:
        raise ModelError(f"The model file {path} cannot be read ({exc.strerror or exc}).") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path.name} has a corrupted header ({exc}).") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{path.name} has a corrupted header.")
    return meta, len(MAGIC) + 4 + size


def check_compatible(meta: dict[str, Any], name: str) -> None:
    """Refuse (:class:`ModelError`) a header this version cannot use: another model format,
    a feature extractor version it does not provide, another scikit-learn minor version."""
    if meta.get("format") != FORMAT_VERSION:
        raise ModelError(f"{name} uses model format {meta.get('format')}; retrain the model.")
    ext = meta.get("extractor") or {}
    versions = meta.get("versions") or {}
    if not isinstance(ext, dict) or not isinstance(versions, dict):
        raise ModelError(f"{name} has a corrupted header.")
    current = EXTRACTORS.get(str(ext.get("name")))
    if current is None or current.version != ext.get("version"):
        raise ModelError(
            f"{name} was trained with feature extractor {ext.get('name')}@{ext.get('version')}, "
            "which this version does not provide; retrain the model."
        )
    trained = str(versions.get("scikit-learn", ""))
    if trained.split(".")[:2] != sklearn_version().split(".")[:2]:
        raise ModelError(
            f"{name} was trained with scikit-learn {trained or '?'}, this is "
            f"{sklearn_version()}; retrain the model."
        )
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) < 2:
        raise ModelError(f"{name} has no usable label list.")


def verify_artifact_bytes(data: bytes, name: str) -> dict[str, Any]:
    """Check an artifact held in memory without unpickling it: magic, header, payload size
    and checksum, content-derived model id. Returns its metadata; raises :class:`ModelError`.

    For the requestor, which ships heads to providers but never loads pickles itself.
    """
    start = len(MAGIC) + 4
    if len(data) < start or data[: len(MAGIC)] != MAGIC:
        raise ModelError(f"{name} is not a model file of this classifier.")
    (size,) = struct.unpack(">I", data[len(MAGIC) : start])
    if size > MAX_HEADER or start + size > len(data):
        raise ModelError(f"{name} has a corrupted header.")
    try:
        meta = json.loads(data[start : start + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{name} has a corrupted header ({exc}).") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{name} has a corrupted header.")
    check_compatible(meta, name)
    payload = memoryview(data)[start + size :]
    if len(payload) != meta.get("payload_size") or (
        hashlib.sha256(payload).hexdigest() != meta.get("payload_sha256")
    ):
        raise ModelError(f"{name} is truncated or corrupted (checksum mismatch).")
    identity = {k: meta[k] for k in ("labels", "extractor", "classifier", "dataset") if k in meta}
    if meta.get("model_id") != model_id_for(meta["payload_sha256"], identity):
        raise ModelError(f"{name} has an altered header (model id mismatch).")
    return meta


def load_model(path: Path) -> ModelArtifact:
    """Load and verify an artifact. Raises :class:`ModelError` with a clear message."""
    path = Path(path)
    meta, offset = read_header(path)
    check_compatible(meta, path.name)
    with path.open("rb") as fh:
        fh.seek(offset)
        payload = fh.read()
    if len(payload) != meta.get("payload_size") or (
        hashlib.sha256(payload).hexdigest() != meta.get("payload_sha256")
    ):
        raise ModelError(f"{path.name} is truncated or corrupted (checksum mismatch).")
    identity = {k: meta[k] for k in ("labels", "extractor", "classifier", "dataset") if k in meta}
    if meta.get("model_id") != model_id_for(meta["payload_sha256"], identity):
        raise ModelError(f"{path.name} has an altered header (model id mismatch).")
    try:
        obj = pickle.loads(payload)
        pipeline, ood = obj["pipeline"], obj["ood"]
    except Exception as exc:  # a verified payload that still fails: code/library mismatch
        raise ModelError(f"{path.name} could not be loaded ({type(exc).__name__}).") from exc
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if classes != list(meta["labels"]):
        raise ModelError(f"{path.name}: the classifier's labels do not match its metadata.")
    return ModelArtifact(pipeline, ood, meta)
