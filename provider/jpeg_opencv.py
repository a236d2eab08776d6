"""The fast path of :func:`provider.imageio.decode_image` for the common JPEG: sequential
(baseline) Huffman, YCbCr or grayscale, complete.

Pillow hands its pixels to numpy through ``tobytes``: for a 500x666 photo that is about
0.9 ms on top of a 1.2 ms decode. ``cv2.imdecode`` runs the same libjpeg-turbo decode into
a numpy array directly (about 1 ms in all). Its pixels are the same, bit for bit, at full
size and at the DCT scales 1/2, 1/4 and 1/8 (checked by the tests on every kind of JPEG
this path takes, and on all of FLOWERS17), so features and the feature cache do not move.

Pillow stays in charge of everything else: the header (size, mode, EXIF) is read by
Pillow first and every limit of ``decode_image`` is checked before this runs. This path
declines (returns ``None``, and Pillow decodes) whenever it could differ from Pillow:

* progressive, lossless, arithmetic-coded or hierarchical files (only SOF0/SOF1 here);
  the scan bombs of issue 9 are progressive, so they keep Pillow's time budget. A
  sequential file's decode time is bounded by its pixels and bytes (a 40-megapixel one
  takes about 0.3 s), so it needs no budget;
* a file without its end-of-image marker: libjpeg would fill the missing rows with grey
  where Pillow reports a truncated image;
* CMYK/YCCK files (Pillow's mode is not ``RGB`` or ``L``);
* a DCT scale Pillow did not pick, or a decoded frame still to be shrunk afterwards;
* an OpenCV without ``IMREAD_COLOR_RGB`` (before 4.10), or any OpenCV failure.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
from PIL import Image

from provider.jpeg_markers import JpegStructure

__all__ = ["decode_sequential_jpeg"]

_SEQUENTIAL_HUFFMAN: Final = frozenset({0xC0, 0xC1})  # SOF0 baseline, SOF1 extended
_RGB: Final = getattr(cv2, "IMREAD_COLOR_RGB", None)
_REDUCED_BITS: Final = {1: 0, 2: 16, 4: 32, 8: 64}  # the IMREAD_REDUCED_* scale bits
_ORIENTATION_TAG: Final = 0x0112


def decode_sequential_jpeg(
    data: bytes | bytearray,
    im: Image.Image,
    full_size: tuple[int, int],
    structure: JpegStructure,
    shrink_to: int | None,
) -> np.ndarray | None:
    """The (H, W, 3) uint8 RGB pixels Pillow would give for ``im``, or ``None`` to let
    Pillow decode.

    Args:
        data: the whole file, already checked by ``check_jpeg_markers`` (``structure``).
        im: the file opened by Pillow (not loaded), after any ``draft`` call.
        full_size: the frame's size before ``draft``.
        structure: what the markers said.
        shrink_to: ``decode_image``'s ``min_side`` when it shrinks after decoding, else
            ``None``.
    """
    if (
        _RGB is None
        or structure.frame not in _SEQUENTIAL_HUFFMAN
        or not structure.complete
        or im.mode not in ("RGB", "L")
    ):
        return None
    scale = _dct_scale(full_size, im.size)
    if scale is None or (shrink_to and min(im.size) // shrink_to >= 2):
        return None
    flags = _RGB | _REDUCED_BITS[scale] | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
    if pixels is None or pixels.shape != (im.size[1], im.size[0], 3):
        return None
    return _oriented(pixels, _orientation(im))


def _dct_scale(full: tuple[int, int], drafted: tuple[int, int]) -> int | None:
    """The 1/n scale Pillow's ``draft`` chose, from the two sizes (ceil division)."""
    for n in _REDUCED_BITS:
        if (math.ceil(full[0] / n), math.ceil(full[1] / n)) == drafted:
            return n
    return None


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation Pillow's ``exif_transpose`` would apply (1: none)."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # malformed EXIF: Pillow's path keeps the image as stored
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def _oriented(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 2-8 as ``ImageOps.exif_transpose`` does; C-contiguous."""
    if orientation == 1:
        return a
    turned = {
        2: lambda: a[:, ::-1],  # FLIP_LEFT_RIGHT
        3: lambda: a[::-1, ::-1],  # ROTATE_180
        4: lambda: a[::-1],  # FLIP_TOP_BOTTOM
        5: lambda: a.transpose(1, 0, 2),  # TRANSPOSE
        6: lambda: np.rot90(a, -1),  # ROTATE_270 (Pillow's angles are anticlockwise)
        7: lambda: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
        8: lambda: np.rot90(a, 1),  # ROTATE_90
    }[orientation]()
    return np.ascontiguousarray(turned)
