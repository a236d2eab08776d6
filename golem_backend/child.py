"""Code that runs inside the local backend's child processes (never in the bot's process).

Two kinds of child process use this module:

* classifier workers (one ``ProcessPoolExecutor(max_workers=1)`` each): ``init_worker``
  limits native threads and loads the model once; ``describe`` and ``classify_batch`` run
  on the warm model, reloading it first when the requested model id differs from the one
  in memory (that is how a swapped-in model is detected);
* the training process: ``train_in_process`` trains a model and streams progress and the
  result back through a pipe as plain tuples and dicts.

Heavy imports (numpy, OpenCV, scikit-learn, ``provider.model``) happen inside functions,
after the thread limits are set through the environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(slots=True)
class _WorkerState:
    model: Any = None  # provider.model.Classifier, imported lazily
    key: tuple[str, str] | None = None  # (model path, model id) of ``model``
    load_error: Exception | None = None
    hang_next_load: bool = False  # test hook: see hang_on_next_load_for_tests()
    heads: Any = None  # provider.heads.HeadCache: the servers' heads, created lazily
    head_cache_bytes: int = 256 * 2**20


_STATE = _WorkerState()


def limit_threads(threads: int | None) -> None:
    """Cap the native thread pools of this process (OpenCV, BLAS, OpenMP); None = leave as is."""
    if threads is None:
        return
    for name in _THREAD_ENV_VARS:
        os.environ[name] = str(threads)
    import cv2  # after the environment, so OpenMP/BLAS read it when they initialise

    cv2.setNumThreads(threads)
    from provider.features import cnn

    cnn.set_parallelism(1)  # one network per process: the workers are the parallelism
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return
    threadpool_limits(threads)


def init_worker(model_path: str, threads: int | None, head_cache_bytes: int | None = None) -> None:
    """``ProcessPoolExecutor`` initializer: set thread limits, load the model once.

    ``head_cache_bytes`` bounds the memory of the servers' heads kept loaded (LRU).

    A load failure is kept (not raised: an initializer exception would break the pool) and
    raised by the first task, so the parent learns *why* the model is unusable.
    """
    limit_threads(threads)
    if head_cache_bytes is not None:
        _STATE.head_cache_bytes = head_cache_bytes
    try:
        _load(model_path)
    except Exception as exc:  # reported to the parent by describe()/classify_batch()
        _STATE.model, _STATE.key, _STATE.load_error = None, None, exc


def _load(model_path: str) -> Any:
    from provider.model import Classifier

    if _STATE.hang_next_load:  # test hook: a load that never ends (e.g. a stuck NFS read)
        _STATE.hang_next_load = False
        threading.Event().wait()

    model = Classifier.load(Path(model_path))
    _STATE.model, _STATE.key, _STATE.load_error = model, (model_path, model.model_id), None
    return model


def _ensure_model(model_path: str, model_id: str | None) -> Any:
    """The warm model, reloaded from ``model_path`` when ``model_id`` says it was swapped."""
    state = _STATE
    if state.model is not None and (model_id is None or state.key == (model_path, model_id)):
        return state.model
    if state.model is None and state.load_error is not None and model_id is None:
        raise state.load_error
    model = _load(model_path)
    if model_id is not None and model.model_id != model_id:
        log.warning("expected model %s at %s, found %s", model_id, model_path, model.model_id)
    return model


def describe(model_path: str, model_id: str | None = None) -> dict[str, Any]:
    """Warm-up/health task: load the model if needed and say what this worker serves."""
    model = _ensure_model(model_path, model_id)
    return {
        "pid": os.getpid(),
        "model_id": model.model_id,
        "labels": tuple(model.labels),
        "accuracy": model.accuracy,  # cross-validated, from the model's metadata
    }


def classify_batch(
    model_path: str,
    model_id: str,
    sources: Sequence[bytes],
    top_k: int,
    max_pixels: int,
    heads: Sequence[tuple[str, str] | None] | None = None,
    cores: int = 1,
) -> tuple[int, str, list[Any]]:
    """Classify encoded images in one forward pass; returns (pid, model id, outcomes).

    ``heads`` names, per image, the (model id, file) of the head that answers it, or None
    for the default model. An image whose head cannot be loaded gets that ``ModelError``
    as its outcome; the other images are answered normally. ``cores``: how many cores a
    lone image may use (the parent lends the idle workers' cores; 1 = this worker's own).
    """
    from provider.features import cnn

    with cnn.lend_cores(cores):
        return _classify_batch(model_path, model_id, sources, top_k, max_pixels, heads)


def _classify_batch(
    model_path: str,
    model_id: str,
    sources: Sequence[bytes],
    top_k: int,
    max_pixels: int,
    heads: Sequence[tuple[str, str] | None] | None,
) -> tuple[int, str, list[Any]]:
    model = _ensure_model(model_path, model_id)
    if heads is None or all(head is None for head in heads):
        outcomes = model.classify_sources(list(sources), top_k=top_k, max_pixels=max_pixels)
        return os.getpid(), model.model_id, list(outcomes)
    from provider.errors import ModelError
    from provider.heads import HeadKey, classify_with_heads

    cache = _head_cache()
    loaded: dict[tuple[str, str], Any] = {}
    for head in heads:
        if head is not None and head not in loaded:
            try:
                loaded[head] = cache.get(HeadKey(*head))
            except ModelError as exc:
                loaded[head] = exc
    chosen = [loaded[head] if head is not None else None for head in heads]
    outcomes = classify_with_heads(model, list(sources), chosen, top_k, max_pixels=max_pixels)
    return os.getpid(), model.model_id, outcomes


def _head_cache() -> Any:
    if _STATE.heads is None:
        from provider.heads import HeadCache

        _STATE.heads = HeadCache(_STATE.head_cache_bytes)
    return _STATE.heads


def head_cache_stats() -> dict[str, int]:
    """Heads in memory, their bytes and the budget, hits, loads and evictions so far."""
    return dict(_head_cache().stats(), pid=os.getpid())


def exit_for_tests(code: int) -> None:
    """Test hook: end this worker abruptly, as a segfault or the OOM killer would."""
    os._exit(code)


def hang_on_next_load_for_tests() -> None:
    """Test hook: the next model load in this worker blocks for ever."""
    _STATE.hang_next_load = True


# --- training process ----------------------------------------------------------------------


def quality_summary(metrics: dict[str, Any], model: Any) -> dict[str, Any]:
    """What a retrain reports of its model's quality (JSON-safe; see ``TrainReport.extra``):
    the cross-validated figures over the server's own labels when the default labels were
    trained beside them, else over all labels; per-label figures and photo hints; the
    confidence calibration and the head's size."""
    own = metrics.get("own") or {}
    per_label = dict(metrics.get("per_label") or {})
    scope = list(own.get("labels") or per_label)
    return {
        "labels": scope,  # the labels the summary is over
        "cv_accuracy": metrics.get("cv_accuracy"),  # closed set, all labels
        "accuracy": own.get("accuracy", metrics.get("cv_open_accuracy")),
        "unknown_rate": own.get("unknown_rate", metrics.get("cv_unknown_rate")),
        "ece": metrics.get("cv_ece"),
        "per_label": {label: per_label[label] for label in scope if label in per_label},
        "hints": [
            {"label": label, "add": int(q["add_photos"]), "reason": q["reason"]}
            for label in scope
            if (q := per_label.get(label)) and q.get("add_photos")
        ],
        "temperature": (model.metadata.get("calibration") or {}).get("temperature"),
        "thresholds": dict((model.metadata.get("ood") or {}).get("thresholds") or {}),
        "head_bytes": int(model.metadata.get("payload_size") or 0),
    }


def train_in_process(
    conn: Connection,
    dataset: str | None,
    out: str,
    cache: str | None,
    threads: int | None,
    niceness: int,
    examples: Sequence[tuple[str, str]] = (),
) -> None:
    """Target of the training process: train, validate, report through ``conn``.

    ``dataset`` (a folder-per-label dataset, or None) and ``examples`` ((path, label) pairs)
    are trained on together.

    Messages: ``("progress", stage, done, total)`` any number of times, then exactly one of
    ``("done", summary_dict)`` or ``("error", code, message)``.
    """
    if niceness:
        with contextlib.suppress(OSError):  # lower priority is a courtesy, not a must
            os.nice(niceness)
    limit_threads(threads)
    send_lock = threading.Lock()  # progress may be reported from several training threads

    def send(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    def progress(stage: str, done: int, total: int) -> None:
        send(("progress", str(stage), int(done), int(total)))

    try:
        send(("done", _train(dataset, out, cache, progress, examples)))
    except Exception as exc:
        from provider.errors import ClassifierError

        if isinstance(exc, ClassifierError):
            send(("error", exc.code, exc.message))
        else:
            traceback.print_exc()
            send(("error", "internal", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _train(
    dataset: str | None,
    out: str,
    cache: str | None,
    progress: Any,
    examples: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    from provider.dataset import DatasetItem
    from provider.model import Classifier
    from provider.report import confusion_png
    from provider.train import train_model

    result = train_model(
        Path(dataset) if dataset is not None else None,
        Path(out),
        examples=[DatasetItem(Path(path), label) for path, label in examples],
        cache=Path(cache) if cache else None,
        progress=progress,
        # the dataset a server keeps beside its photos is the one its heads share
        shared_base=Path(dataset) if dataset is not None else None,
    )
    model = Classifier.load(Path(result.model_path))  # never swap in an unloadable artifact
    metrics = dict(model.metadata.get("metrics") or {})
    return {
        "model_path": str(result.model_path),
        "model_id": model.model_id,
        "labels": tuple(model.labels),
        "n_images": int(result.n_images),
        "accuracy": model.accuracy,
        "accuracy_std": float(result.accuracy_std) if result.accuracy_std is not None else None,
        "duration_s": float(result.duration_s),
        "skipped": tuple(str(s) for s in result.skipped),
        "warnings": tuple(str(w) for w in result.warnings),
        "label_counts": dict(result.label_counts),
        "per_label_recall": dict(result.per_label_recall),
        # rows = true label, columns = predicted, in the order of ``result.labels``
        "confusion": (
            [[int(n) for n in row] for row in result.confusion.tolist()]
            if result.confusion is not None
            else None
        ),
        "confusion_labels": tuple(str(label) for label in result.labels),
        "quality": quality_summary(metrics, model),
        # Rendered here, in the training process, to keep it off the bot's event loop.
        "confusion_png": (
            confusion_png(result.confusion, result.labels) if result.confusion is not None else None
        ),
    }
