"""The OpenCV fast path of decode_image gives Pillow's pixels exactly, or declines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from provider import imageio, jpeg_opencv
from provider.errors import CorruptImage
from provider.imageio import decode_image
from tests.provider.conftest import PACKAGED, SHARED_FLOWERS

PHOTOS = sorted(PACKAGED.glob("*/*.jpg"))


def pillow_only(src: bytes, **kwargs) -> np.ndarray:
    """decode_image with the fast path switched off: what Pillow alone gives."""
    saved = imageio.decode_sequential_jpeg
    imageio.decode_sequential_jpeg = lambda *a, **k: None
    try:
        return decode_image(src, **kwargs)
    finally:
        imageio.decode_sequential_jpeg = saved


@pytest.fixture
def fast_calls(monkeypatch) -> list[bool]:
    """Records, per decode, whether the fast path answered (True) or declined."""
    calls: list[bool] = []
    real = jpeg_opencv.decode_sequential_jpeg

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(imageio, "decode_sequential_jpeg", spy)
    return calls


def jpeg(im: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **params)
    return buf.getvalue()


def photo(size: tuple[int, int] = (1001, 777), mode: str = "RGB") -> Image.Image:
    """A real photo resized to ``size`` (odd sizes exercise the partial DCT blocks)."""
    return Image.open(PHOTOS[0]).convert(mode).resize(size)


def assert_same(src: bytes, fast_calls: list[bool], **kwargs) -> np.ndarray:
    got = decode_image(src, **kwargs)
    assert fast_calls[-1] is True, "the fast path declined"
    expected = pillow_only(src, **kwargs)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8 and got.flags.c_contiguous and got.flags.writeable
    return got


@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
@pytest.mark.parametrize("quality", [30, 95])
def test_colour_jpegs_decode_to_pillows_pixels(fast_calls, subsampling, quality):
    assert_same(jpeg(photo(), subsampling=subsampling, quality=quality), fast_calls)


def test_grayscale_jpeg_becomes_the_same_grey_rgb(fast_calls):
    got = assert_same(jpeg(photo(mode="L")), fast_calls)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_like_pillow(fast_calls, orientation):
    im = photo((301, 199))
    exif = Image.Exif()
    exif[0x0112] = orientation
    got = assert_same(jpeg(im, exif=exif.tobytes()), fast_calls)
    assert got.shape[:2] == ((199, 301) if orientation < 5 else (301, 199))


@pytest.mark.parametrize("size", [(3000, 2200), (2201, 3001), (6001, 4003)])
def test_dct_scaled_decodes_match_pillows_draft(fast_calls, size):
    src = jpeg(photo(size), quality=90)
    got = assert_same(src, fast_calls, min_side=256, shrink=True)
    assert 256 <= min(got.shape[:2]) < 512


def test_packaged_photos_decode_identically(fast_calls):
    for path in PHOTOS[::20]:
        assert_same(path.read_bytes(), fast_calls, min_side=256, shrink=True)
    assert len(fast_calls) >= 50


def test_all_of_flowers17_decodes_identically_when_available(fast_calls):
    paths = sorted(SHARED_FLOWERS.glob("*/*.jpg"))[::7]
    if not paths:
        pytest.skip("the shared FLOWERS17 copy is not here (the packaged photos cover it)")
    for path in paths:
        assert_same(path.read_bytes(), fast_calls, min_side=256, shrink=True)


@pytest.mark.parametrize(
    "case",
    ["progressive", "cmyk", "shrunk after the draft"],
)
def test_it_declines_what_could_differ_and_pillow_decodes_it(fast_calls, case):
    kwargs: dict = {}
    if case == "progressive":
        src = jpeg(photo(), progressive=True)
    elif case == "cmyk":
        src = jpeg(photo(mode="CMYK"))
    else:  # shorter side 5000: 1/8 leaves 625 >= 2 * 256, Pillow's box filter follows
        src = jpeg(photo((5000, 5200)), quality=50)
        kwargs = {"min_side": 256, "shrink": True}
    got = decode_image(src, **kwargs)
    assert fast_calls == [False]
    np.testing.assert_array_equal(got, pillow_only(src, **kwargs))


@pytest.mark.parametrize("cut", ["half", "end marker only"])
def test_a_truncated_baseline_jpeg_is_still_rejected_as_damaged(fast_calls, cut):
    """OpenCV would fill missing rows with grey; Pillow (which decides) rejects the file."""
    src = jpeg(photo())
    with pytest.raises(CorruptImage):
        decode_image(src[: len(src) // 2] if cut == "half" else src[:-2])
    assert fast_calls == [False]


def test_damaged_scan_data_gets_the_same_answer_on_both_paths(fast_calls):
    src = bytearray(jpeg(photo(), quality=80))
    middle = len(src) // 2
    src[middle : middle + 400] = bytes(range(200)) * 2  # garbage in the entropy-coded data
    try:
        expected: np.ndarray | type[Exception] = pillow_only(bytes(src))
    except CorruptImage:
        expected = CorruptImage
    if expected is CorruptImage:
        with pytest.raises(CorruptImage):
            decode_image(bytes(src))
    else:
        np.testing.assert_array_equal(decode_image(bytes(src)), expected)
