"""The previous engine, for measuring it in the same run as the current one: the float32
network on ``cv2.dnn``, as the project ran it (``n`` single-threaded networks fed
``BATCH_SIZE`` images per pass; one image on one network with ``n`` OpenCV threads)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from provider.features import cnn


class OpenCvPool(cnn.NetworkPool):
    def __init__(self, n: int) -> None:
        super().__init__(n, "fp32")
        cv2.setNumThreads(1)
        self._nets: queue.SimpleQueue[cnn.OpenCvBackbone] = queue.SimpleQueue()
        for _ in range(self.size):
            self._nets.put(cnn.OpenCvBackbone())
        self._lock = threading.Lock()

    def _run(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        net = self._nets.get()
        try:
            return self._forward(net, images)
        finally:
            self._nets.put(net)

    def _solo(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        with self._lock:
            nets = [self._nets.get() for _ in range(self.size)]
        try:
            cv2.setNumThreads(self.size)
            return self._forward(nets[0], images)
        finally:
            cv2.setNumThreads(1)
            for net in nets:
                self._nets.put(net)


@contextlib.contextmanager
def opencv_engine(n: int | None = None) -> Iterator[None]:
    """Within the block, ``cnn.network("fp32")`` is the cv2.dnn pool."""
    key = "fp32"
    saved = cnn._NETWORKS.get(key)
    cnn._NETWORKS[key] = OpenCvPool(n or cnn.default_parallelism())  # type: ignore[assignment]
    try:
        yield
    finally:
        if saved is None:
            cnn._NETWORKS.pop(key, None)
        else:
            cnn._NETWORKS[key] = saved
