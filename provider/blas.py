"""One BLAS thread for the classifier's matrix work, in every process that runs it.

The matrix work here is small (a logistic regression over 2 000 features, kNN distances to
1 400 training rows) and runs between or beside the network's forward passes (ONNX Runtime),
which already use every core. Multi-threaded OpenBLAS loses twice: its threads fight the
network for the cores, and after each call they spin before sleeping, stealing the cores
from the next forward pass. Measured on the 2-core reference machine (bench/bench_classifier.py):
one image back to back 26 ms -> 17 ms, batches 59 -> 70 images/s, and 5-fold CV of the
default model 1.7 s -> 0.4 s. One thread also makes the floating-point sums, and so the
model id, independent of the machine's core count.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def use_one_blas_thread() -> None:
    """Limit the BLAS libraries loaded so far to one thread, for the rest of the process.

    Call it after scikit-learn is imported (it loads SciPy's BLAS). Cheap (about 2 ms) and
    idempotent; not undone on purpose.
    """
    threadpool_limits(limits=1, user_api="blas")
