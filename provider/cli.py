"""``imageclassifier``: train, predict, evaluate and compare from the command line.

Exit codes: 0 success; 2 some input image was rejected (predict); 3 the model file is
missing, corrupted or incompatible; 4 the dataset cannot be used (also: ``evaluate
--confusion`` when the dataset cannot be cross-validated; the scores are still printed);
64 bad arguments (also: ``evaluate --confusion`` with ``--folds 0``); 1 unexpected internal
error (with a traceback only under ``--debug``).

Dataset problems (skipped files, labels with few images, no cross-validation possible) are
printed to stderr as ``skipped ...`` / ``warning: ...`` lines, or with ``--json`` listed
under ``skipped`` and ``warnings``, by ``train``, ``evaluate`` and ``compare`` alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from provider.errors import DatasetError, ImageError, ModelError

if TYPE_CHECKING:
    from provider.dataset import DatasetItem
    from provider.features import FeatureExtractor

EXIT_OK, EXIT_INTERNAL, EXIT_REJECTED, EXIT_MODEL, EXIT_DATASET, EXIT_USAGE = 0, 1, 2, 3, 4, 64
DEFAULT_MODEL = Path("model.clf")
TIMING_SAMPLE = 16  # images timed for ``feature_ms_per_image``: one extraction batch
SKIPPED_CV_WARNING = "cross-validation skipped (--folds 0): accuracy was not measured"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _progress(args: argparse.Namespace) -> Any:
    from provider.progress import ProgressBar

    return ProgressBar(enabled=False if args.quiet else None)


def _report_dataset_issues(skipped: list[str], warnings: list[str]) -> None:
    """Text mode: unusable files and dataset warnings on stderr (with --json they are keys)."""
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


def _no_cv_warning(folds: int) -> str:
    from provider.evaluation import NO_CV_WARNING

    return SKIPPED_CV_WARNING if folds == 0 else NO_CV_WARNING


def cmd_train(args: argparse.Namespace) -> int:
    from provider.train import default_dataset, train_model

    bar = _progress(args)
    try:
        result = train_model(
            args.dataset or default_dataset(),
            args.model,
            extractor=args.extractor,
            classifier=args.classifier,
            cache=args.cache,
            folds=args.folds,
            progress=bar,
        )
    finally:
        bar.close()
    summary = {
        "model": str(result.model_path),
        "model_id": result.model_id,
        "labels": list(result.labels),
        "n_images": result.n_images,
        "accuracy": result.accuracy,
        "accuracy_std": result.accuracy_std,
        "duration_s": round(result.duration_s, 2),
        "cached_images": result.n_cached,
        "skipped": result.skipped,
        "warnings": result.warnings,
    }
    quality = result.quality
    if quality is not None and quality.folds:
        summary["unknown_rate"] = quality.unknown_rate
        summary["open_accuracy"] = quality.accuracy
        summary["ece"] = quality.ece
    hints = photo_hints(result)
    summary["hints"] = hints
    if args.json:
        _emit(summary)
    else:
        acc = (
            "not measured"
            if result.accuracy is None
            else (f"{result.accuracy:.1%} ± {result.accuracy_std:.1%} (CV)")
        )
        print(f"model {result.model_id} -> {result.model_path}")
        print(
            f"{result.n_images} images, {len(result.labels)} labels, accuracy {acc}, "
            f"{result.duration_s:.1f} s ({result.n_cached} images from cache)"
        )
        if quality is not None and quality.folds:
            print(
                f"own photos answered unknown {quality.unknown_rate:.1%}, right (unknown "
                f"counted as wrong) {quality.accuracy:.1%}, calibration error {quality.ece:.1%} "
                "(CV)"
            )
        for hint in hints:
            print(
                f"hint: add about {hint['add']} more photos of {hint['label']} ({hint['reason']})"
            )
        _report_dataset_issues(result.skipped, result.warnings)
    return EXIT_OK


def photo_hints(result: Any) -> list[dict[str, Any]]:
    """``[{label, add, reason}]`` for the labels that would gain from more photos."""
    quality = result.quality
    if quality is None:
        return []
    return [
        {"label": label, "add": q.add_photos, "reason": q.reason}
        for label, q in quality.per_label.items()
        if q.add_photos
    ]


def cmd_predict(args: argparse.Namespace) -> int:
    from provider.model import Classifier

    clf = Classifier.load(args.model)
    status = EXIT_OK
    paths = [Path(p) for p in args.images]
    for path, res in zip(paths, clf.classify_stream(paths, args.top_k), strict=True):
        if isinstance(res, ImageError):
            status = EXIT_REJECTED
            if args.json:
                _emit({"path": str(path), "error": res.to_json()})
            else:
                print(f"{path}: error: {res.message}")
            continue
        if args.json:
            _emit({"path": str(path), **res.to_json()})
        else:
            rest = ", ".join(f"{s.label} {s.confidence:.1%}" for s in res.top[1:])
            note = f" (closest: {res.top[0].label})" if res.is_unknown else ""
            print(f"{path}: {res.label}{note} {res.confidence:.1%}" + (f"; {rest}" if rest else ""))
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    from provider.evaluation import cross_validate
    from provider.features import get_extractor
    from provider.train import load_features

    if args.confusion and args.folds == 0:
        return _usage_error("--confusion needs cross-validation, but --folds 0 skips it")
    bar = _progress(args)
    try:
        data, labels, warnings, y = load_features(args.dataset, args.extractor, args.cache, bar)
        cv = cross_validate(
            get_extractor(args.extractor).classifier_features(data.features),
            y,
            args.classifier,
            args.folds,
            progress=lambda d, t: bar("cross-validating", d, t),
        )
    finally:
        bar.close()
    ms = feature_ms_per_image(data.items, get_extractor(args.extractor))
    if cv is None:
        warnings.append(_no_cv_warning(args.folds))
    out = {
        "dataset": str(args.dataset),
        "extractor": args.extractor,
        "classifier": args.classifier,
        "accuracy": cv.accuracy if cv else None,
        "accuracy_std": cv.accuracy_std if cv else None,
        "fold_accuracies": cv.fold_accuracies if cv else [],
        "n_images": len(y),
        "n_labels": len(labels),
        "folds": cv.folds if cv else 0,
        "feature_ms_per_image": round(ms, 2),
        "skipped": data.skipped,
        "warnings": warnings,
    }
    if args.confusion and cv is not None:
        from provider.report import confusion_png

        title = f"{args.extractor} + {args.classifier}: {cv.accuracy:.1%} ({cv.folds}-fold CV)"
        Path(args.confusion).write_bytes(confusion_png(cv.confusion, labels, title))
        out["confusion"] = str(args.confusion)
    if args.json:
        _emit(out)
    else:
        acc = "n/a" if cv is None else f"{cv.accuracy:.2%} ± {cv.accuracy_std:.2%}"
        print(
            f"accuracy {acc} over {out['folds']} folds; {len(y)} images, {len(labels)} labels; "
            f"features {ms:.1f} ms/image"
        )
        _report_dataset_issues(data.skipped, warnings)
    if args.confusion and cv is None:
        print(
            f"imageclassifier: dataset error: no confusion matrix written to {args.confusion}: "
            f"{_no_cv_warning(args.folds)}",
            file=sys.stderr,
        )
        return EXIT_DATASET
    return EXIT_OK


def feature_ms_per_image(
    items: Sequence[DatasetItem], extractor: FeatureExtractor, sample: int = TIMING_SAMPLE
) -> float:
    """Warm feature-extraction time per image (ms), measured on the first ``sample`` items.

    Only the extraction call is timed: decoding comes first, and an untimed call on two
    images loads and warms the network (both networks of a two-network pool) beforehand,
    so neither scanning, hashing, the cache nor network start-up count.
    """
    from provider.extraction import decode_many

    decoded = decode_many(
        [item.path for item in items[:sample]], min_side=extractor.decode_min_side
    )
    images = [image for image in decoded if not isinstance(image, ImageError)]
    if not images:
        return 0.0
    extractor.extract(images[:2])
    t0 = time.perf_counter()
    extractor.extract(images)
    return 1000 * (time.perf_counter() - t0) / len(images)


def cmd_compare(args: argparse.Namespace) -> int:
    from provider.estimators import CLASSIFIERS
    from provider.evaluation import compare_classifiers, usable_folds
    from provider.features import get_extractor
    from provider.train import load_features

    names = args.classifiers.split(",") if args.classifiers else list(CLASSIFIERS)
    unknown = [n for n in names if n not in CLASSIFIERS]
    if unknown:
        raise SystemExit(_usage_error(f"unknown classifier(s): {', '.join(unknown)}"))
    bar = _progress(args)
    try:
        data, labels, warnings, y = load_features(args.dataset, args.extractor, args.cache, bar)
        X = get_extractor(args.extractor).classifier_features(data.features)
        results = compare_classifiers(X, y, names, args.folds, progress=bar)
    finally:
        bar.close()
    folds = usable_folds(y, args.folds)
    if folds == 0:
        warnings.append(_no_cv_warning(args.folds))
    rows = []
    for name, cv in results.items():
        rows.append(
            {
                "classifier": name,
                "description": CLASSIFIERS[name][0],
                "accuracy": cv.accuracy if cv else None,
                "accuracy_std": cv.accuracy_std if cv else None,
                "folds": cv.folds if cv else 0,
                "skipped": data.skipped,  # the dataset's, repeated on every JSON line
                "warnings": warnings,
            }
        )
        if args.json:
            _emit(rows[-1])
    if not args.json:
        print(
            f"{args.extractor} features, {len(y)} images, {len(labels)} labels, "
            f"{folds}-fold stratified CV (shuffle, random_state=9)"
        )
        print(f"{'classifier':<12}{'accuracy':>10}{'std':>8}  description")
        for r in rows:
            acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
            std = "" if r["accuracy_std"] is None else f"{r['accuracy_std']:.2%}"
            print(f"{r['classifier']:<12}{acc:>10}{std:>8}  {r['description']}")
        _report_dataset_issues(data.skipped, warnings)
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from provider.artifact import read_header

    meta, _ = read_header(args.model)
    if args.json:
        _emit(meta)
    else:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
    return EXIT_OK


def _usage_error(message: str) -> int:
    print(f"imageclassifier: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from provider.estimators import CLASSIFIERS, DEFAULT_CLASSIFIER
    from provider.features import DEFAULT_EXTRACTOR, EXTRACTORS

    def global_options(parser: argparse.ArgumentParser, default: Any) -> None:
        """On the main parser (default False) and on each subcommand (default SUPPRESS, so
        an option given before the subcommand is not reset by the subparser)."""
        json_help = "machine-readable output (JSON / JSON Lines)"
        parser.add_argument("--json", action="store_true", default=default, help=json_help)
        parser.add_argument(
            "-q", "--quiet", action="store_true", default=default, help="no progress bars"
        )
        parser.add_argument(
            "--debug",
            action="store_true",
            default=default,
            help="log debug messages and tracebacks",
        )

    p = _Parser(prog="imageclassifier", description=__doc__.split("\n")[0])
    global_options(p, False)
    shared = argparse.ArgumentParser(add_help=False)
    global_options(shared, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser, model_default: bool = True) -> None:
        sp.add_argument("--extractor", choices=list(EXTRACTORS), default=DEFAULT_EXTRACTOR)
        sp.add_argument("--classifier", choices=list(CLASSIFIERS), default=DEFAULT_CLASSIFIER)
        sp.add_argument("--cache", type=Path, help="HDF5 feature cache file (created if missing)")
        sp.add_argument("--folds", type=int, default=5, help="CV folds (0 = skip; default 5)")

    t = sub.add_parser(
        "train", parents=[shared], help="train a model from a folder-per-label dataset"
    )
    t.add_argument("dataset", type=Path, nargs="?", help="default: the shipped FLOWERS17 copy")
    t.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="output model file")
    common(t)
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", parents=[shared], help="classify images with a trained model")
    pr.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    pr.add_argument("--top-k", type=int, default=3, choices=range(1, 21), metavar="K")
    pr.add_argument("images", nargs="+", type=Path)
    pr.set_defaults(func=cmd_predict)

    e = sub.add_parser("evaluate", parents=[shared], help="cross-validated accuracy on a dataset")
    e.add_argument("dataset", type=Path)
    e.add_argument(
        "--confusion",
        type=Path,
        help="write a confusion-matrix PNG here (exit 64 with --folds 0; exit 4, after the "
        "scores, when a label has fewer than 2 images)",
    )
    common(e)
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser(
        "compare", parents=[shared], help="score every classifier on the same CV folds"
    )
    c.add_argument("dataset", type=Path)
    c.add_argument("--classifiers", help="comma-separated subset (default: all)")
    common(c)
    c.set_defaults(func=cmd_compare)

    i = sub.add_parser("info", parents=[shared], help="print a model file's metadata")
    i.add_argument("model", type=Path)
    i.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "folds", 5) < 0 or getattr(args, "folds", 5) == 1:
        return _usage_error("--folds must be 0 (skip) or at least 2")
    try:
        return int(args.func(args))
    except ModelError as exc:
        print(f"imageclassifier: model error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    except DatasetError as exc:
        print(f"imageclassifier: dataset error: {exc}", file=sys.stderr)
        return EXIT_DATASET
    except KeyboardInterrupt:
        print("imageclassifier: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"imageclassifier: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
