"""EfficientNet-Lite0 ImageNet features, run by OpenCV's ``cv2.dnn`` (no torch at run time).

The network file is ``provider/models/efficientnet_lite0.onnx`` (made by
``tools/convert_efficientnet.py``); its sha256 is recorded in ``efficientnet_lite0.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from provider.errors import ModelError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
ONNX_PATH = MODELS_DIR / "efficientnet_lite0.onnx"
MANIFEST_PATH = MODELS_DIR / "efficientnet_lite0.json"

INPUT_SIZE = 224  # network input, pixels
RESIZE_SHORTER = 256  # shorter side before the centre crop, pixels
HEAD_DIM = 1280  # pooled head activations
STAGE_DIMS = (80, 112, 192, 320)  # pooled outputs of blocks 7, 10, 14, 15
EMBEDDING_DIM = HEAD_DIM + sum(STAGE_DIMS)  # 1984
IMAGENET_CLASSES = 1000
BATCH_SIZE = 2  # images per forward pass; small passes stay in cache (bench/bench_network.py)
MAX_ASPECT = 4  # longer side kept before resizing, in multiples of the shorter side


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (224, 224, 3) uint8: shorter side 256, centre crop 224.

    An extreme panorama is first cut to ``MAX_ASPECT``:1 around its centre (the crop keeps
    only the centre anyway): a 1 x 20000 image would otherwise be resized to
    256 x 5 120 000 pixels (4 GB). Ordinary photos are unchanged.
    """
    h, w = rgb.shape[:2]
    cap = MAX_ASPECT * min(h, w)
    if h > cap:
        rgb = rgb[(h - cap) // 2 : (h - cap) // 2 + cap]
    if w > cap:
        rgb = rgb[:, (w - cap) // 2 : (w - cap) // 2 + cap]
    h, w = rgb.shape[:2]
    scale = RESIZE_SHORTER / min(h, w)
    new_w, new_h = max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    top, left = (new_h - INPUT_SIZE) // 2, (new_w - INPUT_SIZE) // 2
    return resized[top : top + INPUT_SIZE, left : left + INPUT_SIZE]


def to_blob(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Stack (224, 224, 3) uint8 crops into the network input: float32 NCHW, (x - 127) / 128."""
    batch = np.stack(crops).astype(np.float32)
    batch -= 127.0
    batch *= 1.0 / 128.0
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


@cache
def _verified_onnx_bytes() -> bytes:
    try:
        data = ONNX_PATH.read_bytes()
        expected = json.loads(MANIFEST_PATH.read_text())["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"The network weights are missing or unreadable ({ONNX_PATH}).") from exc
    if hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"The network weights {ONNX_PATH.name} are corrupted (sha256 mismatch).")
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


class EfficientNetLite0:
    """One ``cv2.dnn.Net``: prepared blobs -> (head, logits, stages). Not thread-safe."""

    def __init__(self) -> None:
        data = np.frombuffer(_verified_onnx_bytes(), dtype=np.uint8)
        self._net = cv2.dnn.readNetFromONNX(data, engine=cv2.dnn.ENGINE_NEW)

    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run a prepared NCHW float32 blob; returns float32 (head, logits, stages)."""
        self._net.setInput(blob)
        head, logits, stages = self._net.forward(["features", "logits", "stages"])
        return (
            np.asarray(head, np.float32),
            np.asarray(logits, np.float32),
            np.asarray(stages, np.float32),
        )


class NetworkPool:
    """``n`` networks; batches of images run on them in parallel threads.

    OpenCV releases the GIL. On this project's 2-core reference machine two single-threaded
    networks, each fed ``BATCH_SIZE`` images per forward pass, give the most images per
    second (``bench/bench_network.py``: 79-83 images/s against 62 with 8 images per pass
    and 69 for one network with two threads), while a single image is fastest on one
    network using every thread (12 ms instead of 20). So a one-image call takes the whole
    pool and runs with ``n`` OpenCV threads; larger calls are spread over the networks, one
    thread each. A process that runs one pool per core (the
    local backend's workers) uses ``n = 1`` and keeps the threads it configured.
    """

    def __init__(self, n: int) -> None:
        self.size = max(1, n)
        if self.size > 1:
            cv2.setNumThreads(1)
        self._free: queue.SimpleQueue[EfficientNetLite0] = queue.SimpleQueue()
        for _ in range(self.size):
            self._free.put(EfficientNetLite0())
        self._threads = (
            ThreadPoolExecutor(self.size, thread_name_prefix="cnn") if self.size > 1 else None
        )
        self._whole_pool = threading.Lock()  # serialises callers that take every network

    def _run(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        net = self._free.get()
        try:
            head, logits, stages = net.forward_blob(to_blob([preprocess(im) for im in images]))
        finally:
            self._free.put(net)
        return embed(head, stages), logits

    def _solo(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All cores on one network: wait until no other forward runs, then use n threads."""
        with self._whole_pool:
            nets = [self._free.get() for _ in range(self.size)]
        try:
            cv2.setNumThreads(self.size)
            head, logits, stages = nets[0].forward_blob(to_blob([preprocess(im) for im in images]))
        finally:
            cv2.setNumThreads(1)
            for net in nets:
                self._free.put(net)
        return embed(head, stages), logits

    def forward_blob(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        net = self._free.get()
        try:
            return net.forward_blob(blob)
        finally:
            self._free.put(net)

    def __call__(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 images of any size -> (embedding (N, 1984), logits (N, 1000)), float32.

        ``batch_size``: images per forward pass, default ``BATCH_SIZE`` (read at call time).
        """
        if not images:
            empty = np.zeros((0, EMBEDDING_DIM), np.float32)
            return empty, np.zeros((0, IMAGENET_CLASSES), np.float32)
        # Small forward passes, shared out over the networks as each one becomes free.
        size = min(batch_size or BATCH_SIZE, -(-len(images) // self.size))
        chunks = [images[i : i + size] for i in range(0, len(images), size)]
        if self._threads is not None and len(images) == 1:
            return self._solo(images)
        if self._threads is None or len(chunks) == 1:
            parts = [self._run(c) for c in chunks]
        else:
            parts = list(self._threads.map(self._run, chunks))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def default_parallelism() -> int:
    """Networks per process: ``CLASSIFIER_NETS`` if set, else min(2, usable cores)."""
    configured = os.environ.get("CLASSIFIER_NETS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, min(2, len(os.sched_getaffinity(0))))


_NETWORK: NetworkPool | None = None
_NETWORK_LOCK = threading.Lock()
_PARALLELISM: int | None = None


def set_parallelism(n: int) -> None:
    """Networks per process for :func:`network` (call before first use)."""
    global _PARALLELISM
    _PARALLELISM = n


def network() -> NetworkPool:
    """The process-wide network pool, loaded on first use."""
    global _NETWORK
    with _NETWORK_LOCK:
        if _NETWORK is None:
            _NETWORK = NetworkPool(_PARALLELISM or default_parallelism())
        return _NETWORK
