"""Classifier benchmarks (issue #2 targets), on this machine, medians of several runs.

    python -m bench.bench_classifier [--only accuracy|train|predict|unknown] [--runs N]

1. Accuracy: stratified 5-fold CV (shuffle, random_state=9) on FLOWERS17, same folds for
   the original pipeline (global features + MinMaxScaler + RandomForest(100)), plain
   EfficientNet-Lite0 pooled features + LR (the baseline), and ours.
2. Prediction with a warm model: one image incl. decode (median), batch throughput.
3. Training the default model from scratch, and a retrain after adding 20 images.
4. `unknown` detection: photos of other subjects rejected vs held-out flowers rejected.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench.common import OUT, SHARED_ANIMALS, flowers_dir, median, table, usable
from provider.dataset import scan_dataset
from provider.evaluation import CV_SEED, cross_validate
from provider.features import cnn, get_extractor
from provider.model import Classifier
from provider.ood import OpenSetScorer
from provider.train import load_features, train_model


def plain_head_features(dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """The README's baseline: 1280-d pooled head, no normalisation (ONNX via cv2.dnn)."""
    scan = scan_dataset(dataset)
    from provider.imageio import decode_image

    net, feats = cnn.network(), []
    for start in range(0, len(scan.items), 16):
        imgs = [decode_image(i.path) for i in scan.items[start : start + 16]]
        head, _, _ = net.forward_blob(cnn.to_blob([cnn.preprocess(im) for im in imgs]))
        feats.append(head)
    y = np.array([scan.labels.index(i.label) for i in scan.items])
    return np.concatenate(feats), y


def bench_accuracy(dataset: Path, skip_global: bool) -> list[tuple[str, ...]]:
    rows = []
    cache = OUT / "features.h5"
    if not skip_global:
        from provider import estimators

        data, _, _, y = load_features(dataset, "global", cache, None)
        orig = estimators.build_pipeline("rf", scaling="minmax")
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        cv = StratifiedKFold(5, shuffle=True, random_state=CV_SEED)
        s = cross_val_score(orig, data.features, y, cv=cv)
        rows.append(
            ("original: global + MinMaxScaler + RF(100)", f"{s.mean():.2%} ± {s.std():.2%}")
        )
    X, y = plain_head_features(dataset)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(5, shuffle=True, random_state=CV_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)), X, y, cv=cv
        )
    rows.append(("baseline: Lite0 pooled 1280-d + LR", f"{s.mean():.2%} ± {s.std():.2%}"))
    for name in ("cnn", "cnn+color"):
        data, _, _, y = load_features(dataset, name, cache, None)
        res = cross_validate(get_extractor(name).classifier_features(data.features), y, "lr", 5)
        assert res is not None
        rows.append(
            (f"ours: {name} + LR (default: cnn)", f"{res.accuracy:.2%} ± {res.accuracy_std:.2%}")
        )
    return rows


def _time_predict(clf: Classifier, blobs: list[bytes], runs: int) -> tuple[list[float], float]:
    singles = []
    for b in blobs[:120]:
        t0 = time.perf_counter()
        clf.classify_sources([b])
        singles.append(time.perf_counter() - t0)
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for start in range(0, len(blobs), 32):
            clf.classify_sources(blobs[start : start + 32])
        rates.append(len(blobs) / (time.perf_counter() - t0))
    return singles, median(rates)


def bench_predict(model: Path, dataset: Path, runs: int) -> list[tuple[str, ...]]:
    """Ours, then the previous release's settings (BLAS on every core, 8 images per forward
    pass), in the same run."""
    from threadpoolctl import threadpool_limits

    clf = Classifier.load(model)
    files = [i.path for i in scan_dataset(dataset).items][::5][:256]
    blobs = [p.read_bytes() for p in files]
    clf.classify_sources(blobs[:16])  # warm-up
    singles, rate = _time_predict(clf, blobs, runs)
    ours = cnn.BATCH_SIZE
    cnn.BATCH_SIZE = 8
    try:
        with threadpool_limits(cnn.default_parallelism(), user_api="blas"):
            base_singles, base_rate = _time_predict(clf, blobs, runs)
    finally:
        cnn.BATCH_SIZE = ours
    p95 = float(np.percentile(singles, 95))
    return [
        (
            "one image incl. decode, median (p95)",
            f"{median(singles) * 1000:.1f} ms ({p95 * 1000:.1f} ms)",
            "<= 25 ms",
        ),
        (
            f"batch throughput, batches of 32, median of {runs}",
            f"{rate:.1f} images/s",
            ">= 60 images/s",
        ),
        (
            "before: one image (BLAS on every core)",
            f"{median(base_singles) * 1000:.1f} ms",
            "baseline",
        ),
        (
            "before: batch throughput (BLAS on every core, 8 per pass)",
            f"{base_rate:.1f} images/s",
            "baseline",
        ),
    ]


def bench_training(dataset: Path, runs: int) -> tuple[list[tuple[str, ...]], Path]:
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    scratch = []
    for i in range(runs):
        cache = work / f"cache{i}.h5"
        t0 = time.perf_counter()
        train_model(dataset, work / "model.clf", cache=cache)
        scratch.append(time.perf_counter() - t0)
    # Retrain after adding 20 images: a copy without 20 images, cached, then add them back.
    copy = work / "ds"
    shutil.copytree(dataset, copy)
    held = sorted(copy.glob("*/*.jpg"))[::68][:20]
    aside = work / "aside"
    aside.mkdir()
    for p in held:
        (aside / p.parent.name).mkdir(exist_ok=True)
        shutil.move(p, aside / p.parent.name / p.name)
    retrains = []
    for i in range(runs):
        cache = work / f"retrain{i}.h5"
        for p in aside.glob("*/*.jpg"):  # start from the dataset without the 20
            (copy / p.parent.name / p.name).unlink(missing_ok=True)
        train_model(copy, work / "r.clf", cache=cache)
        for p in aside.glob("*/*.jpg"):
            shutil.copy(p, copy / p.parent.name / p.name)
        t0 = time.perf_counter()
        r = train_model(copy, work / "r.clf", cache=cache)
        retrains.append(time.perf_counter() - t0)
        assert r.n_images - r.n_cached == 20, (r.n_images, r.n_cached)
    rows = [
        (
            f"train default model from scratch (5-fold CV incl.), median of {runs}",
            f"{median(scratch):.1f} s",
            "<= 60 s",
        ),
        (
            f"retrain after adding 20 images (cache), median of {runs}",
            f"{median(retrains):.1f} s",
            "<= 5 s",
        ),
    ]
    return rows, work / "model.clf"


def other_subject_photos() -> list[tuple[str, bytes]]:
    """Photos that are not flowers: animals4 plus the photos scikit-image/-learn ship."""
    out = [(str(p), p.read_bytes()) for p in sorted(SHARED_ANIMALS.glob("*/*.jpg"))]
    from PIL import Image

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "PNG")
        return buf.getvalue()

    try:
        import skimage.data as d

        names = [
            "astronaut",
            "camera",
            "chelsea",
            "clock",
            "coffee",
            "coins",
            "hubble_deep_field",
            "immunohistochemistry",
            "moon",
            "retina",
            "rocket",
            "page",
            "text",
            "brick",
            "grass",
            "gravel",
        ]
        for n in names:
            out.append((f"skimage:{n}", png(getattr(d, n)())))
        out.append(("skimage:stereo_motorcycle", png(d.stereo_motorcycle()[0])))
    except ImportError:
        print("note: scikit-image missing (pip install -e '.[bench]'): fewer photos")
    from sklearn.datasets import load_sample_image

    out.append(("sklearn:china", png(load_sample_image("china.jpg"))))
    return out


def bench_unknown(dataset: Path) -> list[tuple[str, ...]]:
    """Per CV fold: fit pipeline + OOD on 4/5, rate of held-out flowers called unknown."""
    ext = get_extractor("cnn")
    data, _, _, y = load_features(dataset, "cnn", OUT / "features.h5", None)
    others = other_subject_photos()
    from provider.extraction import decode_many

    imgs = [im for im in decode_many([b for _, b in others], min_side=ext.decode_min_side)]
    Z, _ = ext.extract(imgs)
    from sklearn.model_selection import StratifiedKFold

    flower_rej, other_rej = [], []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=CV_SEED).split(data.features, y):
        ood = OpenSetScorer(ext.classifier_dim).fit(data.features[tr], y[tr], int(y.max()) + 1)
        flower_rej.append(float(np.mean(ood.is_unknown(ood.score(data.features[te])[0]))))
        other_rej.append(float(np.mean(ood.is_unknown(ood.score(Z)[0]))))
    full = OpenSetScorer(ext.classifier_dim).fit(data.features, y)
    rejected = full.is_unknown(full.score(Z)[0])
    missed = [n for (n, _), u in zip(others, rejected, strict=True) if not u]
    return [
        (
            f"other subjects answered unknown ({len(others)} photos)",
            f"{np.mean(other_rej):.1%}",
            ">= 90%",
        ),
        ("held-out flowers wrongly rejected (5-fold)", f"{np.mean(flower_rej):.1%}", "<= 3%"),
        ("other-subject photos accepted by the full model", ", ".join(missed) or "none", ""),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-global", action="store_true", help="skip the slow original pipeline")
    ap.add_argument("--only", choices=["accuracy", "predict", "train", "unknown"])
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    dataset = flowers_dir()
    print(f"dataset: {dataset}")
    results: dict[str, list[tuple[str, ...]]] = {}
    if args.only in (None, "accuracy"):
        results["accuracy"] = bench_accuracy(dataset, args.skip_global)
        print(table(results["accuracy"], ("pipeline (5-fold CV, random_state=9)", "accuracy")))
    model = OUT / "flowers17.clf"
    if args.only in (None, "train"):
        results["train"], trained = bench_training(dataset, args.runs)
        shutil.copy(trained, model)
        print(table(results["train"], ("training", "measured", "target")))
    if args.only in (None, "predict"):
        if not usable(model):
            train_model(dataset, model, cache=OUT / "features.h5", folds=0)
        results["predict"] = bench_predict(model, dataset, max(args.runs, 5))
        print(table(results["predict"], ("prediction (warm model)", "measured", "target")))
    if args.only in (None, "unknown"):
        results["unknown"] = bench_unknown(dataset)
        print(table(results["unknown"], ("unknown detection", "measured", "target")))
    (OUT / "classifier.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
