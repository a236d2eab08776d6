"""Few-shot benchmark (issue 18): a server teaches K photos per label, then members post
its subject and everything else. Does the model name its labels and answer `unknown` for
the rest, with and without the default labels beside the taught ones?

    python tools/fetch_fewshot_sets.py ... --out ../data/fewshot     # once, see its docstring
    python -m bench.bench_fewshot [--data ../data/fewshot] [--draws 3] [--k 1,3,5,10,20]

For each photo set (TrashNet, 6 labels; clothing, 10 labels), each K and each seeded draw:
K random photos per label are taught; up to ``--own`` other photos per label are asked
(own photos); ``--other`` random photos of the *other* set plus the 39 of
``../shared/datasets/animals4`` stand for everything else members post (other subjects).
Taught alone, and with the default labels (the shipped FLOWERS17 copy) beside them.

*current*: ``provider.train.train_model`` (the bot's retrain and ``imageclassifier train``)
and ``Classifier.predict_features`` (what the bot and ``imageclassifier predict`` answer),
features from the shared cache. *previous*: the same classifier with the previous
release's `unknown` rule and uncalibrated confidence (bench/previous_open_set.py).

Measured: *right* (answered with the photo's label; `unknown` counts as wrong), own photos
answered `unknown`, other subjects answered `unknown`, ECE of the displayed confidence
(own photos answered with a label), and the classifier's closed-set accuracy (the
ceiling: its best label among the taught ones, no `unknown`). Then the "Not sure"
threshold curve of the current method. Means over sets and draws.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import OUT, REPO, SHARED_ANIMALS, table
from bench.previous_open_set import PreviousOpenSet
from provider.cache import FeatureCache
from provider.dataset import DatasetItem, scan_dataset
from provider.extraction import extract_items
from provider.features import DEFAULT_EXTRACTOR, get_extractor
from provider.model import Classifier
from provider.quality import CALIBRATE_FROM, expected_calibration_error
from provider.train import default_dataset, train_model

SETS = ("trashnet", "clothing")
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TARGETS = {  # K: (right >=, own unknown <=, other unknown >=)
    5: (0.93, 0.05, 0.80),
    10: (0.95, 0.03, 0.85),
}


@dataclass
class Photos:
    items: list[DatasetItem]
    features: np.ndarray
    labels: np.ndarray  # (N,) str


def featurise(root: Path, cache: Path) -> Photos:
    ext = get_extractor(DEFAULT_EXTRACTOR)
    scan = scan_dataset(root)
    data = extract_items(scan.items, ext, cache=FeatureCache(cache, ext.cache_key, ext.dim))
    return Photos(data.items, data.features, np.array([i.label for i in data.items]))


@dataclass
class Outcome:
    right: float
    own_unknown: float
    other_unknown: float
    ece: float
    closed: float
    curve: list[tuple[float, float, float]]  # per threshold: own sure, their accuracy, other sure


def measure(
    proba: np.ndarray,
    classes: np.ndarray,
    unknown: np.ndarray,
    truth: np.ndarray,
    n_own: int,
) -> Outcome:
    """``proba``/``unknown`` for own photos (first ``n_own`` rows) then other subjects."""
    best = classes[np.argmax(proba, axis=1)]
    conf = proba.max(axis=1)
    own, other = slice(0, n_own), slice(n_own, None)
    hit = best[own] == truth
    answered = ~unknown[own]
    # closed-set ceiling: the best of the taught labels only
    taught = np.isin(classes, np.unique(truth))
    closed = classes[taught][np.argmax(proba[own][:, taught], axis=1)] == truth
    curve = []
    for t in THRESHOLDS:
        sure = answered & (conf[own] >= t)
        other_sure = ~unknown[other] & (conf[other] >= t)
        curve.append(
            (
                float(sure.mean()),
                float(hit[sure].mean()) if sure.any() else float("nan"),
                float(other_sure.mean()),
            )
        )
    return Outcome(
        right=float(np.mean(hit & answered)),
        own_unknown=float(np.mean(unknown[own])),
        other_unknown=float(np.mean(unknown[other])),
        ece=expected_calibration_error(conf[own][answered], hit[answered]),
        closed=float(np.mean(closed)),
        curve=curve,
    )


def run_draw(
    photos: dict[str, Photos],
    defaults: Photos,
    animals: Photos,
    name: str,
    k: int,
    seed: int,
    with_defaults: bool,
    cache: Path,
    work: Path,
    args: argparse.Namespace,
) -> dict[str, Outcome]:
    rng = np.random.default_rng([seed, k, SETS.index(name)])
    mine = photos[name]
    taught, asked = [], []
    for label in np.unique(mine.labels):
        idx = rng.permutation(np.flatnonzero(mine.labels == label))
        taught += list(idx[:k])
        asked += list(idx[k : k + args.own])
    others = [p for n, p in photos.items() if n != name]
    pool = np.concatenate([p.features for p in others])
    other = pool[rng.choice(len(pool), min(args.other, len(pool)), replace=False)]
    queries = np.concatenate([mine.features[asked], other, animals.features])
    truth = mine.labels[asked]
    examples = [mine.items[i] for i in taught]
    out = work / f"{name}-{k}-{seed}-{int(with_defaults)}.model"
    train_model(
        default_dataset() if with_defaults else None,
        out,
        examples=examples,
        cache=cache,
        # Cross-validation fits the temperature of the confidence from CALIBRATE_FROM
        # photos per label; below that it changes nothing in the model, so it is skipped.
        folds=5 if k >= CALIBRATE_FROM else 0,
    )
    model = Classifier.load(out)
    preds = model.predict_features(queries, top_k=len(model.labels))
    classes = np.array(model.labels)
    order = {label: i for i, label in enumerate(classes)}
    proba = np.zeros((len(preds), len(classes)))
    for row, pred in zip(proba, preds, strict=True):
        for score in pred.top:
            row[order[score.label]] = score.confidence
    unknown = np.array([p.is_unknown for p in preds])
    current = measure(proba, classes, unknown, truth, len(asked))
    # previous: same classifier, uncalibrated, previous unknown rule on its 1984 columns
    ext = model.extractor
    train_rows = mine.features[taught]
    if with_defaults:
        train_rows = np.concatenate([train_rows, defaults.features])
    clf_cols = ext.classifier_features
    raw = model.artifact.pipeline.predict_proba(clf_cols(queries))
    raw_classes = np.array([str(c) for c in model.artifact.pipeline.classes_])
    prev = PreviousOpenSet(clf_cols(train_rows))
    previous = measure(raw, raw_classes, prev.is_unknown(clf_cols(queries)), truth, len(asked))
    out.unlink()
    return {"current": current, "previous": previous}


def mean_of(outcomes: list[Outcome]) -> Outcome:
    return Outcome(
        right=float(np.mean([o.right for o in outcomes])),
        own_unknown=float(np.mean([o.own_unknown for o in outcomes])),
        other_unknown=float(np.mean([o.other_unknown for o in outcomes])),
        ece=float(np.mean([o.ece for o in outcomes])),
        closed=float(np.mean([o.closed for o in outcomes])),
        curve=[
            tuple(np.nanmean(np.array(c), axis=0))
            for c in zip(*[o.curve for o in outcomes], strict=True)
        ],  # type: ignore[misc]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_data = os.environ.get("BENCH_FEWSHOT_DATA") or str(REPO.parent / "data" / "fewshot")
    parser.add_argument("--data", type=Path, default=Path(default_data))
    parser.add_argument("--k", default="1,3,5,10,20")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--own", type=int, default=40, help="own photos asked per label")
    parser.add_argument("--other", type=int, default=300, help="photos of the other set asked")
    args = parser.parse_args()
    missing = [s for s in SETS if not (args.data / s).is_dir()]
    if missing:
        print(f"no {', '.join(missing)} under {args.data}: run tools/fetch_fewshot_sets.py")
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    cache = OUT / "fewshot-features.h5"
    started = time.perf_counter()
    photos = {name: featurise(args.data / name, cache) for name in SETS}
    defaults = featurise(default_dataset(), cache)
    animals = featurise(SHARED_ANIMALS, cache)
    print(f"features ready in {time.perf_counter() - started:.0f} s")
    ks = [int(k) for k in args.k.split(",")]
    results: dict[tuple[str, int, bool, str], list[Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fewshot-") as tmp:
        for with_defaults in (False, True):
            for k in ks:
                for name in SETS:
                    for seed in range(args.draws):
                        got = run_draw(
                            photos, defaults, animals, name, k, seed, with_defaults, cache,
                            Path(tmp), args,
                        )  # fmt: skip
                        for method, outcome in got.items():
                            results.setdefault((name, k, with_defaults, method), []).append(outcome)
                print(f"  K={k} defaults={with_defaults} ({time.perf_counter() - started:.0f} s)")
    rows, summary = [], {}
    for with_defaults in (False, True):
        for k in ks:
            for method in ("previous", "current"):
                per_set = [results[(n, k, with_defaults, method)] for n in SETS]
                m = mean_of([o for outs in per_set for o in outs])
                summary[(k, with_defaults, method)] = m
                target = TARGETS.get(k)
                met = ""
                if target and method == "current":
                    ok = (
                        m.right >= target[0],
                        m.own_unknown <= target[1],
                        m.other_unknown >= target[2],
                    )
                    met = " ".join("ok" if o else "MISSED" for o in ok)
                sets = " / ".join(f"{mean_of(o).right:.1%}" for o in per_set)
                rows.append(
                    (
                        str(k),
                        "yes" if with_defaults else "no",
                        method,
                        f"{m.right:.1%} ({sets})",
                        f"{m.closed:.1%}",
                        f"{m.own_unknown:.1%}",
                        f"{m.other_unknown:.1%}",
                        f"{m.ece:.3f}",
                        met,
                    )
                )
    print(
        f"\nMeans over {', '.join(SETS)} and {args.draws} draws (right: mean, then per set)\n"
        + table(
            rows,
            (
                "K",
                "default labels",
                "method",
                "right",
                "closed-set",
                "own unknown",
                "other unknown",
                "ECE",
                "targets (right, own, other)",
            ),
        )
    )
    curve_rows = []
    for k in [k for k in ks if k in (5, 10)]:
        for with_defaults in (False, True):
            m = summary[(k, with_defaults, "current")]
            for t, (own_sure, acc, other_sure) in zip(THRESHOLDS, m.curve, strict=True):
                curve_rows.append(
                    (
                        str(k),
                        "yes" if with_defaults else "no",
                        f"{t:.0%}",
                        f"{own_sure:.1%}",
                        f"{acc:.1%}",
                        f"{other_sure:.1%}",
                    )
                )
    print(
        "\n'Not sure' threshold (current method): own photos answered with a label at or "
        "above it, their accuracy, other subjects answered with a label at or above it\n"
        + table(
            curve_rows,
            ("K", "default labels", "threshold", "own sure", "right among them", "other sure"),
        )
    )
    (OUT / "fewshot.json").write_text(
        json.dumps(
            {f"K={k} defaults={d} {meth}": m.__dict__ for (k, d, meth), m in summary.items()},
            indent=1,
        )
    )
    print(f"\n{time.perf_counter() - started:.0f} s; figures in {OUT / 'fewshot.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
