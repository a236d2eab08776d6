"""Tests of provider.imageio: every supported format, every rejection, the bomb guard."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from provider.errors import CorruptImage, EmptyImage, ImageError, ImageTooLarge, NotAnImage
from provider.imageio import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    decode_image,
    sniff_format,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


# ---------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def photo_like(width: int = 500, height: int = 375) -> Image.Image:
    """A deterministic RGB image with gradients and noise (compresses like a photo)."""
    rng = np.random.default_rng(17)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    noise = rng.integers(-20, 21, size=base.shape)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def raw_png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG file from an IHDR description and already-compressed IDAT data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png16(pixels: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG (big-endian samples) of an (H, W, C) uint16 array, filter 0 per row."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    return raw_png(width, height, 16, color_type, zlib.compress(raw))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of side x side pixels, all black, of a few tens of KB.

    Built row by row with a streaming compressor so the test never holds the pixels.
    """
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    return raw_png(side, side, 1, 0, idat)


def assert_user_message(err: ImageError, code: str, *, secret: str | None = None) -> None:
    """The error has the expected stable code and a short, plain sentence for a user."""
    assert err.code == code
    message = str(err)
    assert message == err.message
    assert message.startswith("That ") and message.endswith(".")
    assert len(message) < 120
    for jargon in ("Traceback", "PIL", "Errno", "cannot identify", "truncated", " at 0x", "\\x"):
        assert jargon not in message
    if secret is not None:
        assert secret not in message


# ---------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("fmt", "params", "expected"),
    [
        ("JPEG", {}, "jpeg"),
        ("PNG", {}, "png"),
        ("GIF", {}, "gif"),
        ("WEBP", {}, "webp"),
        ("BMP", {}, "bmp"),
        ("TIFF", {}, "tiff"),
        ("TIFF", {"big_tiff": True}, "tiff"),
    ],
)
def test_sniff_format_recognises_each_supported_format(fmt, params, expected):
    data = encode(Image.new("RGB", (8, 8), RED), fmt, **params)
    assert sniff_format(data) == expected


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"hello, world", b"BM not really a bitmap header", b"RIFF\0\0\0\0WAVE"],
)
def test_sniff_format_returns_none_for_other_bytes(data):
    assert sniff_format(data) is None


def test_sniff_format_ignores_pillow_formats_we_do_not_accept():
    assert sniff_format(encode(Image.new("RGB", (8, 8)), "ICO")) is None
    assert sniff_format(encode(Image.new("RGB", (8, 8)), "PPM")) is None


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP", "GIF"])
def test_lossless_formats_decode_exact_pixels(fmt):
    pixels = np.zeros((6, 10, 3), np.uint8)
    pixels[:, :5] = RED
    pixels[:, 5:] = BLUE
    params = {"lossless": True} if fmt == "WEBP" else {}
    out = decode_image(encode(Image.fromarray(pixels), fmt, **params))
    np.testing.assert_array_equal(out, pixels)


def test_jpeg_decodes_to_contiguous_writable_rgb_uint8():
    src = photo_like()
    out = decode_image(encode(src, "JPEG", quality=90))
    assert out.shape == (375, 500, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"] and out.flags["WRITEABLE"]
    # Lossy (the source is full of pixel noise), but close to it on average ...
    assert np.abs(out.astype(int) - np.asarray(src, int)).mean() < 12
    # ... and in RGB, not BGR, order: red grows to the right, green downwards.
    assert out[:, :20, 0].mean() < 40 and out[:, -20:, 0].mean() > 215
    assert out[:20, :, 1].mean() < 40 and out[-20:, :, 1].mean() > 215
    out[0, 0] = 0  # callers may modify the array in place


def test_grayscale_png_becomes_three_equal_channels():
    gray = np.array([[0, 64, 128, 255]], np.uint8)
    out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"))
    assert out.shape == (1, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


def test_one_bit_png_decodes_black_and_white():
    im = Image.new("1", (4, 2), 0)
    im.putpixel((1, 0), 1)
    out = decode_image(encode(im, "PNG"))
    assert tuple(out[0, 1]) == WHITE and tuple(out[0, 0]) == (0, 0, 0)


def test_16bit_grayscale_png_is_scaled_not_clipped():
    values = np.array([[0, 300, 100 * 257, 65535]], np.uint16)
    data = png16(values[..., np.newaxis], color_type=0)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 100, 255])  # clipping would give 255
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgba_png_values_and_alpha_over_white():
    pixels = np.array(
        [
            [
                [65535, 128 * 257, 0, 65535],  # opaque orange
                [0, 0, 0, 0],  # fully transparent -> white
                [0, 0, 0, 128 * 257],  # half-transparent black -> mid gray
                [0, 0, 65535, 65535],  # opaque blue
            ]
        ],
        np.uint16,
    )
    out = decode_image(png16(pixels, color_type=6))
    assert tuple(out[0, 0]) == (255, 128, 0)
    assert tuple(out[0, 1]) == WHITE
    assert all(abs(int(v) - 127) <= 1 for v in out[0, 2])
    assert tuple(out[0, 3]) == BLUE


def test_16bit_gray_alpha_png_over_white():
    pixels = np.array([[[200 * 257, 65535], [50 * 257, 0]]], np.uint16)
    out = decode_image(png16(pixels, color_type=4))
    assert tuple(out[0, 0]) == (200, 200, 200)
    assert tuple(out[0, 1]) == WHITE


def test_32bit_integer_tiff_is_taken_as_16_bit():
    values = np.array([[0, 100 * 257, 70_000]], np.int32)
    out = decode_image(encode(Image.fromarray(values, "I"), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 1], [0, 100, 255])


def test_rgba_png_is_composited_over_white_not_black():
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (0, 0, 0, 0)
    rgba[0, 2] = (0, 0, 0, 128)
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == RED
    assert tuple(out[0, 1]) == WHITE
    assert all(abs(int(v) - 127) <= 1 for v in out[0, 2])


def test_la_png_is_composited_over_white():
    la = np.array([[[10, 255], [10, 0]]], np.uint8)
    out = decode_image(encode(Image.fromarray(la, "LA"), "PNG"))
    assert tuple(out[0, 0]) == (10, 10, 10)
    assert tuple(out[0, 1]) == WHITE


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_white_where_transparent(fmt):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    out = decode_image(encode(im, fmt, transparency=1))
    assert tuple(out[0, 0]) == RED
    assert tuple(out[0, 1]) == WHITE


def test_palette_without_transparency():
    im = Image.new("RGB", (4, 4), GREEN).convert("P")
    out = decode_image(encode(im, "PNG"))
    assert out.shape == (4, 4, 3)
    assert (out == GREEN).all()


def test_cmyk_jpeg_decodes_to_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.shape == (16, 16, 3)
    r, g, b = (int(v) for v in out.reshape(-1, 3).mean(axis=0))
    assert r > 230 and g < 30 and b < 30


def test_exif_orientation_6_is_applied():
    # Stored 40 wide x 20 high, left half red; orientation 6 = rotate 90 degrees clockwise.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = RED
    pixels[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif))
    assert out.shape == (40, 20, 3)  # (H, W): rotated
    assert out[5, :, 0].mean() > 200 and out[5, :, 2].mean() < 50  # top is the red half
    assert out[35, :, 2].mean() > 200 and out[35, :, 0].mean() < 50  # bottom is blue


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert out.shape == (8, 8, 3)
    assert (out == RED).all()


def test_animated_webp_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (GREEN, RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode_image(data)
    assert (out == GREEN).all()


def test_multipage_tiff_gives_first_page():
    pages = [Image.new("RGB", (6, 4), BLUE), Image.new("RGB", (3, 3), RED)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode_image(data)
    assert out.shape == (4, 6, 3)
    assert (out == BLUE).all()


@pytest.mark.parametrize("as_type", [str, Path])
def test_path_input(tmp_path, as_type):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (7, 3), GREEN), "PNG"))
    out = decode_image(as_type(path))
    assert out.shape == (3, 7, 3)
    assert (out == GREEN).all()


def test_bytearray_and_memoryview_input():
    data = encode(Image.new("RGB", (2, 2), RED), "PNG")
    assert (decode_image(bytearray(data)) == RED).all()
    assert (decode_image(memoryview(data)) == RED).all()


def test_wrong_argument_type_is_a_programming_error():
    with pytest.raises(TypeError):
        decode_image(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------- rejections


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(EmptyImage) as info:
        decode_image(b"")
    assert str(info.value) == "That file is empty."
    assert_user_message(info.value, "empty")
    empty = tmp_path / "empty.jpg"
    empty.touch()
    with pytest.raises(EmptyImage):
        decode_image(empty)


def test_text_renamed_png_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my holiday notes, definitely not pixels\n")
    with pytest.raises(NotAnImage) as info:
        decode_image(path)
    assert str(info.value) == "That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF)."
    assert_user_message(info.value, "not_an_image", secret=str(tmp_path))


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(NotAnImage) as info:
        decode_image(data)
    assert_user_message(info.value, "not_an_image")


def test_nonexistent_path_names_nothing(tmp_path):
    secret = tmp_path / "secret-folder" / "missing.jpg"
    with pytest.raises(NotAnImage) as info:
        decode_image(secret)
    assert str(info.value) == "That file does not exist or could not be read."
    assert_user_message(info.value, "unreadable", secret="secret-folder")


def test_directory_path_is_rejected(tmp_path):
    with pytest.raises(NotAnImage) as info:
        decode_image(tmp_path)
    assert_user_message(info.value, "unreadable", secret=str(tmp_path))


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_in_half_is_corrupt(progressive):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = encode(photo_like(), "JPEG", quality=90, progressive=progressive)
    with pytest.raises(CorruptImage) as info:
        decode_image(data[: len(data) // 2])
    assert str(info.value) == "That image is damaged or incomplete."
    assert_user_message(info.value, "corrupt")


def test_jpeg_missing_only_its_end_marker_is_corrupt():
    data = encode(photo_like(64, 48), "JPEG")
    with pytest.raises(CorruptImage):
        decode_image(data[:-2])


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_other_formats_cut_in_half_are_corrupt(fmt):
    data = encode(photo_like(64, 48), fmt)
    with pytest.raises(CorruptImage) as info:
        decode_image(data[: len(data) // 2])
    assert_user_message(info.value, "corrupt")


def test_magic_bytes_followed_by_garbage_is_corrupt():
    with pytest.raises(CorruptImage) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    assert_user_message(info.value, "corrupt")


def test_zero_width_header_is_corrupt():
    data = raw_png(0, 100, 8, 0, zlib.compress(b""))
    with pytest.raises(CorruptImage) as info:
        decode_image(data)
    assert_user_message(info.value, "corrupt")


def test_png_bomb_is_rejected_from_the_header_without_decoding(monkeypatch, tmp_path):
    data = bomb_png(20_000)
    assert len(data) < 200_000  # tiny file ...
    assert struct.unpack(">II", data[16:24]) == (20_000, 20_000)  # ... claiming 400 MP
    # Turn Pillow's own global guard off: the per-call limit alone must stop it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data)
    elapsed = time.perf_counter() - start
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(info.value) == (
        "That image is too large (20000x20000 pixels; the limit is 40 megapixels)."
    )
    assert_user_message(info.value, "too_large")
    assert elapsed < 1.0
    assert peak_traced < 10 * 2**20  # Python-side allocations
    # C-side memory, in a fresh interpreter: ru_maxrss is a process high-water mark, which
    # other tests of this session (the network, ~340 MB) may already have raised.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_RSS_SCRIPT, str(bomb)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rss_before_kib, rss_after_kib = map(int, proc.stdout.split())
    assert rss_after_kib - rss_before_kib < 100 * 1024  # C-side: decoding needs >= 400 MB
    assert rss_after_kib < 400 * 1024


_BOMB_RSS_SCRIPT = """
import re, sys
from PIL import Image
from provider.errors import ImageTooLarge
from provider.imageio import decode_image

def peak_rss_kib():
    # VmHWM is this process's own peak; ru_maxrss would include the parent's (fork).
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))

Image.MAX_IMAGE_PIXELS = None
data = open(sys.argv[1], "rb").read()
before = peak_rss_kib()
try:
    decode_image(data)
except ImageTooLarge:
    print(before, peak_rss_kib())
else:
    sys.exit("the bomb was decoded")
"""


def test_pixel_limit_is_per_call():
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data, max_pixels=5_000)
    assert str(info.value) == (
        "That image is too large (100x100 pixels; the limit is 0.005 megapixels)."
    )


def test_pillow_decompression_bomb_error_becomes_image_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow errors above 2x this
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data)
    assert_user_message(info.value, "too_large")


def test_pillow_decompression_bomb_warning_as_error_becomes_image_too_large(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # warning between 6k and 12k px
    data = encode(Image.new("RGB", (100, 100), RED), "PNG")
    with pytest.warns(Image.DecompressionBombWarning):
        assert decode_image(data).shape == (100, 100, 3)  # within our own limit: a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLarge) as info:
            decode_image(data)
    assert_user_message(info.value, "too_large")


def test_over_max_bytes_bytes():
    data = encode(photo_like(64, 48), "PNG")
    assert len(data) > 2048
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data, max_bytes=2048)
    assert str(info.value).startswith("That file is too large (")
    assert str(info.value).endswith("KB; the limit is 2 KB).")
    assert_user_message(info.value, "too_large")


def test_over_max_bytes_path_is_rejected_before_reading(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as fh:  # sparse: 25 MiB on paper, a few bytes on disk
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(25 * 2**20)
    assert os.path.getsize(path) > DEFAULT_MAX_BYTES
    tracemalloc.start()
    with pytest.raises(ImageTooLarge) as info:
        decode_image(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(info.value) == "That file is too large (25 MB; the limit is 20 MB)."
    assert peak < 2**20  # reading it would have allocated 20+ MiB


def test_defaults():
    assert DEFAULT_MAX_BYTES == 20 * 2**20
    assert DEFAULT_MAX_PIXELS == 40_000_000


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL")  # Pillow's notes on broken TIFF tags
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_damaged_inputs_only_ever_raise_image_errors(fmt):
    """Seeded fuzzing: truncations and byte flips either decode or raise an ImageError."""
    data = bytearray(encode(photo_like(48, 32), fmt))
    rng = np.random.default_rng(len(data))
    variants = [bytes(data[: int(n)]) for n in rng.integers(1, len(data), 15)]
    for _ in range(25):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(damaged), 4):
            damaged[int(pos)] = int(rng.integers(0, 256))
        variants.append(bytes(damaged))
    for variant in variants:
        try:
            out = decode_image(variant)
        except ImageError as err:
            assert_user_message(err, err.code)
        else:
            assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


def test_decoder_reads_opencv_written_files(tmp_path):
    bgr = np.zeros((5, 5, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    path = tmp_path / "cv.jpg"
    assert cv2.imwrite(str(path), bgr)
    out = decode_image(path)
    assert out[..., 0].min() > 240 and out[..., 2].max() < 15
