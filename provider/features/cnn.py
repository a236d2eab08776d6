"""EfficientNet-Lite0 ImageNet features, run by ONNX Runtime on the CPU (no torch at run time).

Two committed networks, each with a manifest that records its sha256:

* ``efficientnet_lite0.onnx``: float32, made by ``tools/convert_efficientnet.py``;
* ``efficientnet_lite0_int8.onnx``: statically quantised (QDQ, int8) from the float32 one
  by ``tools/quantize_efficientnet.py`` (provenance and calibration images in its manifest).

OpenCV's ``cv2.dnn`` ran the float32 network before; :class:`OpenCvBackbone` keeps it as the
reference the tests and benchmarks compare ONNX Runtime with. It is not used to serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from provider.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ONNX_PATH = MODELS_DIR / "efficientnet_lite0.onnx"
MANIFEST_PATH = MODELS_DIR / "efficientnet_lite0.json"
INT8_ONNX_PATH = MODELS_DIR / "efficientnet_lite0_int8.onnx"
INT8_MANIFEST_PATH = MODELS_DIR / "efficientnet_lite0_int8.json"

Variant = Literal["fp32", "int8"]

INPUT_SIZE = 224  # network input, pixels
RESIZE_SHORTER = 256  # shorter side before the centre crop, pixels
DECODE_MIN_SIDE = 240
"""Shorter side a JPEG may be DCT-downscaled to while decoding (and any image box-shrunk
to): a photo of 500 x 666 pixels decodes at half scale, 250 x 333, and is enlarged by 2.4%
to the 256 of the crop, instead of a full decode and an area reduction (about 3 ms less
per photo). Measured on FLOWERS17 5-fold: see bench/bench_engines.py."""
HEAD_DIM = 1280  # pooled head activations
STAGE_DIMS = (80, 112, 192, 320)  # pooled outputs of blocks 7, 10, 14, 15
EMBEDDING_DIM = HEAD_DIM + sum(STAGE_DIMS)  # 1984
IMAGENET_CLASSES = 1000
BATCH_SIZE = 2  # images per forward pass; small passes stay in cache (bench/bench_network.py)
MAX_ASPECT = 4  # longer side kept before resizing, in multiples of the shorter side
OUTPUTS = ("features", "logits", "stages")


def reduce_for_network(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> the smallest image :func:`preprocess` gives the same crop from.

    An extreme panorama is cut to ``MAX_ASPECT``:1 around its centre, then an image whose
    shorter side exceeds ``RESIZE_SHORTER`` is shrunk to it (``cv2.INTER_AREA``); smaller
    images are returned as they are. Run right after decoding, so a 40-megapixel image
    is held at full size only inside the decoder (about 250 KB afterwards, not 120 MB).
    """
    h, w = rgb.shape[:2]
    cap = MAX_ASPECT * min(h, w)
    if h > cap:
        rgb = rgb[(h - cap) // 2 : (h - cap) // 2 + cap]
    if w > cap:
        rgb = rgb[:, (w - cap) // 2 : (w - cap) // 2 + cap]
    h, w = rgb.shape[:2]
    scale = RESIZE_SHORTER / min(h, w)
    if scale >= 1:
        return rgb
    size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (224, 224, 3) uint8: shorter side 256, centre crop 224.

    An extreme panorama is first cut to ``MAX_ASPECT``:1 around its centre (the crop keeps
    only the centre anyway): a 1 x 20000 image would otherwise be resized to
    256 x 5 120 000 pixels (4 GB). The same result whether or not ``rgb`` already went
    through :func:`reduce_for_network`.
    """
    rgb = reduce_for_network(rgb)
    h, w = rgb.shape[:2]
    if min(h, w) != RESIZE_SHORTER:  # smaller than 256: enlarge (bicubic: see DECODE_MIN_SIDE)
        scale = RESIZE_SHORTER / min(h, w)
        size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
        h, w = rgb.shape[:2]
    top, left = (h - INPUT_SIZE) // 2, (w - INPUT_SIZE) // 2
    return rgb[top : top + INPUT_SIZE, left : left + INPUT_SIZE]


def to_blob(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (224, 224, 3) uint8 crops into the network input: float32 NCHW, (x - 127) / 128."""
    batch = np.stack(crops).astype(np.float32)
    batch -= 127.0
    batch *= 1.0 / 128.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def _paths(variant: Variant) -> tuple[Path, Path]:
    return (INT8_ONNX_PATH, INT8_MANIFEST_PATH) if variant == "int8" else (ONNX_PATH, MANIFEST_PATH)


@cache
def _verified_onnx_bytes(variant: Variant = "fp32") -> bytes:
    onnx_path, manifest_path = _paths(variant)
    try:
        data = onnx_path.read_bytes()
        expected = json.loads(manifest_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"The network weights are missing or unreadable ({onnx_path}).") from exc
    if hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"The network weights {onnx_path.name} are corrupted (sha256 mismatch).")
    return data


def _signed_sqrt_l2(x: np.ndarray) -> np.ndarray:
    """Row-wise signed square root, then unit L2 norm (power normalisation)."""
    x = np.sign(x) * np.sqrt(np.abs(x))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embed(head: np.ndarray, stages: np.ndarray) -> np.ndarray:
    """Network outputs -> the (N, 1984) float32 embedding: each block power-normalised.

    Normalising the head and each stage separately keeps the 1280-d head from drowning
    the smaller stage vectors; measured +1.0 point of CV accuracy on FLOWERS17.
    """
    parts = [_signed_sqrt_l2(head)]
    start = 0
    for width in STAGE_DIMS:
        parts.append(_signed_sqrt_l2(stages[:, start : start + width]))
        start += width
    return np.concatenate(parts, axis=1).astype(np.float32)


class Backbone(Protocol):
    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class OnnxBackbone:
    """One ONNX Runtime session (CPU): prepared blobs -> (head, logits, stages).

    ``threads`` is the session's intra-op thread count. ``run`` is thread-safe: with one
    intra-op thread each call computes on its caller's thread, so ``n`` threads calling
    one session use ``n`` cores. A session with several threads serves a lone image on
    otherwise idle cores: its pool threads spin between the graph's operators
    (``allow_spinning``; measured 6.5 ms instead of 7.3-9.7 ms per image on two
    threads). Batches never run on such a session (they keep one thread per core), so
    the brief spin after a run takes no core from a decoder.
    """

    def __init__(self, variant: Variant = "fp32", threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spin = "1" if threads > 1 else "0"  # see the class docstring
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        try:
            self._session = ort.InferenceSession(
                _verified_onnx_bytes(variant), opts, providers=["CPUExecutionProvider"]
            )
        except ModelError:
            raise
        except Exception as exc:  # onnxruntime raises its own (unexported) exception types
            raise ModelError(f"The {variant} network cannot be loaded: {exc}") from exc

    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run a prepared NCHW float32 blob; returns float32 (head, logits, stages)."""
        head, logits, stages = self._session.run(OUTPUTS, {"input": blob})
        return head, logits, stages


class OpenCvBackbone:
    """The float32 network on ``cv2.dnn``: the previous engine, kept as a reference for the
    tests and benchmarks (same outputs, half the speed). Not thread-safe."""

    def __init__(self) -> None:
        data = np.frombuffer(_verified_onnx_bytes("fp32"), dtype=np.uint8)
        # OpenCV 4.10-4.13 have two ONNX importers and ENGINE_NEW picks the one that reads
        # this graph; 4.14 and later have only that one and dropped the constant.
        engine = getattr(cv2.dnn, "ENGINE_NEW", None)
        if engine is None:
            self._net = cv2.dnn.readNetFromONNX(data)
        else:
            self._net = cv2.dnn.readNetFromONNX(data, engine=engine)

    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._net.setInput(blob)
        head, logits, stages = self._net.forward(list(OUTPUTS))
        return (
            np.asarray(head, np.float32),
            np.asarray(logits, np.float32),
            np.asarray(stages, np.float32),
        )


class NetworkPool:
    """``n`` cores' worth of network; batches of images run in ``n`` parallel threads.

    Measured on the 2-core reference machine, whole path (decode, reduce, network, embed;
    ``bench/bench_network.py``): two threads each running ``BATCH_SIZE`` images per pass
    on a one-thread session give the most images per second, while a single image is
    fastest on one session using every core. So a one-image call waits until no other
    pass runs and uses the ``n``-thread session; larger calls are spread over the
    threads, or, inside :func:`on_one_core` (the extraction lanes, which decode on the
    same threads), run on the calling thread. A process that runs one pool per core (the
    local backend's workers) uses ``n = 1``: one session, one thread.
    """

    def __init__(self, n: int, variant: Variant = "fp32") -> None:
        self.size = max(1, n)
        self.variant = variant
        self._single_thread = OnnxBackbone(variant, 1)
        self._all_threads = OnnxBackbone(variant, self.size) if self.size > 1 else None
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()  # one per core
        for i in range(self.size):
            self._slots.put(i)
        self._threads = (
            ThreadPoolExecutor(self.size, thread_name_prefix="cnn") if self.size > 1 else None
        )
        self._whole_pool = threading.Lock()  # serialises callers that take every slot
        self._lent: dict[int, OnnxBackbone] = {}  # sessions for lend_cores(), by threads

    def _forward(self, backbone: Backbone, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        head, logits, stages = backbone.forward_blob(to_blob([preprocess(im) for im in images]))
        return embed(head, stages), logits

    def _run(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        slot = self._slots.get()
        try:
            return self._forward(self._single_thread, images)
        finally:
            self._slots.put(slot)

    def _solo(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """All cores on one pass: wait until no other pass runs, then use n threads."""
        with self._whole_pool:
            slots = [self._slots.get() for _ in range(self.size)]
        try:
            return self._forward(self._all_threads or self._single_thread, images)
        finally:
            for slot in slots:
                self._slots.put(slot)

    def _lent_backbone(self, cores: int) -> OnnxBackbone:
        """A session with ``cores`` threads, made on first use (see :func:`lend_cores`)."""
        backbone = self._lent.get(cores)
        if backbone is None:
            backbone = self._lent[cores] = OnnxBackbone(self.variant, cores)
        return backbone

    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slot = self._slots.get()
        try:
            return self._single_thread.forward_blob(blob)
        finally:
            self._slots.put(slot)

    def __call__(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 images of any size -> (embedding (N, 1984), logits (N, 1000)), float32.

        ``batch_size``: images per forward pass, default ``BATCH_SIZE`` (read at call time).
        """
        if not images:
            empty = np.zeros((0, EMBEDDING_DIM), np.float32)
            return empty, np.zeros((0, IMAGENET_CLASSES), np.float32)
        if getattr(_ONE_CORE, "active", False):  # a lane: its passes on its own thread
            step = batch_size or BATCH_SIZE
            parts = [self._run(images[i : i + step]) for i in range(0, len(images), step)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        if self._threads is not None and len(images) == 1:
            emb, logits = self._solo(images)
            return emb, logits
        if len(images) == 1 and self.size < _LENT_CORES:
            emb, logits = self._forward(self._lent_backbone(_LENT_CORES), images)
            return emb, logits
        size = min(batch_size or BATCH_SIZE, -(-len(images) // self.size))
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        if self._threads is None or len(chunks) == 1:
            parts = [self._run(c) for c in chunks]
        else:
            parts = list(self._threads.map(self._run, chunks))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def default_parallelism() -> int:
    """Cores per process: ``CLASSIFIER_NETS`` if set, else min(2, usable cores)."""
    configured = os.environ.get("CLASSIFIER_NETS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, min(2, len(os.sched_getaffinity(0))))


_LENT_CORES = 1
_ONE_CORE = threading.local()


@contextmanager
def on_one_core() -> Iterator[None]:
    """Within this block, in this thread, the network runs every call in the calling
    thread on one core's session.

    For callers that keep one thread per core busy themselves (the extraction lanes of
    :func:`provider.extraction.featurise`): each lane decodes its images and runs them
    through the network on the same core, instead of handing them to the pool's threads.
    """
    previous = getattr(_ONE_CORE, "active", False)
    _ONE_CORE.active = True
    try:
        yield
    finally:
        _ONE_CORE.active = previous


@contextmanager
def lend_cores(cores: int) -> Iterator[None]:
    """Within this block a lone image may run on ``cores`` threads instead of this
    process's share.

    For a local worker (one core's share) whose sibling workers are idle: the parent
    knows, the worker does not. Measured on the 2-core machine, quiet: a lone image's
    pass takes about 11 ms on one thread and 7 ms on two. Not thread-safe: a worker runs
    one batch at a time.
    """
    global _LENT_CORES
    previous, _LENT_CORES = _LENT_CORES, max(1, cores)
    try:
        yield
    finally:
        _LENT_CORES = previous


_NETWORKS: dict[Variant, NetworkPool] = {}
_NETWORK_LOCK = threading.Lock()
_PARALLELISM: int | None = None


def set_parallelism(n: int) -> None:
    """Cores per process for :func:`network` (call before first use)."""
    global _PARALLELISM
    _PARALLELISM = n


def parallelism() -> int:
    """Cores this process gives the network (:func:`set_parallelism`, else the default)."""
    return _PARALLELISM or default_parallelism()


def network(variant: Variant = "fp32") -> NetworkPool:
    """The process-wide network pool of ``variant``, loaded on first use."""
    with _NETWORK_LOCK:
        pool = _NETWORKS.get(variant)
        if pool is None:
            pool = _NETWORKS[variant] = NetworkPool(parallelism(), variant)
        return pool
