"""Memory bounds of decoding (issue 9, finding 2): maximum-size images are reduced right
after decoding and decoded within a pixel budget. Peak RSS is measured in a fresh process
(``resource.getrusage``), with big images generated here (nothing large is committed)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from provider.extraction import PixelBudget
from provider.features import cnn
from provider.imageio import DEFAULT_MAX_PIXELS, decode_image, decoded_pixels

SIDE = 6324  # 6324 x 6324 = 39.99 megapixels, just under the 40 MP limit
MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Maximum-size images in the formats that decode to the largest buffers."""
    out = tmp_path_factory.mktemp("big")
    rgba = Image.new("RGBA", (SIDE, SIDE), (30, 120, 40, 200))
    draw = ImageDraw.Draw(rgba)
    for i in range(0, SIDE, 400):
        draw.ellipse((i, i, i + 900, i + 600), fill=(230, 200, 20, 255))
    paths = {
        "rgba.png": out / "rgba.png",
        "float.tif": out / "float.tif",
        "gray16.png": out / "gray16.png",
        "palette.gif": out / "palette.gif",
        "photo.jpg": out / "photo.jpg",
    }
    rgba.save(paths["rgba.png"], compress_level=9)
    del rgba, draw
    Image.new("F", (SIDE, SIDE), 0.5).save(paths["float.tif"], compression="tiff_adobe_deflate")
    Image.new("I;16", (SIDE, SIDE), 30000).save(paths["gray16.png"], compress_level=9)
    Image.new("P", (SIDE, SIDE), 3).save(paths["palette.gif"])
    Image.new("RGB", (SIDE, SIDE), (200, 30, 60)).save(paths["photo.jpg"], quality=80)
    assert paths["rgba.png"].stat().st_size < 400_000  # small files, huge images
    return paths


def _peak_rss_mb(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` as the only child of a fresh Python; its peak RSS in MB (ru_maxrss)."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([peak, p.returncode, p.stdout, p.stderr]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, timeout=600
    )
    peak_kb, code, out, err = json.loads(done.stdout)
    return peak_kb / 1024, subprocess.CompletedProcess(argv, code, out, err)


def test_predict_of_eight_maximum_size_pngs_stays_under_800_mb(big_images, small_model):
    """Was 1.86 GB (issue 9): every image decoded at full size and all held at once."""
    files = [str(big_images["rgba.png"])] * 8
    cli = [sys.executable, "-m", "provider.cli", "predict", "--model", str(small_model.path)]
    peak, done = _peak_rss_mb([*cli, "--json", *files])
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 8 and all("label" in line for line in lines)
    print(f"predict of 8 x 40 MP RGBA PNGs: peak RSS {peak:.0f} MB")
    assert peak <= 800, f"peak RSS {peak:.0f} MB"


WORKER = """
import json, sys
from golem_backend import child
model, files = sys.argv[1], sys.argv[2:]
child.init_worker(model, 1)
info = child.describe(model)
sources = [open(f, "rb").read() for f in files]
_, _, outcomes = child.classify_batch(model, info["model_id"], sources, 3, 40_000_000)
print(json.dumps({
    "kinds": [type(o).__name__ for o in outcomes],
}))
"""


def test_local_worker_under_a_mix_of_maximum_size_inputs_stays_under_600_mb(
    big_images, small_model
):
    """A local backend worker process (golem_backend.child, one thread) classifying one
    batch of the largest images of every heavy kind (twice over)."""
    files = [str(p) for p in big_images.values()] * 2
    # Measured as the child of a small wrapper: Linux keeps ru_maxrss across exec, so a
    # process forked straight from pytest (1 GB after the network tests) would report
    # pytest's size, not its own.
    peak, done = _peak_rss_mb([sys.executable, "-c", WORKER, str(small_model.path), *files])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["kinds"] == ["Prediction"] * len(files)
    print(f"local worker, {len(files)} maximum-size inputs: peak RSS {peak:.0f} MB")
    assert peak <= 600, f"peak RSS {peak:.0f} MB"


def test_shrinking_in_the_decoder_matches_reducing_the_full_image(big_images):
    """Decoder-side box shrink, then the network's reduce: the same crop, to within
    rounding, as reducing the fully decoded image (transparency composited over white)."""
    path = big_images["rgba.png"]
    full = decode_image(path)
    shrunk = decode_image(path, min_side=cnn.RESIZE_SHORTER, shrink=True)
    assert min(shrunk.shape[:2]) >= cnn.RESIZE_SHORTER
    assert shrunk.shape[0] * shrunk.shape[1] * 50 < full.shape[0] * full.shape[1]
    want = cnn.preprocess(full).astype(int)
    got = cnn.preprocess(cnn.reduce_for_network(shrunk)).astype(int)
    assert np.abs(got - want).mean() < 2.0
    assert np.percentile(np.abs(got - want), 99) <= 12


def test_transparent_pixels_hidden_colour_does_not_bleed_when_shrinking(tmp_path):
    """A half fully-transparent (but red underneath) image: shrunk premultiplied, the
    transparent half is white, as in the full-size composite."""
    rgba = np.zeros((1200, 1200, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere ...
    rgba[:, 600:, 3] = 255  # ... but visible on the right half only
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    shrunk = decode_image(tmp_path / "half.png", min_side=256, shrink=True)
    left, right = shrunk[:, : shrunk.shape[1] // 2 - 2], shrunk[:, shrunk.shape[1] // 2 + 2 :]
    assert np.all(left == 255)  # white
    assert np.all(right == (255, 0, 0))


def test_decoded_pixels_reads_the_header_only(big_images, tmp_path):
    assert decoded_pixels(big_images["rgba.png"]) == SIDE * SIDE
    # A JPEG decodes at the DCT scale the network's side allows: 1/8 here.
    assert decoded_pixels(big_images["photo.jpg"], cnn.RESIZE_SHORTER) == (SIDE // 8) ** 2
    assert decoded_pixels(b"not an image") == 0
    assert decoded_pixels(big_images["rgba.png"].read_bytes()[:40]) == 0  # truncated header
    assert decoded_pixels(tmp_path) == 0  # a directory is never opened


def test_pixel_budget_lets_small_images_overlap_and_big_ones_run_alone():
    budget = PixelBudget(limit=DEFAULT_MAX_PIXELS)
    running, peak, lock = [0], [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.take(pixels):
            with lock:
                running[0] += pixels
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= pixels

    def run(sizes: list[int]) -> int:
        peak[0] = 0
        threads = [threading.Thread(target=decode, args=(n,)) for n in sizes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        return peak[0]

    assert run([30_000_000] * 4) == 30_000_000  # one at a time
    assert run([50_000_000, 10_000_000]) in (50_000_000, 10_000_000)  # above the limit: alone
    assert run([5_000_000] * 6) == 30_000_000  # small ones all at once
