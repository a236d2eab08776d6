"""The EfficientNet-Lite0 network run by ONNX Runtime: reference outputs, agreement with the
previous engine (cv2.dnn), the int8 network, weight integrity, preprocessing, embeddings,
and the extractor registry."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import cv2
import numpy as np
import pytest

from provider.errors import ModelError
from provider.features import EXTRACTORS, cnn, get_extractor
from provider.imageio import decode_image
from tests.provider.conftest import packaged_images

IMAGENET_DAISY = 985  # ImageNet-1k class index of "daisy"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(cnn.MODELS_DIR / "efficientnet_lite0_reference.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [decode_image(p) for p in packaged_images("daisy", 0, 2)]


# ---------------------------------------------------------------- reference outputs


def test_reference_file_has_the_documented_shapes(reference):
    assert reference["input"].shape == (2, 3, cnn.INPUT_SIZE, cnn.INPUT_SIZE)
    assert reference["features"].shape == (2, cnn.HEAD_DIM)
    assert reference["logits"].shape == (2, cnn.IMAGENET_CLASSES)
    assert reference["stages"].shape == (2, sum(cnn.STAGE_DIMS))


def test_onnxruntime_reproduces_the_pytorch_reference_outputs(reference):
    head, logits, stages = cnn.network().forward_blob(reference["input"])
    for got, name in ((head, "features"), (logits, "logits"), (stages, "stages")):
        want = reference[name]
        assert got.shape == want.shape, name
        assert got.dtype == np.float32
        # Measured max error ~1.3e-5 for values up to ~21; a wrong op would be off by >1e-2.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
    assert np.array_equal(
        np.argsort(-logits, axis=1)[:, :5], np.argsort(-reference["logits"])[:, :5]
    )


def test_each_reference_image_runs_alone_as_in_the_batch(reference):
    net = cnn.network()
    batch_head, _, _ = net.forward_blob(reference["input"])
    for i in range(2):
        head, _, _ = net.forward_blob(reference["input"][i : i + 1])
        np.testing.assert_allclose(head[0], batch_head[i], rtol=1e-4, atol=1e-5)


def test_network_recognises_a_daisy_as_imagenet_daisy(photos):
    _, logits = cnn.network()(photos)
    assert list(logits.argmax(axis=1)) == [IMAGENET_DAISY] * len(photos)


def _real_photos(step: int = 40) -> list[np.ndarray]:
    """Every ``step``-th packaged FLOWERS17 photo (all 17 labels), decoded as in use."""
    from provider.train import default_dataset

    paths = sorted(default_dataset().glob("*/*.jpg"))[::step]
    return [decode_image(p, min_side=cnn.RESIZE_SHORTER) for p in paths]


def test_onnxruntime_gives_the_features_cv2_dnn_gave_on_real_photos():
    """The engine changed, not the features: 34 photos through both, same preprocessing."""
    photos = _real_photos()
    assert len(photos) >= 30
    blob = cnn.to_blob([cnn.preprocess(im) for im in photos])
    ort_out = cnn.OnnxBackbone("fp32", 1).forward_blob(blob)
    cv_out = cnn.OpenCvBackbone().forward_blob(blob)
    for got, want, name in zip(ort_out, cv_out, cnn.OUTPUTS, strict=True):
        # Measured max difference 1.5e-5 (values up to ~20); one wrong op is off by > 1e-2.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=name)
    emb_ort, emb_cv = cnn.embed(ort_out[0], ort_out[2]), cnn.embed(cv_out[0], cv_out[2])
    np.testing.assert_allclose(emb_ort, emb_cv, atol=1e-4)


def test_int8_network_stays_close_to_the_float_network_on_real_photos():
    """Quantised, so not equal: each embedding stays near its float32 twin (cosine >= 0.95,
    measured ~0.99) and much nearer to it than to the other photos' embeddings."""
    photos = _real_photos()
    emb32, logits32 = cnn.network("fp32")(photos)
    emb8, logits8 = cnn.network("int8")(photos)
    assert emb8.shape == emb32.shape and emb8.dtype == np.float32
    cosine = np.sum(emb8 * emb32, axis=1) / (
        np.linalg.norm(emb8, axis=1) * np.linalg.norm(emb32, axis=1)
    )
    assert cosine.min() >= 0.95, cosine.min()
    nearest = np.argmax(emb8 @ emb32.T, axis=1)
    assert list(nearest) == list(range(len(photos)))
    assert np.mean(logits8.argmax(1) == logits32.argmax(1)) >= 0.8


def test_int8_manifest_records_its_weights_and_calibration_images():
    manifest = json.loads(cnn.INT8_MANIFEST_PATH.read_text())
    assert hashlib.sha256(cnn.INT8_ONNX_PATH.read_bytes()).hexdigest() == manifest["sha256"]
    assert manifest["source"]["sha256"] == json.loads(cnn.MANIFEST_PATH.read_text())["sha256"]
    images = manifest["calibration"]["images"]
    assert len(images) == 51 and len({i["path"].split("/")[0] for i in images}) == 17
    assert all(re.fullmatch(r"[0-9a-f]{64}", i["sha256"]) for i in images)
    # The int8 extractor's cache version names this model, so a rebuilt model is new.
    assert manifest["sha256"][:8] in get_extractor("cnn-int8").version


def test_every_extractor_has_its_own_cache_key():
    keys = [e.cache_key for e in EXTRACTORS.values()]
    assert len(set(keys)) == len(keys)
    assert get_extractor("cnn").cache_key != get_extractor("cnn-int8").cache_key
    assert "ort" in get_extractor("cnn").version  # not the cv2.dnn features' version


# ---------------------------------------------------------------- weight integrity


@pytest.fixture
def tmp_weights(tmp_path, monkeypatch):
    """Point the loader at a tmp copy of the weights; the verification cache is cleared
    before and after, so the real weights are verified again afterwards."""
    onnx, manifest = tmp_path / cnn.ONNX_PATH.name, tmp_path / cnn.MANIFEST_PATH.name
    shutil.copy(cnn.ONNX_PATH, onnx)
    shutil.copy(cnn.MANIFEST_PATH, manifest)
    monkeypatch.setattr(cnn, "ONNX_PATH", onnx)
    monkeypatch.setattr(cnn, "MANIFEST_PATH", manifest)
    cnn._verified_onnx_bytes.cache_clear()
    yield onnx, manifest
    cnn._verified_onnx_bytes.cache_clear()


def test_manifest_sha256_matches_the_committed_weights():
    manifest = json.loads(cnn.MANIFEST_PATH.read_text())
    assert manifest["file"] == cnn.ONNX_PATH.name
    assert manifest["licence"] == "Apache-2.0"
    assert hashlib.sha256(cnn.ONNX_PATH.read_bytes()).hexdigest() == manifest["sha256"]


def test_intact_copy_of_the_weights_is_accepted(tmp_weights):
    onnx, _ = tmp_weights
    assert cnn._verified_onnx_bytes() == onnx.read_bytes()


def test_weights_with_one_flipped_byte_are_refused(tmp_weights):
    onnx, _ = tmp_weights
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"corrupted \(sha256 mismatch\)"):
        cnn._verified_onnx_bytes()
    with pytest.raises(ModelError, match="corrupted"):
        cnn.OnnxBackbone()


def test_missing_weights_or_manifest_are_a_model_error(tmp_weights):
    onnx, manifest = tmp_weights
    manifest.unlink()
    with pytest.raises(ModelError, match="missing or unreadable"):
        cnn._verified_onnx_bytes()
    shutil.copy(cnn.MODELS_DIR / manifest.name, manifest)
    onnx.unlink()
    with pytest.raises(ModelError, match="missing or unreadable"):
        cnn._verified_onnx_bytes()


# ---------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    "shape",
    [(480, 320), (320, 480), (224, 224), (256, 256), (3, 5), (1, 1), (1200, 1600), (500, 1000)],
    ids=["portrait", "landscape", "exact", "short-256", "tiny", "one-pixel", "big", "2to1"],
)
def test_preprocess_always_gives_a_224_square(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    out = cnn.preprocess(image)
    assert out.shape == (224, 224, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize(
    "shape", [(480, 320), (3000, 4000), (256, 900), (300, 301), (100, 150), (40, 2000), (9000, 50)]
)
def test_reducing_after_decode_does_not_change_the_network_input(shape):
    """The decoder threads shrink each image at once; the crop must be the one the full
    image gives (so features and the cache stay valid), and no side stays above 4x256."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    reduced = cnn.reduce_for_network(image)
    assert min(reduced.shape[:2]) <= max(cnn.RESIZE_SHORTER, min(shape))
    assert max(reduced.shape[:2]) <= cnn.MAX_ASPECT * max(cnn.RESIZE_SHORTER, min(shape))
    assert np.array_equal(cnn.preprocess(reduced), cnn.preprocess(image))


@pytest.mark.parametrize("portrait", [False, True])
def test_preprocess_crops_the_centre(portrait):
    """A 256x768 strip in three colour bands: the centre crop sees only the middle band."""
    bands = np.zeros((256, 768, 3), np.uint8)
    bands[:, :256] = (255, 0, 0)
    bands[:, 256:512] = (0, 255, 0)
    bands[:, 512:] = (0, 0, 255)
    image = np.ascontiguousarray(bands.transpose(1, 0, 2)) if portrait else bands
    out = cnn.preprocess(image)
    assert np.array_equal(np.unique(out.reshape(-1, 3), axis=0), [[0, 255, 0]])


def test_preprocess_downscales_to_shorter_side_256_before_cropping():
    """A 512x512 image whose centre 448x448 is gray: scaled to 256, the 224 crop is all gray."""
    image = np.zeros((512, 512, 3), np.uint8)
    image[32:480, 32:480] = 128
    out = cnn.preprocess(image)
    assert np.all(out == 128)


def test_preprocess_of_an_extremely_thin_image_stays_small(monkeypatch):
    """A 4 x 1500 image (a few hundred bytes as PNG, far below the pixel cap) must not be
    resized to 256 x 96000 pixels first: a 1 x 20000 image made this allocate 4.4 GB and
    take 28 s, a denial of service through one Discord attachment."""
    sizes: list[tuple[int, int]] = []
    real_resize = cv2.resize

    def recording_resize(src, dsize, *args, **kwargs):
        sizes.append(tuple(dsize))
        return real_resize(src, dsize, *args, **kwargs)

    monkeypatch.setattr(cnn.cv2, "resize", recording_resize)
    out = cnn.preprocess(np.full((4, 1500, 3), 200, np.uint8))
    assert out.shape == (224, 224, 3)
    assert sizes, "preprocess did not resize"
    assert max(w * h for w, h in sizes) <= 2_000_000, f"resized to {sizes}"


def test_to_blob_normalises_to_nchw_rgb():
    crop = np.zeros((224, 224, 3), np.uint8)
    crop[..., 0] = 255  # red
    crop[..., 1] = 127
    blob = cnn.to_blob([crop, crop])
    assert blob.shape == (2, 3, 224, 224)
    assert blob.dtype == np.float32
    assert blob.flags["C_CONTIGUOUS"]
    assert np.all(blob[:, 0] == (255 - 127) / 128)
    assert np.all(blob[:, 1] == 0.0)
    assert np.all(blob[:, 2] == -127 / 128)


# ---------------------------------------------------------------- embeddings


def test_embedding_shape_and_block_normalisation(photos):
    images = [*photos, np.full((40, 90, 3), 7, np.uint8)]  # a photo-free, almost black image
    emb, logits = cnn.network()(images)
    assert emb.shape == (3, cnn.EMBEDDING_DIM) == (3, 1984)
    assert logits.shape == (3, 1000)
    assert emb.dtype == logits.dtype == np.float32
    assert np.all(np.isfinite(emb)) and np.all(np.isfinite(logits))
    # Head and each stage are unit-norm blocks (signed sqrt + L2).
    start = 0
    for width in (cnn.HEAD_DIM, *cnn.STAGE_DIMS):
        norms = np.linalg.norm(emb[:, start : start + width], axis=1)
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
        start += width
    assert not np.allclose(emb[0], emb[2], atol=1e-2)


def test_embedding_does_not_depend_on_batching(photos):
    images = [*photos, photos[0][::-1].copy()]
    net = cnn.network()
    whole, _ = net(images)
    in_pairs, _ = net(images, batch_size=2)
    one_by_one = np.concatenate([net([im])[0] for im in images])
    np.testing.assert_allclose(in_pairs, whole, atol=1e-5)
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)


def test_empty_batch_gives_empty_matrices():
    emb, logits = cnn.network()([])
    assert emb.shape == (0, 1984) and logits.shape == (0, 1000)


def test_network_is_one_instance_per_process():
    assert cnn.network() is cnn.network()


# ---------------------------------------------------------------- extractor registry


def test_unknown_extractor_lists_the_choices():
    with pytest.raises(ValueError, match="unknown feature extractor 'sift'") as info:
        get_extractor("sift")
    for name in EXTRACTORS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["cnn", "cnn-int8", "cnn+color", "global"])
def test_each_extractor_gives_its_declared_dimension(name, photos):
    extractor = get_extractor(name)
    feats, logits = extractor.extract([photos[0]])
    assert feats.shape == (1, extractor.dim)
    assert feats.dtype == np.float32
    assert logits.shape == (1, 1000)
    assert np.all(np.isfinite(feats))
    assert extractor.cache_key == f"{name}@{extractor.version}"
    if name == "global":
        assert not logits.any()  # no network: zero logits
    else:
        variant = "int8" if name == "cnn-int8" else "fp32"
        emb, net_logits = cnn.network(variant)([photos[0]])
        assert np.array_equal(feats[:, :1984], emb)
        # the rows end with the square roots of the ImageNet class probabilities
        semantic = feats[:, -1000:]
        np.testing.assert_allclose(np.linalg.norm(semantic, axis=1), 1.0, rtol=1e-5)
        assert int(np.argmax(semantic)) == int(np.argmax(net_logits))


def test_concurrent_single_and_batch_calls_agree_with_sequential_ones():
    """One-image calls take the whole pool (all threads on one network) while batch calls
    spread over the networks: mixed concurrent callers must neither collide inside OpenCV
    nor change any result."""
    import threading

    from provider.train import default_dataset

    images = [decode_image(p) for p in sorted(default_dataset().glob("*/*.jpg"))[::85][:12]]
    pool = cnn.network()
    reference, _ = pool(images)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def caller(i: int) -> None:
        try:
            if i % 2:
                results[i] = np.concatenate([pool([im])[0] for im in images])
            else:
                results[i] = pool(images)[0]
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert sorted(results) == [0, 1, 2, 3]
    for got in results.values():
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)


def test_a_lone_image_runs_on_lent_cores_with_the_same_features(photos):
    """A local worker's pool (one core's share) uses an n-thread session for a lone image
    while cores are lent, and its own one-thread session otherwise and for batches."""
    pool = cnn.NetworkPool(1)
    own, _ = pool(photos[:1])
    assert pool._lent == {}
    with cnn.lend_cores(2):
        lent, _ = pool(photos[:1])
        assert set(pool._lent) == {2}
        batch, _ = pool(photos[:2])  # batches stay on the worker's own share
    assert np.abs(lent - own).max() < 1e-4
    assert np.abs(batch[:1] - own).max() < 1e-4
    calls: list[int] = []
    lent_session = pool._lent[2]
    real = lent_session.forward_blob
    lent_session.forward_blob = lambda blob: calls.append(len(blob)) or real(blob)  # type: ignore[method-assign]
    with cnn.lend_cores(2):
        pool(photos[:1])
        pool(photos[:2])
    pool(photos[:1])  # lending ended with the block
    assert calls == [1]
