"""Training: dataset folder -> features (cached) -> CV metrics -> fitted model artifact."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from provider.artifact import save_model
from provider.cache import FeatureCache
from provider.dataset import (
    MAX_LABEL_LENGTH,
    MIN_IMAGES_PER_LABEL,
    DatasetItem,
    dataset_fingerprint,
    scan_dataset,
)
from provider.errors import DatasetError
from provider.estimators import CLASSIFIERS, DEFAULT_CLASSIFIER
from provider.evaluation import NO_CV_WARNING, fit_pipeline
from provider.extraction import ExtractedDataset, extract_items
from provider.features import DEFAULT_EXTRACTOR, get_extractor
from provider.imageio import DEFAULT_MAX_PIXELS
from provider.ood import QUANTILE, SEMANTIC_WEIGHT, SIZE_FACTOR, OpenSetScorer
from provider.quality import Quality, cross_validated_quality
from provider.results import UNKNOWN

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def default_dataset() -> Path:
    """The compact FLOWERS17 copy shipped with the package (17 labels x 80 images)."""
    return PACKAGE_DATA / "flowers17"


@dataclass(slots=True)
class TrainResult:
    model_path: Path
    model_id: str
    labels: tuple[str, ...]
    n_images: int
    accuracy: float | None
    accuracy_std: float | None
    duration_s: float
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    confusion: np.ndarray | None = None
    n_cached: int = 0
    metadata: dict[str, object] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)  # images per label
    per_label_recall: dict[str, float] = field(default_factory=dict)  # cross-validated
    quality: Quality | None = None  # cross-validated figures (provider.quality)


def check_examples(examples: Sequence[DatasetItem]) -> list[DatasetItem]:
    """Explicit (path, label) examples, checked like dataset folder names are.

    Raises :class:`DatasetError` for a label that is empty, too long, not printable or
    the word reserved for "no label".
    """
    out: list[DatasetItem] = []
    for example in examples:
        label = str(example.label)
        if not label.strip() or len(label) > MAX_LABEL_LENGTH or not label.isprintable():
            raise DatasetError(f"{label[:MAX_LABEL_LENGTH]!r} is not a usable label name.")
        if label.lower() == UNKNOWN:
            raise DatasetError(f"{UNKNOWN!r} is the answer for no label; it cannot be taught.")
        out.append(DatasetItem(Path(example.path), label))
    return out


def load_features(
    dataset: Path | None,
    extractor_name: str,
    cache: Path | None,
    progress: Progress | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    examples: Sequence[DatasetItem] = (),
) -> tuple[ExtractedDataset, tuple[str, ...], list[str], np.ndarray]:
    """Featurise a dataset folder and/or explicit examples. Returns (extracted, labels,
    warnings, y). Either may be empty; together they need two labels with readable images."""
    items = check_examples(examples)
    taught = Counter(item.label for item in items)
    warnings: list[str] = [
        f"label {label!r} has only {n} images (at least {MIN_IMAGES_PER_LABEL} advised)"
        for label, n in sorted(taught.items())
        if n < MIN_IMAGES_PER_LABEL
    ]
    scanned_labels: list[str] = []
    if dataset is not None:
        scan = scan_dataset(dataset)
        items = scan.items + items
        warnings += scan.warnings
        scanned_labels += scan.labels
        if scan.ignored:
            warnings.append(f"ignored {len(scan.ignored)} files that are not images")
    extractor = get_extractor(extractor_name)
    feature_cache = FeatureCache(cache, extractor.cache_key, extractor.dim) if cache else None
    data = extract_items(
        items, extractor, cache=feature_cache, progress=progress, max_pixels=max_pixels
    )
    present = sorted({item.label for item in data.items})
    if len(present) < 2:
        where = f" in {dataset}" if dataset is not None else ""
        raise DatasetError(
            f"Only {len(present)} label(s){where} have readable images; need two or more."
        )
    wanted = dict.fromkeys(scanned_labels + [item.label for item in items])
    lost = [lb for lb in wanted if lb not in present]
    if lost:
        warnings.append(f"labels with no readable image were left out: {', '.join(lost)}")
    warnings += _few_readable(items, data.items)
    index = {label: i for i, label in enumerate(present)}
    y = np.array([index[item.label] for item in data.items], np.int64)
    return data, tuple(present), warnings, y


def _few_readable(scanned: list[DatasetItem], readable: list[DatasetItem]) -> list[str]:
    """Labels that had enough files but too few *readable* ones (the scan warns the rest)."""
    files = Counter(item.label for item in scanned)
    ok = Counter(item.label for item in readable)
    return [
        f"label {label!r} has only {ok[label]} readable images "
        f"(at least {MIN_IMAGES_PER_LABEL} advised; {files[label] - ok[label]} unreadable)"
        for label in sorted(ok)
        if ok[label] < MIN_IMAGES_PER_LABEL <= files[label]
    ]


def train_model(
    dataset: Path | str | None,
    out: Path | str,
    *,
    examples: Sequence[DatasetItem] = (),
    extractor: str = DEFAULT_EXTRACTOR,
    classifier: str = DEFAULT_CLASSIFIER,
    cache: Path | str | None = None,
    folds: int = 5,
    progress: Progress | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> TrainResult:
    """Train on a folder-per-label dataset and/or explicit ``examples`` (path, label), and
    write the model artifact to ``out``. ``dataset`` None: the examples only.

    Deterministic: the same images, labels and options give the same model id. With
    ``folds >= 2`` the model's quality is measured by stratified k-fold CV first (set 0 to
    skip): accuracy, own photos answered ``unknown``, recall and a hint per label, and the
    calibration of its confidence (:mod:`provider.quality`). With both a dataset and
    examples, the figures are also summed up over the examples' labels (``metrics.own``:
    a server's own labels beside the default ones). Raises :class:`DatasetError` for an
    unusable dataset; unreadable images are skipped and listed in ``TrainResult.skipped``.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(
            f"unknown classifier {classifier!r}; choose one of: {', '.join(CLASSIFIERS)}"
        )
    started = time.perf_counter()
    dataset = Path(dataset) if dataset is not None else None
    out = Path(out)
    data, labels, warnings, y = load_features(
        dataset, extractor, Path(cache) if cache else None, progress, max_pixels, examples
    )
    ext = get_extractor(extractor)
    # Rows in a canonical order (label, content): the same photos make the same model
    # whether they come from a folder, from taught examples, or both (one code path).
    order = sorted(range(len(y)), key=lambda i: (int(y[i]), data.digests[i]))
    X, y = data.features[order], y[order]
    quality = None
    if folds >= 2:
        quality = cross_validated_quality(
            X,
            y,
            labels,
            classifier,
            ext.classifier_dim,
            folds=folds,
            progress=(lambda d, t: progress("cross-validating", d, t)) if progress else None,
        )
        if quality.folds == 0:
            warnings.append(NO_CV_WARNING)
    if progress:
        progress("fitting", 0, 1)
    pipeline = fit_pipeline(
        classifier, ext.classifier_features(X), np.array(labels, dtype=object)[y]
    )
    ood = OpenSetScorer(ext.classifier_dim).fit(X, y, len(labels))
    per_label = {lb: int(n) for lb, n in zip(labels, np.bincount(y), strict=True)}
    measured = quality is not None and quality.folds > 0
    recall = (
        {lb: float(q.recall or 0.0) for lb, q in quality.per_label.items()}
        if quality is not None and measured
        else {}
    )
    if not ext.detects_unknown:
        warnings.append(
            f"with the {ext.name!r} extractor the model rarely answers 'unknown' for images "
            "of other subjects; use 'cnn' for that"
        )
    own = sorted({item.label for item in examples}) if dataset is not None and examples else None
    metrics: dict[str, object] = {
        "cv_accuracy": quality.closed_accuracy if quality else None,
        "cv_accuracy_std": quality.closed_accuracy_std if quality else None,
        "cv_folds": quality.folds if quality else 0,
        "per_label_recall": recall,
        "cv_open_accuracy": quality.accuracy if quality else None,
        "cv_unknown_rate": quality.unknown_rate if quality else None,
        "cv_ece": quality.ece if quality else None,
        "per_label": {lb: q.to_json() for lb, q in quality.per_label.items()} if quality else {},
    }
    if own and quality is not None:
        metrics["own"] = {"labels": own, **quality.summary(own)}
    metadata: dict[str, object] = {
        "labels": list(labels),
        "extractor": {
            "name": ext.name,
            "version": ext.version,
            "dim": ext.dim,
            "classifier_dim": ext.classifier_dim,
        },
        "classifier": classifier,
        "dataset": {
            "fingerprint": dataset_fingerprint(data.digests, [i.label for i in data.items]),
            "n_images": len(y),
            "per_label": per_label,
        },
        "metrics": metrics,
        "calibration": {
            "method": "temperature",
            "temperature": quality.temperature if quality else 1.0,
        },
        "ood": {
            "method": "nearest-neighbour, per-label thresholds by label size",
            "semantic_weight": SEMANTIC_WEIGHT,
            "quantile": QUANTILE,
            "size_factor": SIZE_FACTOR,
            "thresholds": {
                lb: round(float(t), 6) for lb, t in zip(labels, ood.thresholds_, strict=True)
            },
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    artifact = save_model(pipeline, ood, metadata, out)
    if progress:
        progress("fitting", 1, 1)
    duration = time.perf_counter() - started
    log.info("trained %s on %d images in %.1f s", artifact.model_id, len(y), duration)
    return TrainResult(
        model_path=out,
        model_id=artifact.model_id,
        labels=labels,
        n_images=len(y),
        accuracy=quality.closed_accuracy if measured and quality else None,
        accuracy_std=quality.closed_accuracy_std if measured and quality else None,
        duration_s=duration,
        skipped=data.skipped,
        warnings=warnings,
        confusion=quality.confusion if quality else None,
        n_cached=data.n_cached,
        metadata=artifact.metadata,
        label_counts=per_label,
        per_label_recall=recall,
        quality=quality,
    )
