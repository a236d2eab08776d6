"""HDF5 feature cache keyed by image content hash and extractor version.

Layout: a root attribute ``format`` naming this cache format (files of the first release
lack it and are recognised by their layout), and one group per extractor key
(``name@version``) holding ``digests`` (N,) of 64-byte ASCII sha256 hex strings and
``features`` (N, D) float32, both resizable. A retrain after adding or removing images
extracts only the images whose digest is not in the group.

An append writes the feature rows before their digests, so an interrupted append leaves at
worst feature rows without a digest, which are ignored and overwritten by the next append.
A file that is not a feature cache is never changed: opening it raises
:class:`NotAFeatureCache`.

:func:`evict` removes digests (a forgotten image's features) by writing a new file without
them and replacing the old one, so no freed block of the file keeps them. It records each
evicted digest with its time in the group ``evicted`` (kept :data:`TOMBSTONE_TTL_S`): a
cache opened before the eviction (a training that was running) does not add those digests
back; one opened after may (the image was taught again).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from provider.errors import DatasetError

log = logging.getLogger(__name__)

FORMAT_ATTR = "format"
FORMAT = "imageclassifier-feature-cache"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DATASETS = frozenset({"digests", "features"})
#: the group of evicted digests (``digests`` (N,) S64, ``at`` (N,) float64 Unix times)
TOMBSTONES = "evicted"
#: how long an eviction is remembered: longer than any training runs
TOMBSTONE_TTL_S = 7 * 24 * 3600.0


class NotAFeatureCache(DatasetError):
    """The cache path names something else (a folder, a text file, another HDF5 file)."""

    code = "not_a_feature_cache"

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"{path} is not a feature cache ({why}); it was left unchanged. "
            "Use a new file name or a feature cache written by an earlier run."
        )


class FeatureCache:
    """Read once on open, append on :meth:`add`. Not shared between concurrent writers.

    Raises :class:`NotAFeatureCache` if ``path`` exists and is not a feature cache.
    """

    def __init__(self, path: Path | str, key: str, dim: int) -> None:
        self.path = Path(path)
        self.key = key.replace("/", "_")
        self.dim = dim
        self._index: dict[str, np.ndarray] = {}
        self._busy = False
        self._loaded_at = time.time()  # digests evicted after this are not added back
        self._load()

    def _load(self) -> None:
        if not self.path.exists() or _is_empty_file(self.path):
            return
        _require_hdf5(self.path)
        try:
            with h5py.File(self.path, "r") as f:
                if not _writable(f):
                    raise NotAFeatureCache(self.path, "an HDF5 file of another program")
                if self.key not in f:
                    return
                digests, features = _read_rows(f[self.key], self.dim)
        except BlockingIOError as exc:  # HDF5 file lock: another process is writing it
            log.warning("feature cache %s is in use (%s); extracting without it", self.path, exc)
            self._busy = True
            return
        except (OSError, ValueError, KeyError) as exc:  # our file, or HDF5 that cannot be opened
            aside = self.path.with_suffix(self.path.suffix + ".corrupt")
            log.warning("feature cache %s is unreadable (%s); moved to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            return
        self._index = {
            d.decode("ascii"): row for d, row in zip(digests, features, strict=True) if d
        }

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
        mode = "w" if _is_empty_file(self.path) else "a"
        with h5py.File(self.path, mode) as f:
            if not _writable(f):
                raise NotAFeatureCache(self.path, "an HDF5 file of another program")
            evicted = _tombstones(f)
            fresh = [i for i, (d, _) in enumerate(new) if evicted.get(d, -1.0) < self._loaded_at]
            if len(fresh) < len(new):
                log.info("not caching %d image(s) forgotten meanwhile", len(new) - len(fresh))
            if not fresh:
                return
            if FORMAT_ATTR not in f.attrs:  # a new file, or one of the first release
                f.attrs[FORMAT_ATTR] = FORMAT
            _append(f.require_group(self.key), names[fresh], rows[fresh], self.dim)
        self._index.update(new[i] for i in fresh)


def evict(path: Path | str, digests: Iterable[str], *, now: float | None = None) -> int:
    """Remove ``digests`` from every extractor's group of the cache at ``path`` (a new file
    replaces the old one) and remember them as evicted; the number of rows removed. A
    missing cache is created holding only the tombstones (a training may create it later).
    Raises :class:`NotAFeatureCache`, and ``OSError`` (``BlockingIOError``: another process
    is writing it; try again)."""
    path = Path(path)
    gone = {d.encode("ascii") for d in digests}
    now = time.time() if now is None else now
    tmp = path.with_name(f".{path.name}.evicting-{os.getpid()}")
    removed = 0
    try:
        with h5py.File(tmp, "w") as out:
            out.attrs[FORMAT_ATTR] = FORMAT
            evicted: dict[str, float] = {}
            if path.exists() and not _is_empty_file(path):
                _require_hdf5(path)
                with h5py.File(path, "r") as f:
                    if not _writable(f):
                        raise NotAFeatureCache(path, "an HDF5 file of another program")
                    evicted = _tombstones(f)
                    for name in f:
                        if name != TOMBSTONES:
                            removed += _copy_without(f[name], out, name, gone)
            evicted.update((d.decode("ascii"), now) for d in gone)
            kept = sorted(d for d, at in evicted.items() if now - at <= TOMBSTONE_TTL_S)
            group = out.create_group(TOMBSTONES)
            group.create_dataset("digests", data=np.array([d.encode() for d in kept], "S64"))
            group.create_dataset("at", data=np.array([evicted[d] for d in kept], np.float64))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return removed


def _copy_without(group: h5py.Group, out: h5py.File, name: str, gone: set[bytes]) -> int:
    """Copy one extractor's rows except ``gone``; how many were left out."""
    if "digests" not in group or "features" not in group:  # nothing committed yet
        return 0
    dim = int(group["features"].shape[1])
    digests, features = _read_rows(group, dim)
    keep = np.array([d not in gone for d in digests], dtype=bool)
    target = out.create_group(name)
    target.create_dataset("features", data=features[keep], maxshape=(None, dim), chunks=(256, dim))
    target.create_dataset("digests", data=digests[keep], maxshape=(None,), chunks=(1024,))
    return int((~keep).sum())


def _tombstones(f: h5py.File) -> dict[str, float]:
    group = f.get(TOMBSTONES)
    if not isinstance(group, h5py.Group) or "digests" not in group or "at" not in group:
        return {}
    digests, at = group["digests"][...], group["at"][...]
    return {d.decode("ascii"): float(t) for d, t in zip(digests, at, strict=False)}


def _is_empty_file(path: Path) -> bool:
    """A zero-byte regular file (e.g. made by ``mktemp``) holds nothing to lose."""
    return path.is_file() and path.stat().st_size == 0


def _require_hdf5(path: Path) -> None:
    """Raise :class:`NotAFeatureCache` unless ``path`` is a file carrying the HDF5 signature."""
    if path.is_dir():
        raise NotAFeatureCache(path, "it is a folder")
    if not path.is_file():
        raise NotAFeatureCache(path, "not a regular file")
    try:
        if not _has_hdf5_signature(path):
            raise NotAFeatureCache(path, "not an HDF5 file")
    except OSError as exc:
        raise NotAFeatureCache(path, f"cannot be read: {exc.strerror or exc}") from exc


def _has_hdf5_signature(path: Path) -> bool:
    """HDF5 puts its signature at offset 0, or 512, 1024, 2048, ... after a user block."""
    size = path.stat().st_size
    offset = 0
    with path.open("rb") as fh:
        while offset + len(HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = max(512, offset * 2)
    return False


def _writable(f: h5py.File) -> bool:
    """Ours (marked, or a first-release cache) or a new, empty HDF5 file."""
    marker = f.attrs.get(FORMAT_ATTR)
    if marker is not None:
        text = marker.decode("utf-8", "replace") if isinstance(marker, bytes) else str(marker)
        return text == FORMAT
    if len(f.attrs):
        return False
    return all(
        isinstance(f.get(name, getlink=True), h5py.HardLink) and _is_legacy_group(name, f[name])
        for name in f
    )


def _is_legacy_group(name: str, group: object) -> bool:
    """A ``name@version`` group holding only our ``digests`` (N,) S and ``features`` (N, D)."""
    if "@" not in name or not isinstance(group, h5py.Group) or not set(group) <= _DATASETS:
        return False
    digests, features = group.get("digests"), group.get("features")
    if digests is not None and not (
        isinstance(digests, h5py.Dataset) and digests.ndim == 1 and digests.dtype.kind == "S"
    ):
        return False
    return features is None or (
        isinstance(features, h5py.Dataset) and features.ndim == 2 and features.dtype == np.float32
    )


def _read_rows(group: h5py.Group, dim: int) -> tuple[np.ndarray, np.ndarray]:
    if "digests" not in group:  # an interrupted first append: nothing was committed
        return np.zeros((0,), "S64"), np.zeros((0, dim), np.float32)
    digests = group["digests"][...]
    features = group["features"][...]
    if features.ndim != 2 or features.shape[1] != dim or len(digests) > len(features):
        raise ValueError(f"unexpected shapes {digests.shape} {features.shape}")
    return digests, features[: len(digests)]


def _append(group: h5py.Group, names: np.ndarray, rows: np.ndarray, dim: int) -> None:
    """Features first, then digests: a digest is written only once its row is."""
    if "digests" not in group:
        if "features" in group:  # left by an interrupted first append
            del group["features"]
        group.create_dataset("features", data=rows, maxshape=(None, dim), chunks=(256, dim))
        group.create_dataset("digests", data=names, maxshape=(None,), chunks=True)
        return
    n = group["digests"].shape[0]  # feature rows past n have no digest: overwrite them
    group["features"].resize((n + len(rows), dim))
    group["features"][n:] = rows
    group["digests"].resize((n + len(names),))
    group["digests"][n:] = names
