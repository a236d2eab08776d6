"""The confusion-matrix PNG and the CLI progress bar."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from provider.progress import ProgressBar
from provider.report import confusion_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable PNG"
    return image


def test_confusion_png_is_a_valid_png():
    matrix = np.array([[8, 1, 0], [0, 9, 0], [2, 0, 7]])
    png = confusion_png(matrix, ["daisy", "tulip", "iris"], title="cnn + lr: 88.9%")
    assert png.startswith(PNG_MAGIC)
    image = decode(png)
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 3 * 28 and image.shape[1] > 3 * 28
    assert (image < 250).any() and (image == 255).any()  # drawn cells on a white page


def test_confusion_png_grows_with_the_labels():
    """(With a few labels the footer, not the grid, sets the width: start from 8.)"""
    small = decode(confusion_png(np.eye(8, dtype=int) * 5, [f"label{i}" for i in range(8)]))
    labels = [f"label{i}" for i in range(17)]
    large = decode(confusion_png(np.eye(17, dtype=int) * 5, labels))
    assert large.shape[0] > small.shape[0] + 9 * 28 - 1
    assert large.shape[1] > small.shape[1] + 9 * 28 - 1


def test_confusion_png_shows_the_counts():
    labels = ["a", "b", "c", "d"]
    diagonal = decode(confusion_png(np.eye(4, dtype=int) * 9, labels))
    mixed = decode(confusion_png(np.full((4, 4), 9) - np.eye(4, dtype=int) * 9, labels))
    assert diagonal.shape == mixed.shape
    assert not np.array_equal(diagonal, mixed)


def test_confusion_png_title_and_odd_labels():
    matrix = np.zeros((2, 2), int)  # rows without any image: no division by zero
    labels = ["x" * 200, "löwenzahn"]
    plain = decode(confusion_png(matrix, labels))
    titled = decode(confusion_png(matrix, labels, title="a title"))
    assert titled.shape[0] > plain.shape[0]


def assert_nothing_drawn_at_the_edges(image: np.ndarray) -> None:
    """Text that runs off the canvas leaves ink on its last columns or rows."""
    assert (image[:, -3:] == 255).all(), "something is clipped at the right edge"
    assert (image[-3:] == 255).all(), "something is clipped at the bottom edge"
    assert (image[:3] == 255).all(), "something is clipped at the top edge"


def test_confusion_png_is_wide_enough_for_the_title_and_the_footer():
    """Two labels give a 119 px wide grid; the title and the footer need more than that."""
    title = "cnn + lr: 91.7% (4-fold CV)"
    footer = "rows: true label, columns: predicted"
    image = decode(confusion_png(np.array([[5, 1], [0, 6]]), ["daisy", "tulip"], title))
    font = cv2.FONT_HERSHEY_SIMPLEX  # the module's font and scales
    (title_w, title_h), _ = cv2.getTextSize(title, font, 0.55, 1)
    (footer_w, footer_h), _ = cv2.getTextSize(footer, font, 0.4, 1)
    assert image.shape[1] >= 6 + max(title_w, footer_w)
    assert image.shape[0] >= title_h + footer_h + 2 * 28
    assert_nothing_drawn_at_the_edges(image)


def test_confusion_png_with_17_labels_fits_everything():
    labels = [f"label number {i}" for i in range(17)]
    image = decode(confusion_png(np.eye(17, dtype=int) * 80, labels, "cnn + lr: 97.2% (5-fold CV)"))
    assert image.shape[0] > 17 * 28 and image.shape[1] > 17 * 28
    assert_nothing_drawn_at_the_edges(image)


@pytest.mark.parametrize(
    ("shape", "n_labels"), [((3, 3), 2), ((2, 3), 3), ((4,), 2), ((2, 2, 1), 2)]
)
def test_confusion_png_rejects_a_shape_mismatch(shape, n_labels):
    with pytest.raises(ValueError, match="does not match"):
        confusion_png(np.zeros(shape, int), [str(i) for i in range(n_labels)])


def test_progress_bar_draws_stages_and_finishes_lines():
    stream = io.StringIO()
    bar = ProgressBar(stream, enabled=True)
    bar("extracting features", 0, 10)
    bar("extracting features", 10, 10)
    bar("fitting", 1, 1)
    bar.close()
    text = stream.getvalue()
    assert "extracting features" in text and "10/10" in text and "fitting" in text
    assert "#" * 30 in text  # a full bar at 10/10
    assert text.endswith("\n")
    assert text.count("\n") == 2  # one per finished stage


def test_progress_bar_throttles_redraws_but_not_the_last():
    stream = io.StringIO()
    bar = ProgressBar(stream, enabled=True)
    for done in range(1001):
        bar("stage", done, 1000)
    text = stream.getvalue()
    assert text.count("\r") < 50
    assert "1000/1000" in text


def test_progress_bar_is_silent_when_disabled_or_not_a_terminal():
    stream = io.StringIO()  # not a tty: off by default
    bar = ProgressBar(stream)
    bar("stage", 1, 2)
    bar.close()
    ProgressBar(stream, enabled=False)("stage", 2, 2)
    assert stream.getvalue() == ""
