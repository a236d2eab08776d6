"""HDF5 feature cache keyed by image content hash and extractor version.

Layout: one group per extractor key (``name@version``) holding ``digests`` (N,) of 64-byte
ASCII sha256 hex strings and ``features`` (N, D) float32, both resizable. A retrain after
adding or removing images extracts only the images whose digest is not in the group.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)


class FeatureCache:
    """Read once on open, append on :meth:`add`. Not shared between concurrent writers."""

    def __init__(self, path: Path | str, key: str, dim: int) -> None:
        self.path = Path(path)
        self.key = key.replace("/", "_")
        self.dim = dim
        self._index: dict[str, np.ndarray] = {}
        self._busy = False
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            with h5py.File(self.path, "r") as f:
                if self.key not in f:
                    return
                group = f[self.key]
                digests = group["digests"][...]
                features = group["features"][...]
            if features.ndim != 2 or features.shape[1] != self.dim or len(digests) != len(features):
                raise ValueError(f"unexpected shapes {digests.shape} {features.shape}")
        except BlockingIOError as exc:  # HDF5 file lock: another process is writing it
            log.warning("feature cache %s is in use (%s); extracting without it", self.path, exc)
            self._busy = True
            return
        except (OSError, ValueError, KeyError) as exc:
            aside = self.path.with_suffix(self.path.suffix + ".corrupt")
            log.warning("feature cache %s is unreadable (%s); moved to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            return
        self._index = {d.decode("ascii"): row for d, row in zip(digests, features, strict=True)}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: str) -> bool:
        return digest in self._index

    def get(self, digest: str) -> np.ndarray | None:
        return self._index.get(digest)

    def add(self, digests: list[str], features: np.ndarray) -> None:
        """Append rows (digests not yet cached) and write them to the file."""
        new = [(d, row) for d, row in zip(digests, features, strict=True) if d not in self._index]
        if not new or self._busy:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = np.stack([row for _, row in new]).astype(np.float32)
        names = np.array([d.encode("ascii") for d, _ in new], dtype="S64")
        with h5py.File(self.path, "a") as f:
            group = f.require_group(self.key)
            if "digests" not in group:
                group.create_dataset("digests", data=names, maxshape=(None,), chunks=True)
                group.create_dataset(
                    "features", data=rows, maxshape=(None, self.dim), chunks=(256, self.dim)
                )
            else:
                n = group["digests"].shape[0]
                group["digests"].resize((n + len(names),))
                group["digests"][n:] = names
                group["features"].resize((n + len(rows), self.dim))
                group["features"][n:] = rows
        self._index.update(new)
