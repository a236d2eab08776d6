"""The benchmark scripts start the way the Makefile and their docstrings say (``--help``).

Running them is the benchmark's job (minutes each, see docs/benchmarks.md); this only guards the
entry points, which once broke unnoticed (``python bench/x.py`` cannot import ``bench``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (REPO / "bench").glob("bench_*.py"))


def test_every_benchmark_has_a_make_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert set(re.findall(r"-m bench\.(\w+)", makefile)) == set(SCRIPTS)
    assert "python bench/" not in makefile


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_starts_as_documented(name: str) -> None:
    doc = (REPO / "bench" / f"{name}.py").read_text()
    assert f"python -m bench.{name}" in doc
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
