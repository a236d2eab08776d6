"""train_model end to end: results, bad files, determinism, the feature cache, every
classifier and extractor. Real JPEGs, real network, real HDF5 and model files."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from provider.artifact import MAGIC, read_header
from provider.errors import DatasetError
from provider.estimators import CLASSIFIERS
from provider.features import EXTRACTORS, get_extractor
from provider.model import Classifier
from provider.train import default_dataset, train_model
from tests.provider.conftest import (
    HELD_OUT,
    LABELS,
    PER_LABEL,
    copy_dataset,
    make_dataset,
    packaged_images,
)

N_IMAGES = len(LABELS) * PER_LABEL


def _cache_rows(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return f[get_extractor("cnn").cache_key]["digests"].shape[0]


def _copy_cache(small_model, tmp_path: Path) -> Path:
    return Path(shutil.copy(small_model.cache, tmp_path / "features.h5"))


def _split_file(path: Path) -> tuple[dict, bytes]:
    meta, offset = read_header(path)
    return meta, path.read_bytes()[offset:]


# ---------------------------------------------------------------- the result


def test_train_result_describes_the_model(small_model):
    r = small_model.result
    assert r.model_path == small_model.path and r.model_path.is_file()
    assert r.model_path.read_bytes().startswith(MAGIC)
    assert r.labels == LABELS
    assert r.n_images == N_IMAGES
    assert r.n_cached == 0  # the cache was empty: every image was extracted
    assert _cache_rows(small_model.cache) == N_IMAGES
    assert 0.9 <= r.accuracy <= 1.0  # four distinct flowers: 3-fold CV is (nearly) perfect
    assert 0.0 <= r.accuracy_std < 0.1
    assert r.confusion.shape == (len(LABELS), len(LABELS))
    assert r.confusion.sum() == N_IMAGES  # each image is tested once across the folds
    assert list(r.confusion.sum(axis=1)) == [PER_LABEL] * len(LABELS)
    assert np.trace(r.confusion) >= 0.9 * N_IMAGES
    assert r.skipped == [] and r.warnings == []
    assert r.duration_s > 0
    assert r.metadata["model_id"] == r.model_id
    assert len(r.model_id) == 12 and int(r.model_id, 16) >= 0


def test_default_dataset_is_the_packaged_flowers17():
    root = default_dataset()
    labels = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(labels) == 17 and "daisy" in labels
    assert all(len(list((root / lb).glob("*.jpg"))) == 80 for lb in labels)


def test_progress_is_reported_for_each_stage(tmp_path, small_model):
    calls: list[tuple[str, int, int]] = []
    train_model(
        small_model.dataset,
        tmp_path / "m.clf",
        cache=_copy_cache(small_model, tmp_path),
        folds=2,
        progress=lambda *a: calls.append(a),
    )
    stages = list(dict.fromkeys(c[0] for c in calls))
    assert stages == ["extracting features", "cross-validating", "fitting"]
    for stage in stages:
        last = [c for c in calls if c[0] == stage][-1]
        assert last[1] == last[2] > 0, last
    assert ("extracting features", N_IMAGES, N_IMAGES) in calls


# ---------------------------------------------------------------- bad files


def test_unreadable_files_are_reported_by_name_and_skipped(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    jpeg = next((ds / "daisy").glob("*.jpg")).read_bytes()
    (ds / "daisy" / "zz_text.jpg").write_text("I am a text file with an image's name")
    (ds / "daisy" / "zz_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (ds / "sunflower" / "zz_empty.jpg").write_bytes(b"")
    (ds / "bluebell" / "zz_notes.txt").write_text("not an image suffix: ignored, not skipped")
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert sorted(result.skipped) == [
        "daisy/zz_text.jpg: That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).",
        "daisy/zz_truncated.jpg: That image is damaged or incomplete.",
        "sunflower/zz_empty.jpg: That file is empty.",
    ]
    assert result.n_images == N_IMAGES
    assert result.labels == LABELS
    assert "ignored 1 files that are not images" in result.warnings
    # The bad files change nothing: same features, same model as without them.
    assert result.model_id == small_model.result.model_id
    assert Classifier.load(result.model_path).labels == LABELS


def test_png_with_a_jpg_name_is_used_not_skipped(tmp_path, small_model):
    from PIL import Image

    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    src = next((ds / "daisy").glob("*.jpg"))
    with Image.open(src) as im:
        im.save(ds / "daisy" / "zz_really_a_png.jpg", "PNG")
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert result.skipped == []
    assert result.n_images == N_IMAGES + 1
    assert result.n_cached == N_IMAGES


def test_label_whose_images_are_all_unreadable_is_left_out(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    (ds / "broken").mkdir()
    for i in range(5):
        (ds / "broken" / f"b{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert result.labels == LABELS
    assert len(result.skipped) == 5 and all(s.startswith("broken/b") for s in result.skipped)
    assert "labels with no readable image were left out: broken" in result.warnings
    assert Classifier.load(result.model_path).labels == LABELS


def test_one_readable_label_is_a_dataset_error(tmp_path, small_model):
    ds = make_dataset(tmp_path / "ds", ("daisy",), per_label=5)
    (ds / "broken").mkdir()
    for i in range(5):
        (ds / "broken" / f"b{i}.jpg").write_text("nope")
    with pytest.raises(DatasetError, match=r"Only 1 label\(s\) .* have readable images"):
        train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path))
    assert not (tmp_path / "m.clf").exists()


def test_label_with_few_images_trains_with_a_warning_and_fewer_folds(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    for extra in sorted((ds / "tigerlily").glob("*.jpg"))[3:]:
        extra.unlink()
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=5)
    assert any("'tigerlily' has only 3 images" in w for w in result.warnings)
    assert result.metadata["metrics"]["cv_folds"] == 3  # limited by the smallest label
    assert result.accuracy is not None


def test_label_with_one_image_trains_without_cv(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    for extra in sorted((ds / "tigerlily").glob("*.jpg"))[1:]:
        extra.unlink()
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=5)
    assert result.accuracy is None and result.confusion is None
    assert any("accuracy was not measured" in w for w in result.warnings)
    assert Classifier.load(result.model_path).labels == LABELS


# ---------------------------------------------------------------- determinism


def test_training_twice_gives_the_same_model(tmp_path, small_model):
    """No cache this time: features are extracted again, yet the model is identical."""
    again = train_model(small_model.dataset, tmp_path / "again.clf", folds=3)
    assert again.model_id == small_model.result.model_id
    meta1, payload1 = _split_file(small_model.path)
    meta2, payload2 = _split_file(again.model_path)
    assert payload1 == payload2
    meta1.pop("created_at")
    meta2.pop("created_at")
    assert meta1 == meta2


def test_model_does_not_depend_on_the_dataset_location(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "elsewhere" / "flowers")
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert result.model_id == small_model.result.model_id


def test_relabelling_one_image_changes_the_model(tmp_path, small_model):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    moved = sorted((ds / "daisy").glob("*.jpg"))[0]
    moved.rename(ds / "sunflower" / moved.name)
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert result.n_cached == N_IMAGES
    assert result.model_id != small_model.result.model_id
    fp = result.metadata["dataset"]["fingerprint"]
    assert fp != small_model.result.metadata["dataset"]["fingerprint"]


# ---------------------------------------------------------------- the feature cache


def test_cache_extracts_only_what_changed(tmp_path, small_model, held_out):
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    cache = _copy_cache(small_model, tmp_path)
    out = tmp_path / "m.clf"

    first = train_model(ds, out, cache=cache, folds=0)
    assert first.n_cached == first.n_images == N_IMAGES  # nothing new to extract
    assert _cache_rows(cache) == N_IMAGES
    assert first.model_id == small_model.result.model_id

    added = held_out[:2]  # two more bluebells
    for src in added:
        shutil.copy(src, ds / "bluebell" / src.name)
    grown = train_model(ds, out, cache=cache, folds=0)
    assert grown.n_images == N_IMAGES + 2
    assert grown.n_cached == N_IMAGES  # only the two new images were extracted
    assert _cache_rows(cache) == N_IMAGES + 2
    assert grown.model_id != first.model_id

    removed = sorted((ds / "sunflower").glob("*.jpg"))[:2]
    parked = tmp_path / "parked"
    parked.mkdir()
    for path in removed:
        path.rename(parked / path.name)
    shrunk = train_model(ds, out, cache=cache, folds=0)
    assert shrunk.n_images == shrunk.n_cached == N_IMAGES
    assert shrunk.model_id not in {first.model_id, grown.model_id}

    for src in added:
        (ds / "bluebell" / src.name).unlink()
    for path in removed:
        (parked / path.name).rename(path)
    restored = train_model(ds, out, cache=cache, folds=0)
    assert restored.n_cached == N_IMAGES
    assert restored.model_id == first.model_id  # cached rows equal freshly extracted ones


def test_corrupt_cache_is_moved_aside_and_training_still_works(tmp_path):
    ds = make_dataset(tmp_path / "ds", ("daisy", "sunflower"), per_label=5)
    cache = tmp_path / "features.h5"
    cache.write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 100)
    result = train_model(ds, tmp_path / "m.clf", cache=cache, folds=0)
    assert result.n_images == 10 and result.n_cached == 0
    assert (tmp_path / "features.h5.corrupt").read_bytes().endswith(b"garbage")
    assert _cache_rows(cache) == 10  # a fresh, valid cache replaced it
    assert train_model(ds, tmp_path / "m2.clf", cache=cache, folds=0).n_cached == 10


# ---------------------------------------------------------------- classifiers and extractors


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_every_classifier_trains_and_predicts(name, tmp_path, small_model, held_out_features):
    result = train_model(
        small_model.dataset,
        tmp_path / f"{name}.clf",
        classifier=name,
        cache=_copy_cache(small_model, tmp_path),
        folds=0,
    )
    clf = Classifier.load(result.model_path)
    assert clf.metadata["classifier"] == name
    pipeline = clf._artifact.pipeline
    assert isinstance(pipeline, Pipeline) and isinstance(pipeline.steps[0][1], StandardScaler)
    preds = clf.predict_features(held_out_features, top_k=len(LABELS))
    truth = [lb for lb in LABELS for _ in range(HELD_OUT)]
    for pred in preds:
        assert {s.label for s in pred.top} == set(LABELS)
        confidences = [s.confidence for s in pred.top]
        assert confidences == sorted(confidences, reverse=True)
        assert sum(confidences) == pytest.approx(1.0, abs=1e-6)
    accuracy = np.mean([p.top[0].label == t for p, t in zip(preds, truth, strict=True)])
    assert accuracy >= 0.5, f"{name}: {accuracy:.0%} on held-out images (chance is 25%)"


def test_unknown_classifier_lists_the_choices(tmp_path, small_model):
    with pytest.raises(ValueError, match="unknown classifier 'xgboost'") as info:
        train_model(small_model.dataset, tmp_path / "m.clf", classifier="xgboost")
    assert all(name in str(info.value) for name in CLASSIFIERS)
    assert not (tmp_path / "m.clf").exists()


def test_unknown_extractor_lists_the_choices(tmp_path, small_model):
    with pytest.raises(ValueError, match="unknown feature extractor 'sift'") as info:
        train_model(small_model.dataset, tmp_path / "m.clf", extractor="sift")
    assert all(name in str(info.value) for name in EXTRACTORS)


@pytest.mark.parametrize(
    ("extractor", "per_label", "min_correct"), [("cnn+color", 5, 8), ("global", 8, 6)]
)
def test_other_extractors_train_and_predict(extractor, per_label, min_correct, tmp_path):
    ds = make_dataset(tmp_path / "ds", ("daisy", "sunflower"), per_label=per_label)
    result = train_model(ds, tmp_path / "m.clf", extractor=extractor, folds=0)
    clf = Classifier.load(result.model_path)
    spec = get_extractor(extractor)
    assert clf.metadata["extractor"] == {
        "name": extractor,
        "version": spec.version,
        "dim": spec.dim,
        "classifier_dim": spec.classifier_dim,
    }
    assert clf.extractor is spec
    held_out = [p for lb in ("daisy", "sunflower") for p in packaged_images(lb, 8, 12)]
    preds = clf.classify_sources(held_out, top_k=2)
    for pred in preds:
        assert {s.label for s in pred.top} == {"daisy", "sunflower"}
        assert sum(s.confidence for s in pred.top) == pytest.approx(1.0, abs=1e-6)
    pairs = zip(preds, held_out, strict=True)
    correct = sum(p.top[0].label == path.parent.name for p, path in pairs)
    assert correct >= min_correct
    weak_unknown = [w for w in result.warnings if "rarely answers 'unknown'" in w]
    assert bool(weak_unknown) == (not spec.detects_unknown)


def test_label_left_with_few_readable_images_is_reported(tmp_path, small_model):
    """The scan counts files; after unreadable ones are skipped a label may be too small."""
    ds = copy_dataset(small_model.dataset, tmp_path / "ds")
    daisies = sorted((ds / "daisy").glob("*.jpg"))
    for extra in daisies[6:]:
        extra.unlink()
    for broken in daisies[:4]:
        broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    result = train_model(ds, tmp_path / "m.clf", cache=_copy_cache(small_model, tmp_path), folds=0)
    assert len(result.skipped) == 4
    assert "label 'daisy' has only 2 readable images (at least 5 advised; 4 unreadable)" in (
        result.warnings
    )
    assert not any("'sunflower'" in w for w in result.warnings)
