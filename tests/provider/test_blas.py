"""Processes that predict or train run BLAS on one thread (see provider.blas for why).

Each case runs in a fresh interpreter started with two BLAS threads, so the limit is
observed from a known starting point and does not leak into the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import json, sys
import numpy as np
from threadpoolctl import threadpool_info

def blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})

import sklearn.linear_model  # loads SciPy's BLAS too
before = blas_threads()
"""


def run(body: str) -> dict[str, list[int]]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    code = PRELUDE + body + "\nprint(json.dumps({'before': before, 'after': blas_threads()}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_loading_a_model_limits_blas_to_one_thread(small_model) -> None:
    seen = run(
        f"from provider.model import Classifier\nClassifier.load({str(small_model.path)!r})\n"
    )
    assert seen == {"before": [2], "after": [1]}


def test_training_limits_blas_to_one_thread() -> None:
    body = (
        "from provider.evaluation import cross_validate\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(40, 16)).astype(np.float32)\n"
        "y = np.repeat(np.arange(4), 10)\n"
        "assert cross_validate(X, y, 'lr', 2) is not None\n"
    )
    assert run(body) == {"before": [2], "after": [1]}


def test_importing_the_provider_changes_nothing() -> None:
    """Only loading a model or fitting one limits BLAS; importing is side-effect free."""
    seen = run("import provider.model, provider.evaluation, provider.train\n")
    assert seen == {"before": [2], "after": [2]}
