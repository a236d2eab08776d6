"""Tests of provider.features.global_features (the original service's descriptors)."""

from __future__ import annotations

import cv2
import mahotas
import numpy as np
import pytest

from provider.features.global_features import (
    GLOBAL_FEATURE_DIM,
    HISTOGRAM_DIM,
    color_histogram,
    global_features,
)


def textured(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 RGB image: smooth colour field plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = np.stack([127 + 100 * np.sin(x / 17 + y / 23 + p) for p in phase], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def test_shape_and_dtype():
    features = global_features(textured(0))
    assert features.shape == (GLOBAL_FEATURE_DIM,) == (532,)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()


def test_layout_is_histogram_then_haralick_then_hu():
    image = textured(1)
    features = global_features(image)
    resized = cv2.resize(image, (500, 500), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(features[:512], color_histogram(resized), rtol=1e-6)
    haralick = mahotas.features.haralick(gray).mean(axis=0)
    np.testing.assert_allclose(features[512:525], haralick.astype(np.float32), rtol=1e-5)
    hu = cv2.HuMoments(cv2.moments(gray)).flatten()
    np.testing.assert_allclose(features[525:], hu.astype(np.float32), rtol=1e-5)


def test_deterministic():
    image = textured(2)
    np.testing.assert_array_equal(global_features(image), global_features(image.copy()))


def test_different_images_give_different_vectors():
    a, b = global_features(textured(3)), global_features(textured(4))
    assert not np.allclose(a, b)
    assert np.linalg.norm(a[:512] - b[:512]) > 0.1  # the colour histograms really differ


def test_color_histogram_is_unit_l2_and_sees_colour():
    red = np.zeros((50, 50, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((50, 50, 3), np.uint8)
    blue[..., 2] = 255
    h_red, h_blue = color_histogram(red), color_histogram(blue)
    assert h_red.shape == (HISTOGRAM_DIM,) and h_red.dtype == np.float32
    assert np.linalg.norm(h_red) == pytest.approx(1.0, abs=1e-6)
    # Pure red: H=0, S=255, V=255 -> bin (0, 7, 7); pure blue: H=120 -> bin (5, 7, 7).
    assert np.argmax(h_red) == 0 * 64 + 7 * 8 + 7
    assert np.argmax(h_blue) == 5 * 64 + 7 * 8 + 7


def test_rgb_input_is_not_treated_as_bgr():
    image = np.zeros((40, 40, 3), np.uint8)
    image[..., 0] = 255  # red in RGB
    bgr_red_bin = 5 * 64 + 7 * 8 + 7  # where it would land if read as BGR (blue)
    assert global_features(image)[bgr_red_bin] == 0.0
    assert global_features(image)[0 * 64 + 7 * 8 + 7] == pytest.approx(1.0)


def test_grayscale_like_input():
    gray = textured(5)[..., 1]
    as_rgb = np.repeat(gray[..., np.newaxis], 3, axis=2)
    from_rgb = global_features(as_rgb)
    assert from_rgb.shape == (532,) and np.isfinite(from_rgb).all()
    # No saturation: only the S=0 histogram bins (H=0 for gray in OpenCV) are used.
    histogram = from_rgb[:512].reshape(8, 8, 8)
    assert histogram[0, 0].sum() > 0 and histogram.sum() == pytest.approx(histogram[0, 0].sum())
    # A 2-D grayscale array gives the same vector as its 3-channel copy.
    np.testing.assert_array_equal(global_features(gray), from_rgb)


def test_flat_image_gives_finite_values():
    features = global_features(np.full((30, 30, 3), 90, np.uint8))
    assert np.isfinite(features).all()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((0, 10, 3), np.uint8),
    ],
)
def test_invalid_input_is_rejected(bad):
    with pytest.raises(ValueError):
        global_features(bad)
