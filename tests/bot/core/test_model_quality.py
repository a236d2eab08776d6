"""What /retrain and /status say a server can expect: the retrain's quality report, kept
only well-formed and bounded (whatever trained the model), and worded for members."""

from __future__ import annotations

import json

from bot.core.model_quality import (
    FIELD_CHARS,
    MAX_HINTS,
    MAX_LABELS,
    quality_lines,
    quality_of,
)
from bot.core.retraining import model_metrics
from golem_backend import TrainReport

GOOD = {
    "labels": ["chanterelle", "morel"],
    "cv_accuracy": 0.97,
    "accuracy": 0.9512,
    "unknown_rate": 0.016,
    "ece": 0.052,
    "per_label": {
        "chanterelle": {
            "images": 5,
            "recall": 0.8,
            "right": 0.8,
            "unknown_rate": 0.2,
            "confused_with": "morel",
            "add_photos": 5,
            "reason": "only 5 photos",
        },
        "morel": {
            "images": 12,
            "recall": 1.0,
            "right": 1.0,
            "unknown_rate": 0.0,
            "confused_with": None,
            "add_photos": 0,
            "reason": "",
        },
    },
    "hints": [{"label": "chanterelle", "add": 5, "reason": "only 5 photos"}],
    "temperature": 1.0,
    "thresholds": {"chanterelle": 0.4},
    "head_bytes": 12345,
}


def test_a_report_is_worded_as_a_server_can_read_it():
    quality = quality_of(GOOD)
    assert quality is not None
    fields = dict(quality_lines(quality))
    assert fields["Right on its labels"] == "95.1%"
    assert fields["Own photos answered unknown"] == "1.6%"
    assert fields["Calibration error"] == "5.2 points"
    assert fields["Recall per label (weakest first)"] == "chanterelle 80%, morel 100%"
    assert fields["To improve"] == "• add about 5 more photos of *chanterelle* (only 5 photos)"


def test_model_metrics_store_the_checked_quality_as_json():
    report = TrainReport(
        "m1", ("chanterelle", "morel"), 17, 0.97, 0.01, 1.0, extra={"quality": GOOD}
    )
    stored = json.loads(json.dumps(model_metrics(report)))
    again = quality_of(stored["quality"])
    assert again == quality_of(GOOD)
    assert "thresholds" not in stored["quality"]  # only what is shown is kept
    empty = TrainReport("m2", ("a",), 1, None, None, 1.0, extra={})
    assert "quality" not in model_metrics(empty)


def test_hostile_figures_are_left_out_never_shown():
    hostile = {
        "accuracy": float("nan"),
        "unknown_rate": 7.5,  # not a share
        "ece": True,  # a bool is not a number here
        "per_label": {
            "ok": {"images": 3, "recall": -0.1, "unknown_rate": float("inf")},
            "bad images": {"images": -1, "recall": 0.5},
            "str images": {"images": "3"},
            "not a mapping": [1, 2],
            7: {"images": 1, "recall": 0.5},  # a non-text label
            "x\n@everyone\n" + "y" * 500: {"images": 2, "recall": 0.5},
        },
        "hints": [
            "no",
            {"label": "ok", "add": 0, "reason": "nothing to add"},
            {"label": "ok", "add": 10**9, "reason": "too many"},
            {"label": None, "add": 3},
            {"label": "ok", "add": 3, "reason": ["not text"]},
        ],
    }
    quality = quality_of(hostile)
    assert quality is not None
    assert quality.accuracy is None and quality.unknown_rate is None and quality.ece is None
    assert set(quality.per_label) == {"ok", "x @everyone " + "y" * 108}
    assert quality.per_label["ok"].recall is None
    assert quality.per_label["ok"].unknown_rate is None
    [hint] = quality.hints
    assert (hint.label, hint.add, hint.reason) == ("ok", 3, "")
    fields = dict(quality_lines(quality))
    assert "Right on its labels" not in fields and "Calibration error" not in fields
    assert "\n" not in fields["Recall per label (weakest first)"]


def test_nothing_usable_is_no_quality():
    for raw in (None, {}, [], "quality", {"accuracy": "high"}, {"per_label": "all good"}):
        assert quality_of(raw) is None


def test_huge_reports_are_bounded():
    labels = {f"label{i:04d}": {"images": 2, "recall": 0.5} for i in range(5000)}
    hints = [{"label": f"label{i:04d}", "add": 8, "reason": "only 2 photos"} for i in range(5000)]
    quality = quality_of({"accuracy": 0.5, "per_label": labels, "hints": hints})
    assert quality is not None
    assert len(quality.per_label) == MAX_LABELS and len(quality.hints) == MAX_HINTS
    for name, value in quality_lines(quality):
        assert len(value) <= FIELD_CHARS, name
    assert sum(len(n) + len(v) for n, v in quality_lines(quality)) < 2000
