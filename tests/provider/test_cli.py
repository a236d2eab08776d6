"""``imageclassifier``: every command in-process through ``provider.cli.main`` and, for the
console script itself, as real subprocesses. Exit codes: 0 ok, 2 rejected input,
3 bad model, 4 bad dataset, 64 bad arguments, 1 internal error (never a traceback)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from provider.cli import main
from provider.estimators import CLASSIFIERS
from provider.evaluation import cross_validate
from provider.train import load_features
from tests.provider.conftest import LABELS, PER_LABEL, make_dataset

N_IMAGES = len(LABELS) * PER_LABEL
PREDICTION_KEYS = {"path", "label", "confidence", "top", "model_id", "ood_score"}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit through SystemExit
        code = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def cache(small_model, tmp_path) -> Path:
    return Path(shutil.copy(small_model.cache, tmp_path / "features.h5"))


@pytest.fixture
def bad_inputs(tmp_path, held_out) -> dict[str, Path]:
    jpeg = held_out[0].read_bytes()
    files = {
        "empty": tmp_path / "empty.jpg",
        "not_an_image": tmp_path / "notes.png",
        "corrupt": tmp_path / "half.jpg",
    }
    files["empty"].write_bytes(b"")
    files["not_an_image"].write_text("hello, I am text")
    files["corrupt"].write_bytes(jpeg[: len(jpeg) // 2])
    return files


@pytest.fixture
def flawed_dataset(tmp_path, small_model) -> Path:
    """small_dataset plus an empty file and a label with only 2 images (both reported)."""
    ds = shutil.copytree(small_model.dataset, tmp_path / "flawed")
    (ds / "daisy" / "broken.jpg").write_bytes(b"")
    return make_dataset(ds, ("crocus",), per_label=2)


@pytest.fixture
def one_image_label(tmp_path, small_model) -> Path:
    """small_dataset plus a label with a single image: cross-validation is impossible."""
    ds = shutil.copytree(small_model.dataset, tmp_path / "single")
    return make_dataset(ds, ("crocus",), per_label=1)


FLAWED_SKIPPED = "daisy/broken.jpg: That file is empty."
FLAWED_WARNING = "label 'crocus' has only 2 images (at least 5 advised)"
NO_CV = "some label has fewer than 2 images: accuracy was not measured"  # train's wording


class Terminal(io.StringIO):
    """A stderr that claims to be a terminal, so progress bars draw on it."""

    def isatty(self) -> bool:
        return True


# ---------------------------------------------------------------- train


def test_train_json_summary(tmp_path, small_model, cache, capsys):
    out_model = tmp_path / "cli.clf"
    code, out, _ = run(
        ["--json", "-q", "train", small_model.dataset, "--model", out_model, "--cache", cache,
         "--folds", "3"],
        capsys,
    )  # fmt: skip
    assert code == 0
    (summary,) = json_lines(out)
    assert summary["model"] == str(out_model) and out_model.is_file()
    assert summary["model_id"] == small_model.result.model_id  # same data, same model
    assert summary["labels"] == list(LABELS)
    assert summary["n_images"] == N_IMAGES
    assert summary["cached_images"] == N_IMAGES
    assert summary["accuracy"] == pytest.approx(small_model.result.accuracy)
    assert summary["accuracy_std"] == pytest.approx(small_model.result.accuracy_std)
    assert summary["duration_s"] >= 0
    assert summary["skipped"] == [] and summary["warnings"] == []


def test_train_text_output_reports_skipped_files(tmp_path, small_model, cache, capsys):
    ds = shutil.copytree(small_model.dataset, tmp_path / "ds")
    (ds / "daisy" / "broken.jpg").write_bytes(b"")
    out_model = tmp_path / "cli.clf"
    code, out, err = run(
        ["-q", "train", ds, "--model", out_model, "--cache", cache, "--folds", "0"], capsys
    )
    assert code == 0
    assert f"-> {out_model}" in out
    assert f"{N_IMAGES} images, {len(LABELS)} labels, accuracy not measured" in out
    assert "skipped daisy/broken.jpg: That file is empty." in err


# ---------------------------------------------------------------- predict


def test_predict_json_lines_for_good_images(small_model, held_out, capsys):
    images = held_out[::5]
    code, out, _ = run(["--json", "predict", "--model", small_model.path, *images], capsys)
    assert code == 0
    lines = json_lines(out)
    assert [line["path"] for line in lines] == [str(p) for p in images]
    for line, path in zip(lines, images, strict=True):
        assert set(line) == PREDICTION_KEYS
        assert line["label"] == path.parent.name
        assert line["model_id"] == small_model.result.model_id
        assert 0 < line["confidence"] <= 1
        assert len(line["top"]) == 3
        assert set(line["top"][0]) == {"label", "confidence"}
        assert line["top"][0] == {"label": line["label"], "confidence": line["confidence"]}


def test_predict_json_reports_rejected_inputs_in_place(
    small_model, held_out, bad_inputs, tmp_path, capsys
):
    missing = tmp_path / "missing.jpg"
    args = [held_out[0], bad_inputs["empty"], bad_inputs["not_an_image"], bad_inputs["corrupt"]]
    args += [missing, held_out[-1]]
    code, out, err = run(["--json", "predict", "--model", small_model.path, *args], capsys)
    assert code == 2
    lines = json_lines(out)
    assert [line["path"] for line in lines] == [str(a) for a in args]
    assert lines[0]["label"] == held_out[0].parent.name
    assert lines[-1]["label"] == held_out[-1].parent.name
    codes = [line["error"]["code"] for line in lines[1:5]]
    assert codes == ["empty", "not_an_image", "corrupt", "unreadable"]
    for line in lines[1:5]:
        assert set(line) == {"path", "error"}
        assert set(line["error"]) == {"code", "message"}
        assert line["error"]["message"].startswith("That ")
    assert err == ""


def test_predict_accepts_json_after_the_subcommand(small_model, held_out, capsys):
    """docs/architecture.md and the issue spell it ``predict --model M --json IMAGE...``."""
    code, out, err = run(["predict", "--model", small_model.path, "--json", held_out[0]], capsys)
    assert code == 0, err
    (line,) = json_lines(out)
    assert line["label"] == held_out[0].parent.name


def test_predict_text_output(small_model, held_out, tmp_path, bad_inputs, capsys):
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8))
    code, out, _ = run(
        ["predict", "--model", small_model.path, held_out[0], noise, bad_inputs["empty"]], capsys
    )
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"{held_out[0]}: {held_out[0].parent.name} ")
    assert "%" in lines[0] and "; " in lines[0]  # best label, then the runners-up
    assert lines[1].startswith(f"{noise}: unknown (closest: ")
    assert lines[2] == f"{bad_inputs['empty']}: error: That file is empty."


@pytest.mark.parametrize("k", [1, 4])
def test_predict_top_k(small_model, held_out, capsys, k):
    code, out, _ = run(
        ["--json", "predict", "--model", small_model.path, "--top-k", k, held_out[0]], capsys
    )
    assert code == 0
    (line,) = json_lines(out)
    assert len(line["top"]) == k
    assert sum(t["confidence"] for t in line["top"]) <= 1 + 1e-6


def test_predict_with_a_bad_model_exits_3(tmp_path, small_model, held_out, capsys):
    garbage = tmp_path / "garbage.clf"
    garbage.write_text("not a model")
    truncated = tmp_path / "truncated.clf"
    truncated.write_bytes(small_model.path.read_bytes()[:-100])
    for model, message in [
        (tmp_path / "none.clf", "No model file at"),
        (garbage, "not a model file"),
        (truncated, "truncated or corrupted"),
    ]:
        code, out, err = run(["--json", "predict", "--model", model, held_out[0]], capsys)
        assert code == 3
        assert out == ""
        assert err.startswith("imageclassifier: model error: ") and message in err


# ---------------------------------------------------------------- evaluate


def test_evaluate_json_and_confusion_png(tmp_path, small_model, cache, capsys):
    png = tmp_path / "confusion.png"
    code, out, _ = run(
        ["--json", "-q", "evaluate", small_model.dataset, "--cache", cache, "--folds", "4",
         "--confusion", png],
        capsys,
    )  # fmt: skip
    assert code == 0
    (result,) = json_lines(out)
    assert result["n_images"] == N_IMAGES
    assert result["n_labels"] == len(LABELS)
    assert result["folds"] == 4 and len(result["fold_accuracies"]) == 4
    assert result["accuracy"] == pytest.approx(np.mean(result["fold_accuracies"]))
    assert result["accuracy_std"] == pytest.approx(np.std(result["fold_accuracies"]))
    assert 0.9 <= result["accuracy"] <= 1.0
    assert 0 < result["feature_ms_per_image"] < 5000
    assert result["extractor"] == "cnn" and result["classifier"] == "lr"
    assert result["confusion"] == str(png)
    image = cv2.imdecode(np.frombuffer(png.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 4 * 28 and image.shape[1] > 4 * 28


def test_evaluate_text_output(small_model, cache, capsys):
    code, out, _ = run(
        ["-q", "evaluate", small_model.dataset, "--cache", cache, "--classifier", "knn",
         "--folds", "2"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert out.startswith("accuracy ") and "over 2 folds" in out
    assert f"{N_IMAGES} images, {len(LABELS)} labels" in out and "ms/image" in out


def test_evaluate_text_reports_skipped_files_and_warnings(flawed_dataset, cache, capsys):
    code, out, err = run(
        ["-q", "evaluate", flawed_dataset, "--cache", cache, "--folds", "2"], capsys
    )
    assert code == 0
    assert out.startswith("accuracy ") and f"{N_IMAGES + 2} images" in out
    assert f"skipped {FLAWED_SKIPPED}" in err.splitlines()
    assert f"warning: {FLAWED_WARNING}" in err.splitlines()


def test_evaluate_json_keeps_warnings_off_stderr(flawed_dataset, cache, capsys):
    code, out, err = run(
        ["--json", "-q", "evaluate", flawed_dataset, "--cache", cache, "--folds", "2"], capsys
    )
    assert code == 0 and err == ""
    (result,) = json_lines(out)
    assert result["skipped"] == [FLAWED_SKIPPED] and result["warnings"] == [FLAWED_WARNING]


def test_evaluate_without_cv_says_why_there_is_no_accuracy(one_image_label, cache, capsys):
    code, out, err = run(["-q", "evaluate", one_image_label, "--cache", cache], capsys)
    assert code == 0
    assert out.startswith("accuracy n/a over 0 folds")
    assert f"warning: {NO_CV}" in err.splitlines()
    code, out, _ = run(["--json", "-q", "evaluate", one_image_label, "--cache", cache], capsys)
    (result,) = json_lines(out)
    assert code == 0 and result["accuracy"] is None and NO_CV in result["warnings"]


def test_evaluate_folds_0_says_accuracy_was_skipped(small_model, cache, capsys):
    code, out, err = run(
        ["-q", "evaluate", small_model.dataset, "--cache", cache, "--folds", "0"], capsys
    )
    assert code == 0 and "accuracy n/a" in out
    assert "warning: cross-validation skipped (--folds 0): accuracy was not measured" in err


def test_evaluate_confusion_with_folds_0_is_a_usage_error(tmp_path, small_model, cache, capsys):
    png = tmp_path / "confusion.png"
    code, out, err = run(
        ["-q", "evaluate", small_model.dataset, "--cache", cache, "--folds", "0",
         "--confusion", png],
        capsys,
    )  # fmt: skip
    assert code == 64 and out == "" and not png.exists()
    assert err.startswith("imageclassifier: error: --confusion needs cross-validation")


def test_evaluate_confusion_without_cv_is_a_dataset_error(tmp_path, one_image_label, cache, capsys):
    """The scores are still printed; the missing PNG is explained and exits 4."""
    png = tmp_path / "confusion.png"
    code, out, err = run(
        ["--json", "-q", "evaluate", one_image_label, "--cache", cache, "--confusion", png], capsys
    )
    assert code == 4 and not png.exists()
    (result,) = json_lines(out)
    assert result["accuracy"] is None and "confusion" not in result
    assert NO_CV in result["warnings"]
    assert err.startswith(f"imageclassifier: dataset error: no confusion matrix written to {png}")
    assert NO_CV in err


# ---------------------------------------------------------------- compare


def test_compare_scores_every_classifier_on_the_same_folds(small_model, cache, capsys):
    code, out, _ = run(
        ["--json", "-q", "compare", small_model.dataset, "--cache", cache, "--folds", "2"], capsys
    )
    assert code == 0
    rows = json_lines(out)
    assert [r["classifier"] for r in rows] == list(CLASSIFIERS)
    assert all(r["description"] == CLASSIFIERS[r["classifier"]][0] for r in rows)
    assert all(0 <= r["accuracy"] <= 1 and r["accuracy_std"] >= 0 for r in rows)
    # Same folds as a plain cross-validation of each classifier with the benchmark seed.
    data, _, _, y = load_features(small_model.dataset, "cnn", cache, None)
    by_name = {r["classifier"]: r for r in rows}
    for name in ("knn", "nb"):
        cv = cross_validate(data.features[:, :1984], y, name, 2)  # the classifier columns
        assert by_name[name]["accuracy"] == pytest.approx(cv.accuracy)
        assert by_name[name]["accuracy_std"] == pytest.approx(cv.accuracy_std)


def test_compare_prints_a_table(small_model, cache, capsys):
    code, out, _ = run(
        ["-q", "compare", small_model.dataset, "--cache", cache, "--folds", "2",
         "--classifiers", "knn,nb"],
        capsys,
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert "2-fold stratified CV" in lines[0] and f"{N_IMAGES} images" in lines[0]
    assert lines[1].split() == ["classifier", "accuracy", "std", "description"]
    assert [line.split()[0] for line in lines[2:]] == ["knn", "nb"]
    assert all(line.split()[1].endswith("%") for line in lines[2:])


def test_compare_header_states_the_folds_actually_used(small_model, cache, capsys):
    """With 8 images per label, --folds 10 can only run 8 folds: the table must say so."""
    code, out, _ = run(
        ["-q", "compare", small_model.dataset, "--cache", cache, "--folds", "10",
         "--classifiers", "knn"],
        capsys,
    )  # fmt: skip
    assert code == 0
    assert f"{PER_LABEL}-fold stratified CV" in out.splitlines()[0]


def test_compare_with_an_unknown_classifier_is_a_usage_error(small_model, capsys):
    code, out, err = run(["compare", small_model.dataset, "--classifiers", "lr,boost"], capsys)
    assert code == 64
    assert "unknown classifier(s): boost" in err and out == ""


def test_compare_text_reports_skipped_files_and_warnings(flawed_dataset, cache, capsys):
    code, out, err = run(
        ["-q", "compare", flawed_dataset, "--cache", cache, "--folds", "2",
         "--classifiers", "knn"],
        capsys,
    )  # fmt: skip
    assert code == 0 and f"{N_IMAGES + 2} images" in out
    assert f"skipped {FLAWED_SKIPPED}" in err.splitlines()
    assert f"warning: {FLAWED_WARNING}" in err.splitlines()


def test_compare_json_rows_carry_the_dataset_warnings(flawed_dataset, cache, capsys):
    code, out, err = run(
        ["--json", "-q", "compare", flawed_dataset, "--cache", cache, "--folds", "2",
         "--classifiers", "knn,nb"],
        capsys,
    )  # fmt: skip
    assert code == 0 and err == ""
    rows = json_lines(out)
    assert [r["classifier"] for r in rows] == ["knn", "nb"]
    assert all(r["skipped"] == [FLAWED_SKIPPED] for r in rows)
    assert all(r["warnings"] == [FLAWED_WARNING] for r in rows)


def test_compare_without_cv_says_why(one_image_label, cache, capsys):
    argv = ["-q", "compare", one_image_label, "--cache", cache, "--classifiers", "knn"]
    code, out, err = run(argv, capsys)
    assert code == 0 and "n/a" in out.splitlines()[2]
    assert f"warning: {NO_CV}" in err.splitlines()
    code, out, _ = run(["--json", *argv], capsys)
    (row,) = json_lines(out)
    assert row["accuracy"] is None and NO_CV in row["warnings"]


@pytest.mark.parametrize(
    ("options", "shown"),
    [([], True), (["--json"], True), (["-q"], False), (["--json", "-q"], False)],
    ids=["text", "json", "quiet", "json-quiet"],
)
def test_compare_shows_progress_on_a_terminal_unless_quiet(
    small_model, cache, capsys, monkeypatch, options, shown
):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = [*options, "compare", small_model.dataset, "--cache", cache, "--folds", "2",
            "--classifiers", "knn,nb"]  # fmt: skip
    code = main([str(a) for a in argv])
    out = capsys.readouterr().out
    assert code == 0
    err = terminal.getvalue()
    if shown:
        assert "cross-validating knn" in err and "cross-validating nb" in err
        assert "2/2" in err and err.endswith("\n")
    else:
        assert err == ""
    if "--json" in options:
        assert [r["classifier"] for r in json_lines(out)] == ["knn", "nb"]  # stdout stays clean


# ---------------------------------------------------------------- info


def test_info_prints_the_metadata(small_model, capsys):
    code, out, _ = run(["--json", "info", small_model.path], capsys)
    assert code == 0
    (meta,) = json_lines(out)
    assert meta["model_id"] == small_model.result.model_id
    assert meta["labels"] == list(LABELS)
    code, out, _ = run(["info", small_model.path], capsys)
    assert code == 0 and json.loads(out)["classifier"] == "lr"


def test_info_on_a_bad_model_exits_3(tmp_path, capsys):
    bad = tmp_path / "bad.clf"
    bad.write_bytes(b"\x00" * 64)
    assert run(["info", bad], capsys)[0] == 3
    assert run(["info", tmp_path / "none.clf"], capsys)[0] == 3


# ---------------------------------------------------------------- dataset and argument errors


def test_bad_datasets_exit_4(tmp_path, capsys):
    one = make_dataset(tmp_path / "one", ("daisy",), per_label=5)
    for argv in (
        ["train", tmp_path / "missing", "--model", tmp_path / "m.clf"],
        ["train", one, "--model", tmp_path / "m.clf"],
        ["evaluate", tmp_path / "missing"],
        ["compare", one],
    ):
        code, _, err = run(argv, capsys)
        assert code == 4, argv
        assert err.startswith("imageclassifier: dataset error: ")
        assert "Dataset" in err or "label" in err
    assert not (tmp_path / "m.clf").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "DS", "--folds", "1"],
        ["evaluate", "DS", "--folds", "-2"],
        ["compare", "DS", "--folds", "1"],
        ["train", "DS", "--classifier", "xgboost"],
        ["evaluate", "DS", "--extractor", "sift"],
        ["predict", "--model", "M", "--top-k", "0", "IMG"],
        ["predict", "--model", "M", "--top-k", "many", "IMG"],
        ["predict", "--model", "M"],
        ["frobnicate"],
        [],
    ],
    ids=lambda a: " ".join(a) or "no-command",
)
def test_bad_arguments_exit_64(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 64
    assert "error" in err and out == ""


def test_internal_errors_exit_1_with_a_short_message(tmp_path, small_model, cache, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    code, _, err = run(
        ["-q", "train", small_model.dataset, "--model", blocker / "m.clf", "--cache", cache,
         "--folds", "0"],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert err.startswith("imageclassifier: internal error: ") and "--debug" in err


# ---------------------------------------------------------------- the console script


def _console_script() -> str:
    script = Path(sys.executable).with_name("imageclassifier")
    assert script.is_file(), f"console script missing at {script} (pip install -e .)"
    return str(script)


def test_console_script_predicts_and_rejects_without_traceback(small_model, held_out, bad_inputs):
    proc = subprocess.run(
        [_console_script(), "--json", "predict", "--model", str(small_model.path),
         str(held_out[0]), str(bad_inputs["not_an_image"])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    good, bad = json_lines(proc.stdout)
    assert good["label"] == held_out[0].parent.name and set(good) == PREDICTION_KEYS
    assert bad == {
        "path": str(bad_inputs["not_an_image"]),
        "error": {
            "code": "not_an_image",
            "message": "That file is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF).",
        },
    }


def test_train_reports_unknown_share_calibration_and_photo_hints(
    small_model, cache, capsys, tmp_path
):
    """8 photos per label: each label gets the hint to add about 2 more."""
    out_model = tmp_path / "m.clf"
    args = ["train", small_model.dataset, "--model", out_model, "--cache", cache, "--folds", "3"]
    code, out, _ = run(["--json", "-q", *args], capsys)
    assert code == 0
    [summary] = json_lines(out)
    assert 0.0 <= summary["unknown_rate"] <= 1.0
    assert 0.0 <= summary["open_accuracy"] <= 1.0  # right and not `unknown`
    assert 0.0 <= summary["ece"] <= 1.0
    assert summary["hints"] == [
        {"label": label, "add": 10 - PER_LABEL, "reason": f"only {PER_LABEL} photos"}
        for label in LABELS
    ]
    code, out, _ = run(["-q", *args], capsys)
    assert code == 0
    assert f"hint: add about 2 more photos of {LABELS[0]} (only {PER_LABEL} photos)" in out
    assert "own photos answered unknown" in out
