"""Dataset scanning, content digests, the HDF5 feature cache and batched extraction."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from provider.cache import FORMAT, FORMAT_ATTR, FeatureCache, NotAFeatureCache
from provider.dataset import (
    MAX_LABEL_LENGTH,
    MIN_IMAGES_PER_LABEL,
    DatasetItem,
    dataset_fingerprint,
    file_digest,
    scan_dataset,
)
from provider.errors import DatasetError
from provider.extraction import extract_items
from provider.features import get_extractor
from tests.provider.conftest import make_dataset, packaged_images

KEY = "cnn@test"  # any extractor key works for synthetic rows


def _jpeg() -> bytes:
    return packaged_images("daisy", 0, 1)[0].read_bytes()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _label_dir(root: Path, label: str, n: int, suffix: str = ".jpg") -> Path:
    for i in range(n):
        _write(root / label / f"img{i:02d}{suffix}", _jpeg())
    return root / label


# ---------------------------------------------------------------- scan_dataset


def test_scan_lists_folder_per_label_sorted(tmp_path):
    make_dataset(tmp_path, ("sunflower", "daisy"), per_label=5)
    scan = scan_dataset(tmp_path)
    assert scan.root == tmp_path
    assert scan.labels == ("daisy", "sunflower")
    assert scan.counts() == {"daisy": 5, "sunflower": 5}
    assert [(i.label, i.path.name) for i in scan.items] == sorted(
        (i.label, i.path.name) for i in scan.items
    )
    assert all(isinstance(i, DatasetItem) and i.path.parent.name == i.label for i in scan.items)
    assert scan.warnings == [] and scan.ignored == []


def test_scan_accepts_every_image_suffix_in_any_case(tmp_path):
    suffixes = [".jpg", ".JPEG", ".png", ".webp", ".bmp", ".tif", ".TIFF", ".gif"]
    for i, suffix in enumerate(suffixes):
        _write(tmp_path / "a" / f"x{i}{suffix}", b"anything")
    _label_dir(tmp_path, "b", 5)
    assert scan_dataset(tmp_path).counts()["a"] == len(suffixes)


def test_scan_skips_hidden_entries_and_ignores_non_images(tmp_path):
    _label_dir(tmp_path, "daisy", 5)
    _label_dir(tmp_path, "tulip", 5)
    _write(tmp_path / "daisy" / ".DS_Store", b"junk")
    _write(tmp_path / "daisy" / "._img00.jpg", _jpeg())  # macOS resource fork
    _label_dir(tmp_path, ".git", 6)  # hidden folder: not a label
    _write(tmp_path / "daisy" / "notes.txt", b"hello")
    _write(tmp_path / "tulip" / "labels.csv", b"a,b")
    _write(tmp_path / "README.md", b"# not a label")  # a file beside the label folders
    (tmp_path / "daisy" / "sub.jpg").mkdir()  # a folder named like an image
    scan = scan_dataset(tmp_path)
    assert scan.labels == ("daisy", "tulip")
    assert scan.counts() == {"daisy": 5, "tulip": 5}
    assert sorted(scan.ignored) == ["daisy/notes.txt", "tulip/labels.csv"]
    assert not any(i.path.name.startswith(".") for i in scan.items)


def _deny_listing(monkeypatch, denied: Path) -> None:
    """PermissionError when listing ``denied``. Injected: the tests may run as root."""
    real = Path.iterdir

    def iterdir(self: Path):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_unreadable_label_folder_is_skipped_with_a_warning(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "ds", ("bluebell", "daisy", "sunflower"), per_label=5)
    _deny_listing(monkeypatch, ds / "daisy")
    scan = scan_dataset(ds)
    assert scan.labels == ("bluebell", "sunflower")
    assert "skipped folder 'daisy': it cannot be read (Permission denied)" in scan.warnings


def test_unreadable_dataset_folder_is_a_dataset_error(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "ds", ("bluebell", "daisy"), per_label=5)
    _deny_listing(monkeypatch, ds)
    with pytest.raises(DatasetError, match=r"cannot be read \(Permission denied\)"):
        scan_dataset(ds)


def test_label_with_too_few_images_is_kept_with_a_warning(tmp_path):
    _label_dir(tmp_path, "daisy", MIN_IMAGES_PER_LABEL)
    _label_dir(tmp_path, "rare", 2)
    scan = scan_dataset(tmp_path)
    assert scan.labels == ("daisy", "rare")
    assert len(scan.warnings) == 1
    assert "'rare'" in scan.warnings[0] and "only 2 images" in scan.warnings[0]


def test_label_folder_without_images_is_left_out_with_a_warning(tmp_path):
    _label_dir(tmp_path, "daisy", 5)
    _label_dir(tmp_path, "tulip", 5)
    _write(tmp_path / "empty" / "readme.txt", b"x")
    scan = scan_dataset(tmp_path)
    assert scan.labels == ("daisy", "tulip")
    assert any("'empty'" in w and "no images" in w for w in scan.warnings)


def test_fewer_than_two_labels_is_a_dataset_error(tmp_path):
    _label_dir(tmp_path, "daisy", 10)
    with pytest.raises(DatasetError, match="at least two label folders with images; found 1"):
        scan_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="found 0"):
        scan_dataset(empty)


def test_missing_folder_or_a_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist or is not a folder"):
        scan_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="does not exist or is not a folder"):
        scan_dataset(_write(tmp_path / "file.jpg", _jpeg()))


def test_symlinked_files_and_label_folders_are_followed(tmp_path):
    store = _label_dir(tmp_path / "store", "pool", 6)
    root = tmp_path / "dataset"
    (root / "daisy").mkdir(parents=True)
    for f in sorted(store.iterdir())[:5]:
        (root / "daisy" / f.name).symlink_to(f)
    (root / "daisy" / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")  # broken: skipped
    (root / "pool").symlink_to(store, target_is_directory=True)
    scan = scan_dataset(root)
    assert scan.counts() == {"daisy": 5, "pool": 6}
    assert file_digest(scan.items[0].path) == hashlib.sha256(_jpeg()).hexdigest()


@pytest.mark.parametrize(
    "bad",
    ["x" * (MAX_LABEL_LENGTH + 1), "bell\x07ring", "tab\tbed", "new\nline", "esc\x1b[31mred"],
    ids=["too-long", "bell", "tab", "newline", "ansi-escape"],
)
def test_hostile_label_names_are_skipped_with_a_warning(tmp_path, bad):
    _label_dir(tmp_path, "daisy", 5)
    _label_dir(tmp_path, "tulip", 5)
    _label_dir(tmp_path, bad, 5)
    scan = scan_dataset(tmp_path)
    assert scan.labels == ("daisy", "tulip")
    assert len(scan.warnings) == 1 and "not a usable label name" in scan.warnings[0]
    assert len(scan.warnings[0]) < MAX_LABEL_LENGTH + 80  # the name is shortened, repr'd
    assert "\x1b" not in scan.warnings[0] and "\n" not in scan.warnings[0]


def test_unicode_and_spaces_in_label_names_are_fine(tmp_path):
    _label_dir(tmp_path, "lily of the valley", 5)
    _label_dir(tmp_path, "löwenzahn", 5)
    assert scan_dataset(tmp_path).labels == ("lily of the valley", "löwenzahn")


# ---------------------------------------------------------------- digests and fingerprints


def test_file_digest_is_sha256_of_the_bytes(tmp_path):
    data = os.urandom(3 * (1 << 20) + 7)  # spans several read chunks
    path = _write(tmp_path / "blob.bin", data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()


def test_dataset_fingerprint_is_order_independent_and_label_sensitive():
    digests, labels = ["a" * 64, "b" * 64, "c" * 64], ["x", "y", "y"]
    fp = dataset_fingerprint(digests, labels)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert dataset_fingerprint(digests[::-1], labels[::-1]) == fp
    assert dataset_fingerprint(digests, ["x", "x", "y"]) != fp  # one image relabelled
    assert dataset_fingerprint(digests[:2], labels[:2]) != fp  # one image removed


# ---------------------------------------------------------------- FeatureCache


def _rows(n: int, dim: int = 8, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    digests = [hashlib.sha256(f"{seed}-{i}".encode()).hexdigest() for i in range(n)]
    return digests, rng.normal(size=(n, dim)).astype(np.float32)


def test_cache_round_trips_through_a_real_hdf5_file(tmp_path):
    path = tmp_path / "sub" / "cache.h5"
    digests, feats = _rows(5)
    cache = FeatureCache(path, KEY, 8)
    assert len(cache) == 0 and not path.exists()
    cache.add(digests, feats)
    assert len(cache) == 5 and digests[0] in cache
    reopened = FeatureCache(path, KEY, 8)
    assert len(reopened) == 5
    for d, row in zip(digests, feats, strict=True):
        np.testing.assert_array_equal(reopened.get(d), row)
    assert reopened.get("f" * 64) is None
    with h5py.File(path, "r") as f:
        assert f[KEY]["features"].shape == (5, 8)
        assert f[KEY]["features"].dtype == np.float32


def test_cache_appends_only_new_digests(tmp_path):
    path = tmp_path / "cache.h5"
    digests, feats = _rows(6)
    FeatureCache(path, KEY, 8).add(digests[:4], feats[:4])
    cache = FeatureCache(path, KEY, 8)
    cache.add(digests[2:], feats[2:])  # 2 already cached, 2 new
    cache.add(digests[:1], feats[:1])  # nothing new: the file is not touched
    with h5py.File(path, "r") as f:
        assert f[KEY]["digests"].shape == (6,)
        assert sorted(d.decode() for d in f[KEY]["digests"][...]) == sorted(digests)
    assert len(FeatureCache(path, KEY, 8)) == 6


def test_cache_keeps_extractors_apart(tmp_path):
    path = tmp_path / "cache.h5"
    digests, feats = _rows(3)
    FeatureCache(path, "cnn@v1", 8).add(digests, feats)
    FeatureCache(path, "global@v1/x", 4).add(digests, feats[:, :4])  # '/' is not a subgroup
    assert len(FeatureCache(path, "cnn@v1", 8)) == 3
    assert len(FeatureCache(path, "cnn@v2", 8)) == 0  # another version: nothing cached
    np.testing.assert_array_equal(
        FeatureCache(path, "global@v1/x", 4).get(digests[1]), feats[1, :4]
    )


def _foreign_h5(path: Path) -> bytes:
    """An HDF5 file of some other program."""
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = "someone else"
        f.create_dataset("images", data=np.arange(12, dtype=np.uint8).reshape(3, 4))
    return path.read_bytes()


def test_cache_file_carries_the_format_marker(tmp_path):
    path = tmp_path / "cache.h5"
    FeatureCache(path, KEY, 8).add(*_rows(2))
    with h5py.File(path, "r") as f:
        assert f.attrs[FORMAT_ATTR] == FORMAT


@pytest.mark.parametrize(
    ("name", "data"),
    [("notes.txt", b"my precious notes\n" * 10), ("model.clf", b"ICLF\x00" + os.urandom(300))],
)
def test_a_file_that_is_not_hdf5_is_refused_and_left_unchanged(tmp_path, name, data):
    path = _write(tmp_path / name, data)
    with pytest.raises(NotAFeatureCache, match="is not a feature cache") as info:
        FeatureCache(path, KEY, 8)
    assert str(path) in str(info.value) and "not an HDF5 file" in str(info.value)
    assert isinstance(info.value, DatasetError)  # the CLI reports it (exit 4), no traceback
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing moved aside


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "cache.h5").mkdir()
    with pytest.raises(NotAFeatureCache, match="it is a folder"):
        FeatureCache(tmp_path / "cache.h5", KEY, 8)
    assert (tmp_path / "cache.h5").is_dir()


@pytest.mark.parametrize("marker", [None, "another-format"])
def test_a_foreign_hdf5_file_is_refused_and_left_unchanged(tmp_path, marker):
    path = tmp_path / "data.h5"
    _foreign_h5(path)
    if marker:
        with h5py.File(path, "a") as f:
            f.attrs[FORMAT_ATTR] = marker
    before = path.read_bytes()
    with pytest.raises(NotAFeatureCache, match="an HDF5 file of another program"):
        FeatureCache(path, KEY, 8)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]


def test_a_foreign_file_that_appears_before_writing_is_not_written_into(tmp_path):
    path = tmp_path / "cache.h5"
    cache = FeatureCache(path, KEY, 8)  # nothing there yet
    before = _foreign_h5(path)
    with pytest.raises(NotAFeatureCache):
        cache.add(*_rows(2))
    assert path.read_bytes() == before


def test_a_cache_of_the_first_release_is_recognised_and_marked(tmp_path):
    """No marker, but the layout the first release wrote: one ``name@version`` group."""
    path = tmp_path / "old.h5"
    digests, feats = _rows(3)
    with h5py.File(path, "w") as f:
        group = f.create_group(KEY)
        names = np.array([d.encode() for d in digests], dtype="S64")
        group.create_dataset("digests", data=names, maxshape=(None,), chunks=True)
        group.create_dataset("features", data=feats, maxshape=(None, 8), chunks=(256, 8))
    cache = FeatureCache(path, KEY, 8)
    assert len(cache) == 3
    np.testing.assert_array_equal(cache.get(digests[2]), feats[2])
    cache.add(*_rows(2, seed=1))
    reopened = FeatureCache(path, KEY, 8)
    assert len(reopened) == 5
    with h5py.File(path, "r") as f:
        assert f.attrs[FORMAT_ATTR] == FORMAT


def test_an_empty_file_is_used_as_a_new_cache(tmp_path):
    path = _write(tmp_path / "tmp.h5", b"")  # e.g. made by mktemp
    cache = FeatureCache(path, KEY, 8)
    cache.add(*_rows(2))
    assert len(FeatureCache(path, KEY, 8)) == 2


def test_a_truncated_cache_of_ours_is_moved_aside_and_rebuilt(tmp_path):
    path = tmp_path / "cache.h5"
    FeatureCache(path, KEY, 8).add(*_rows(300))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    cache = FeatureCache(path, KEY, 8)
    assert len(cache) == 0
    assert (tmp_path / "cache.h5.corrupt").read_bytes() == data[: len(data) // 2]
    cache.add(*_rows(2))
    assert len(FeatureCache(path, KEY, 8)) == 2


def test_an_hdf5_signature_file_that_cannot_be_opened_is_moved_aside(tmp_path):
    garbage = b"\x89HDF\r\n\x1a\n" + b"garbage" * 100
    path = _write(tmp_path / "cache.h5", garbage)
    cache = FeatureCache(path, KEY, 8)
    assert len(cache) == 0 and not path.exists()
    assert (tmp_path / "cache.h5.corrupt").read_bytes() == garbage
    cache.add(*_rows(2))
    assert len(FeatureCache(path, KEY, 8)) == 2


def test_an_interrupted_append_loses_only_its_own_rows(tmp_path):
    """Features are written before digests: rows past the last digest are ignored, then
    overwritten by the next append."""
    path = tmp_path / "cache.h5"
    digests, feats = _rows(4)
    FeatureCache(path, KEY, 8).add(digests, feats)
    with h5py.File(path, "a") as f:  # as if stopped right after writing 2 more feature rows
        f[KEY]["features"].resize((6, 8))
    cache = FeatureCache(path, KEY, 8)
    assert len(cache) == 4 and not (tmp_path / "cache.h5.corrupt").exists()
    more, more_feats = _rows(3, seed=1)
    cache.add(more, more_feats)
    reopened = FeatureCache(path, KEY, 8)
    assert len(reopened) == 7
    np.testing.assert_array_equal(reopened.get(more[0]), more_feats[0])
    np.testing.assert_array_equal(reopened.get(digests[3]), feats[3])


def test_cli_reports_a_wrong_cache_path_as_a_dataset_error(tmp_path, capsys):
    from provider.cli import main

    root = make_dataset(tmp_path / "ds", ("daisy", "tulip"), per_label=5)
    notes = _write(tmp_path / "notes.txt", b"do not touch")
    code = main(["-q", "train", str(root), "--model", str(tmp_path / "m.clf"),
                 "--cache", str(notes), "--folds", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 4
    assert f"{notes} is not a feature cache" in err and "Traceback" not in err
    assert notes.read_bytes() == b"do not touch"
    assert not (tmp_path / "m.clf").exists()


def test_cache_with_other_dimensions_is_moved_aside(tmp_path):
    path = tmp_path / "cache.h5"
    FeatureCache(path, KEY, 4).add(*_rows(3, dim=4))
    assert len(FeatureCache(path, KEY, 8)) == 0
    assert (tmp_path / "cache.h5.corrupt").exists()


def test_cache_in_use_by_another_process_is_not_called_corrupt(tmp_path):
    """HDF5 locks a file open for writing; another training reading it at that moment
    gets BlockingIOError. That healthy cache must not be renamed to ``.corrupt``."""
    path = tmp_path / "cache.h5"
    digests, feats = _rows(3)
    FeatureCache(path, KEY, 8).add(digests, feats)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py,sys; f=h5py.File(sys.argv[1],'a'); "
         "print('ready', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        FeatureCache(path, KEY, 8)
        moved = (tmp_path / "cache.h5.corrupt").exists()
    finally:
        holder.communicate("", timeout=30)
    assert not moved, "a locked, healthy cache was moved aside as corrupt"
    assert len(FeatureCache(path, KEY, 8)) == 3


# ---------------------------------------------------------------- extract_items


def test_extract_items_uses_the_cache_and_reports_bad_files(tmp_path):
    root = make_dataset(tmp_path / "ds", ("daisy", "tulip"), per_label=3)
    _write(root / "daisy" / "zz_text.jpg", b"just some text, renamed")
    _write(root / "tulip" / "zz_empty.jpg", b"")
    items = scan_dataset(root, min_images=1).items
    extractor = get_extractor("cnn")
    calls: list[tuple[str, int, int]] = []
    cache = FeatureCache(tmp_path / "c.h5", extractor.cache_key, extractor.dim)
    first = extract_items(items, extractor, cache=cache, progress=lambda *a: calls.append(a))
    assert first.features.shape == (6, extractor.dim) and first.n_cached == 0
    assert [i.path.name for i in first.items] == [
        i.path.name for i in items if not i.path.name.startswith("zz")
    ]
    assert first.digests == [file_digest(i.path) for i in first.items]
    assert sorted(first.skipped) == [
        "daisy/zz_text.jpg: That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).",
        "tulip/zz_empty.jpg: That file is empty.",
    ]
    assert calls[0] == ("extracting features", 0, 8)
    assert calls[-1] == ("extracting features", 8, 8)
    again = extract_items(
        items, extractor, cache=FeatureCache(cache.path, cache.key, extractor.dim)
    )
    assert again.n_cached == 6
    np.testing.assert_array_equal(again.features, first.features)
    assert again.skipped == first.skipped


def test_extract_items_with_no_readable_image_gives_an_empty_matrix(tmp_path):
    path = _write(tmp_path / "a" / "x.jpg", b"\xff\xd8\xff" + b"\x00" * 20)
    out = extract_items([DatasetItem(path, "a")], get_extractor("cnn"))
    assert out.features.shape == (0, get_extractor("cnn").dim)
    assert out.items == [] and len(out.skipped) == 1
    assert out.skipped[0].startswith("a/x.jpg: ")


def test_extract_items_reports_a_file_that_vanished(tmp_path):
    good = _write(tmp_path / "a" / "good.jpg", _jpeg())
    gone = tmp_path / "a" / "gone.jpg"
    out = extract_items([DatasetItem(good, "a"), DatasetItem(gone, "a")], get_extractor("cnn"))
    assert len(out.items) == 1
    assert out.skipped == ["a/gone.jpg: cannot be read (No such file or directory)"]


def test_cache_file_can_be_shared_by_copy(tmp_path, small_model):
    """The session cache really holds one row per image of the small dataset."""
    copy = shutil.copy(small_model.cache, tmp_path / "copy.h5")
    ext = get_extractor("cnn")
    assert len(FeatureCache(copy, ext.cache_key, ext.dim)) == small_model.result.n_images


def test_a_label_folder_named_unknown_is_refused_with_a_warning(tmp_path):
    import shutil

    from provider.dataset import scan_dataset
    from provider.train import default_dataset

    src = sorted((default_dataset() / "daisy").glob("*.jpg"))[:3]
    for label in ("daisy", "iris", "Unknown"):
        (tmp_path / label).mkdir()
        for p in src:
            shutil.copy(p, tmp_path / label / p.name)
    scan = scan_dataset(tmp_path, min_images=1)
    assert scan.labels == ("daisy", "iris")
    assert any("'Unknown'" in w and "answer for no label" in w for w in scan.warnings)
