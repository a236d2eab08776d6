"""Scan bombs and marker abuse are rejected before decoding; slow decodes stop on budget.

Every bomb is built in the test from a real progressive JPEG (``tests/scan_bomb.py``).
"""

from __future__ import annotations

import io
import json
import time

import pytest
from PIL import Image

from provider.cli import main
from provider.decode_deadline import DEFAULT_DECODE_BUDGET_S
from provider.errors import CorruptImage, ImageTooComplex, ImageTooLarge
from provider.imageio import decode_image
from provider.jpeg_markers import MAX_SCANS, MAX_SEGMENTS, check_jpeg_markers
from tests.scan_bomb import PHOTO, progressive_jpeg, scan_bomb, scan_count


def test_a_legit_progressive_jpeg_passes_and_decodes():
    jpeg = progressive_jpeg(1024)
    structure = check_jpeg_markers(jpeg)
    assert structure.progressive and structure.complete
    assert structure.scans == scan_count(jpeg) == 10  # libjpeg's default colour script
    image = decode_image(jpeg)
    assert image.shape == (1024, 1024, 3)
    assert 60 < image.mean() < 200  # a photo, not a blank frame


def test_a_baseline_jpeg_with_restart_markers_has_one_scan():
    buf = io.BytesIO()
    Image.open(PHOTO).save(buf, "JPEG", restart_marker_blocks=1)  # RSTn every block
    data = buf.getvalue()
    assert data.count(b"\xff\xd0") > 10  # restart markers inside the entropy-coded data
    structure = check_jpeg_markers(data)
    assert (structure.scans, structure.progressive, structure.complete) == (1, False, True)
    assert decode_image(data).shape[2] == 3


def test_the_scan_limit_is_exact():
    at_limit = scan_bomb(MAX_SCANS - 10)
    assert check_jpeg_markers(at_limit).scans == MAX_SCANS
    assert decode_image(at_limit).shape == (1024, 1024, 3)  # repeated scans are still valid
    with pytest.raises(ImageTooComplex):
        check_jpeg_markers(scan_bomb(MAX_SCANS - 9))


def test_a_scan_bomb_is_rejected_before_decoding():
    bomb = scan_bomb(10_000)  # ~14 MB, under the 20 MiB limit
    assert scan_count(bomb) == 10_010
    cpu = time.thread_time()
    with pytest.raises(ImageTooComplex) as info:
        decode_image(bomb)
    elapsed = time.thread_time() - cpu
    assert info.value.code == "too_complex"
    assert isinstance(info.value, ImageTooLarge)  # callers that handle "too large" handle it
    assert info.value.message == (
        f"That image is too complex to decode (it has more than {MAX_SCANS} scans)."
    )
    assert elapsed < 0.5  # the markers only: decoding this bomb takes tens of seconds


def test_a_slow_decode_stops_at_its_budget(monkeypatch):
    """The second line: with the marker check switched off, the decode budget still stops a
    bomb that libjpeg alone takes ~10 s of CPU to decode on the development machine."""
    import provider.imageio as imageio

    monkeypatch.setattr(imageio, "check_jpeg_markers", lambda data: None)
    bomb = scan_bomb(4000, side=6000)
    cpu = time.thread_time()
    with pytest.raises(ImageTooComplex) as info:
        decode_image(bomb)
    elapsed = time.thread_time() - cpu
    assert "takes more than 1.5 s" in info.value.message
    assert DEFAULT_DECODE_BUDGET_S <= elapsed < DEFAULT_DECODE_BUDGET_S + 1.0


def test_no_budget_means_no_deadline_for_a_small_bomb(monkeypatch):
    import provider.imageio as imageio

    monkeypatch.setattr(imageio, "check_jpeg_markers", lambda data: None)
    assert decode_image(scan_bomb(300), decode_budget_s=None).shape == (1024, 1024, 3)
    with pytest.raises(ImageTooComplex):
        decode_image(scan_bomb(300), decode_budget_s=0.0)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def test_a_flood_of_comment_segments_is_rejected():
    jpeg = progressive_jpeg(256)
    flood = jpeg[:2] + _segment(0xFE, b"x") * (MAX_SEGMENTS + 1) + jpeg[2:]
    with pytest.raises(ImageTooComplex, match="metadata blocks"):
        decode_image(flood)
    fine = jpeg[:2] + _segment(0xFE, b"x") * 50 + jpeg[2:]
    assert decode_image(fine).shape == (256, 256, 3)


def test_a_second_frame_header_is_corrupt():
    jpeg = progressive_jpeg(256)
    sof = next(jpeg.find(bytes([0xFF, m])) for m in (0xC2, 0xC0) if bytes([0xFF, m]) in jpeg)
    length = int.from_bytes(jpeg[sof + 2 : sof + 4], "big")
    doubled = jpeg[:sof] + jpeg[sof : sof + 2 + length] + jpeg[sof:]
    with pytest.raises(CorruptImage, match="more than one frame header"):
        decode_image(doubled)


def test_a_segment_length_below_two_is_corrupt():
    jpeg = progressive_jpeg(256)
    with pytest.raises(CorruptImage, match="invalid length"):
        decode_image(jpeg[:2] + b"\xff\xfe\x00\x01" + jpeg[2:])


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_a_truncated_bomb_or_file_is_left_to_the_decoder(cut):
    jpeg = progressive_jpeg(512)
    truncated = jpeg[: int(len(jpeg) * cut)]
    assert not check_jpeg_markers(truncated).complete
    with pytest.raises(CorruptImage):
        decode_image(truncated)
    bomb = scan_bomb(5000, side=256)
    with pytest.raises(ImageTooComplex):  # the scans before the cut already count
        decode_image(bomb[: int(len(bomb) * cut)])


def test_garbage_and_fill_bytes_between_segments_are_skipped_like_libjpeg():
    jpeg = progressive_jpeg(256)
    after_app0 = 4 + int.from_bytes(jpeg[4:6], "big")
    assert jpeg[2:4] == b"\xff\xe0"
    padded = jpeg[:after_app0] + b"\x00\x13\x37" + b"\xff" * 5 + jpeg[after_app0:]
    assert check_jpeg_markers(padded).scans == 10
    assert decode_image(padded).shape == (256, 256, 3)


def test_predict_cli_answers_a_bomb_with_a_clear_error_and_still_classifies(
    small_model, held_out, tmp_path, capsys
):
    bomb_path = tmp_path / "bomb.jpg"
    bomb_path.write_bytes(scan_bomb(10_000))
    good = held_out[0]
    started = time.monotonic()
    code = main(["--json", "predict", "--model", str(small_model.path), str(bomb_path), str(good)])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 2  # some input was rejected
    assert lines[0] == {
        "path": str(bomb_path),
        "error": {
            "code": "too_complex",
            "message": f"That image is too complex to decode (it has more than {MAX_SCANS} scans).",
        },
    }
    assert lines[1]["label"] == good.parent.name
    assert "Traceback" not in err
    assert elapsed < 30  # loose: unbounded, this bomb alone decodes for tens of seconds
