"""ONNX Runtime fp32 / int8 against the previous engine (cv2.dnn), in one run (issue 10).

    BENCH_SHARED=/path/to/shared python -m bench.bench_engines [--runs N] [--only ...]

1. Accuracy: stratified 5-fold CV (shuffle, random_state=9) of the default pipeline on
   FLOWERS17 without the int8 network's 51 calibration images (kept apart from every
   evaluation, for all three engines alike), and unknown detection on the same images
   (the other-subject photos of bench_classifier).
2. Prediction with a warm model, interleaved rounds: one image incl. decode (median), and
   batches of 64 as ``imageclassifier predict`` makes them, in process.
3. ``imageclassifier predict`` of 300 photos as a subprocess, start-up subtracted (the
   same command on 1 photo), fp32 and int8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.bench_classifier import other_subject_photos
from bench.common import OUT, flowers_dir, median, table, usable
from bench.legacy_engine import opencv_engine
from provider.cache import FeatureCache
from provider.dataset import scan_dataset
from provider.evaluation import CV_SEED, cross_validate
from provider.extraction import decode_many, extract_items
from provider.features import cnn, get_extractor
from provider.model import Classifier
from provider.ood import OpenSetScorer
from provider.train import train_model

ENGINES = ("cv2.dnn fp32 (before)", "onnxruntime fp32", "onnxruntime int8")
EXTRACTOR_OF = {ENGINES[0]: "cnn", ENGINES[1]: "cnn", ENGINES[2]: "cnn-int8"}


def calibration_names() -> set[str]:
    manifest = json.loads(cnn.INT8_MANIFEST_PATH.read_text())
    return {image["path"] for image in manifest["calibration"]["images"]}


def _features(engine: str, items: list, cache: Path) -> np.ndarray:
    ext = get_extractor(EXTRACTOR_OF[engine])
    if engine == ENGINES[0]:  # never cached: its rows would carry the onnxruntime key
        with opencv_engine():
            data = extract_items(items, ext, cache=None)
    else:
        data = extract_items(items, ext, cache=FeatureCache(cache, ext.cache_key, ext.dim))
    assert len(data.items) == len(items), data.skipped
    return data.features


def bench_accuracy(dataset: Path) -> list[tuple[str, ...]]:
    scan = scan_dataset(dataset)
    held_apart = calibration_names()
    items = [i for i in scan.items if f"{i.label}/{i.path.name}" not in held_apart]
    y = np.array([scan.labels.index(i.label) for i in items])
    others = other_subject_photos()
    rows = []
    for engine in ENGINES:
        X = _features(engine, items, OUT / "features.h5")
        ext = get_extractor(EXTRACTOR_OF[engine])
        res = cross_validate(ext.classifier_features(X), y, "lr", 5)
        assert res is not None
        srcs = [b for _, b in others]
        if engine == ENGINES[0]:
            with opencv_engine():
                Z, _ = ext.extract(
                    list(decode_many(srcs, min_side=ext.decode_min_side, reduce=ext.reduce))
                )
        else:
            Z, _ = ext.extract(
                list(decode_many(srcs, min_side=ext.decode_min_side, reduce=ext.reduce))
            )
        from sklearn.model_selection import StratifiedKFold

        flower_rej, other_rej = [], []
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=CV_SEED).split(X, y):
            ood = OpenSetScorer(ext.classifier_dim).fit(X[tr], y[tr], int(y.max()) + 1)
            flower_rej.append(float(np.mean(ood.is_unknown(ood.score(X[te])[0]))))
            other_rej.append(float(np.mean(ood.is_unknown(ood.score(Z)[0]))))
        rows.append(
            (
                engine,
                f"{res.accuracy:.2%} ± {res.accuracy_std:.2%}",
                f"{np.mean(other_rej):.1%} of {len(others)}",
                f"{np.mean(flower_rej):.1%}",
            )
        )
    print(f"({len(items)} images: {len(scan.items)} minus {len(held_apart)} calibration images)")
    return rows


def _one_round(clf: Classifier, blobs: list[bytes]) -> tuple[float, float]:
    singles = []
    for b in blobs[:60]:
        t0 = time.perf_counter()
        clf.classify_sources([b])
        singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, len(blobs), 64):
        clf.classify_sources(blobs[start : start + 64])
    return median(singles), len(blobs) / (time.perf_counter() - t0)


def bench_predict(models: dict[str, Path], files: list[Path], runs: int) -> list[tuple[str, ...]]:
    blobs = [p.read_bytes() for p in files]
    clfs = {e: Classifier.load(models[EXTRACTOR_OF[e]]) for e in ENGINES}
    singles: dict[str, list[float]] = {e: [] for e in ENGINES}
    rates: dict[str, list[float]] = {e: [] for e in ENGINES}
    with opencv_engine():
        legacy = cnn.network("fp32")
    for engine in ENGINES:  # warm-up
        _warm(engine, clfs[engine], legacy, blobs)
    for _ in range(runs):  # interleaved rounds: the machine's load hits all alike
        for engine in ENGINES:
            one, rate = _warm(engine, clfs[engine], legacy, blobs, timed=True)
            singles[engine].append(one)
            rates[engine].append(rate)
    return [
        (
            engine,
            f"{median(singles[engine]) * 1000:.1f} ms",
            f"{median(rates[engine]):.0f} images/s",
            " ".join(f"{r:.0f}" for r in rates[engine]),
        )
        for engine in ENGINES
    ]


def _warm(engine, clf, legacy, blobs, timed=False):
    if engine == ENGINES[0]:
        saved = cnn._NETWORKS.get("fp32")
        cnn._NETWORKS["fp32"] = legacy
        try:
            return _one_round(clf, blobs) if timed else clf.classify_sources(blobs[:16])
        finally:  # the onnxruntime pool back, or none (loaded again on first use)
            if saved is None:
                cnn._NETWORKS.pop("fp32", None)
            else:
                cnn._NETWORKS["fp32"] = saved
    return _one_round(clf, blobs) if timed else clf.classify_sources(blobs[:16])


def bench_cli(models: dict[str, Path], files: list[Path], runs: int) -> list[tuple[str, ...]]:
    rows = []
    for name, model in models.items():
        totals, startups = [], []
        for _ in range(runs):
            for paths, out in ((files, totals), (files[:1], startups)):
                cmd = [sys.executable, "-m", "provider.cli", "predict", "--model", str(model)]
                t0 = time.perf_counter()
                subprocess.run([*cmd, *map(str, paths)], check=True, capture_output=True)
                out.append(time.perf_counter() - t0)
        rate = (len(files) - 1) / (median(totals) - median(startups))
        target = ">= 250 images/s" if name == "cnn-int8" else ">= 140 images/s"
        rows.append(
            (
                f"imageclassifier predict, {len(files)} photos, {name}",
                f"{rate:.0f} images/s (total {median(totals):.2f} s, start-up "
                f"{median(startups):.2f} s)",
                target,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["accuracy", "predict", "cli"])
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    dataset = flowers_dir()
    print(f"dataset: {dataset}")
    results: dict[str, list[tuple[str, ...]]] = {}
    if args.only in (None, "accuracy"):
        results["accuracy"] = bench_accuracy(dataset)
        header = ("engine", "5-fold accuracy", "others unknown", "flowers rejected")
        print(table(results["accuracy"], header))
    files = [i.path for i in scan_dataset(dataset).items][::4][:300]
    models = {}
    for name in ("cnn", "cnn-int8"):
        models[name] = OUT / f"engines-{name}.clf"
        if not usable(models[name]):
            train_model(dataset, models[name], extractor=name, cache=OUT / "features.h5", folds=0)
    if args.only in (None, "predict"):
        results["predict"] = bench_predict(models, files, args.runs)
        header = ("engine (warm, in process)", "one image incl. decode", "batches of 64", "runs")
        print(table(results["predict"], header))
    if args.only in (None, "cli"):
        results["cli"] = bench_cli(models, files, max(1, args.runs // 2 + 1))
        print(table(results["cli"], ("command", "measured", "target")))
    (OUT / "engines.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
