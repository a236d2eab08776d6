"""The original service's global descriptors: HSV colour histogram, Haralick texture, Hu moments.

Kept for compatibility with the first version of the classifier and as the baseline the CNN
features are measured against. One change from the original: the input is RGB (what
:func:`provider.imageio.decode_image` returns), not OpenCV's BGR, so the colour conversions
are ``COLOR_RGB2*``.
"""

from __future__ import annotations

from typing import Final

import cv2
import mahotas
import numpy as np

__all__ = [
    "GLOBAL_FEATURE_DIM",
    "GLOBAL_SIZE",
    "HISTOGRAM_DIM",
    "HIST_BINS",
    "color_histogram",
    "global_features",
]

GLOBAL_SIZE: Final = 500  # side of the square the image is resized to, pixels
HIST_BINS: Final = 8  # bins per HSV channel
HISTOGRAM_DIM: Final = HIST_BINS**3  # 512
HARALICK_DIM: Final = 13
HU_DIM: Final = 7
GLOBAL_FEATURE_DIM: Final = HISTOGRAM_DIM + HARALICK_DIM + HU_DIM  # 532

# OpenCV 8-bit HSV: H in [0, 180), S and V in [0, 256).
_HSV_RANGES: Final = [0, 180, 0, 256, 0, 256]


def global_features(rgb: np.ndarray) -> np.ndarray:
    """The original 532-value global descriptor of an image.

    The image is resized to 500x500 (``cv2.INTER_LINEAR``, aspect ratio not kept, as the
    original did), then described by, in this order (``np.hstack`` of the original):

    * ``[0:512]`` the L2-normalised 8x8x8 HSV colour histogram (:func:`color_histogram`);
    * ``[512:525]`` the 13 Haralick texture features of the grayscale image, averaged over
      the four directions (``mahotas.features.haralick(gray).mean(axis=0)``);
    * ``[525:532]`` the 7 Hu moments of the grayscale image
      (``cv2.HuMoments(cv2.moments(gray)).flatten()``).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image (or ``(H, W)`` uint8 grayscale), any size.

    Returns:
        ``(532,)`` float32 vector. Values undefined for the image (Haralick correlation of a
        flat image is 0/0) are 0 instead of NaN.
    """
    rgb = _as_rgb(rgb)
    resized = cv2.resize(rgb, (GLOBAL_SIZE, GLOBAL_SIZE), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)
    features = np.hstack([color_histogram(resized), _haralick(gray), _hu_moments(gray)])
    return np.nan_to_num(features.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def color_histogram(rgb: np.ndarray) -> np.ndarray:
    """L2-normalised 8x8x8 HSV colour histogram of an image, at the size given.

    Bins are H (0..180 in OpenCV units, i.e. 22.5 degrees per bin), S and V (0..256, 32
    levels per bin); the flattened order is H-major (``index = 64*h + 8*s + v``). The L2
    normalisation makes the vector independent of the pixel count to first order, so it can
    be combined with CNN features computed on another resize (``cnn+color``).

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image (or ``(H, W)`` uint8 grayscale).

    Returns:
        ``(512,)`` float32 vector with unit L2 norm.
    """
    hsv = cv2.cvtColor(_as_rgb(rgb), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [HIST_BINS] * 3, _HSV_RANGES)
    cv2.normalize(hist, hist)
    return hist.flatten().astype(np.float32, copy=False)


def _haralick(gray: np.ndarray) -> np.ndarray:
    """(13,) float64 Haralick features of a uint8 grayscale image, mean of 4 directions."""
    return mahotas.features.haralick(gray).mean(axis=0)


def _hu_moments(gray: np.ndarray) -> np.ndarray:
    """(7,) float64 Hu moments of a grayscale image (intensity-weighted, not binarised)."""
    return cv2.HuMoments(cv2.moments(gray)).flatten()


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Validate a uint8 image and return it as (H, W, 3) RGB (gray is repeated 3 times)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("expected a uint8 numpy array")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image
