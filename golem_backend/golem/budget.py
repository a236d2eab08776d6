"""Raising the Golem budget of a running bot, without a restart.

``python -m golem_backend.golem.budget 5`` (in the bot's environment: same ``.env`` and
``DATA_DIR``; with compose, ``docker compose exec bot python -m golem_backend.golem.budget
5``) writes the new total budget in GLM to ``DATA_DIR/golem-budget.json``. Every running
Golem backend reading that ``DATA_DIR`` looks at the file about once a second and takes a
budget written after it started (:class:`BudgetFile`): when its budget was spent it
reconnects to yagna with an allocation of what is now left and starts instances again; when
it is still running, the new budget applies once the current allocation is used up (yapapi
allocates its whole budget once per connection). A restart goes back to
``GOLEM_BUDGET_GLM``: set it in ``.env`` too to keep the new figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

FILE_NAME = "golem-budget.json"
MAX_GLM = 1000.0  # GOLEM_BUDGET_GLM's own bound
_MAX_FILE_BYTES = 4096


def budget_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write_budget(data_dir: Path, budget_glm: float) -> Path:
    """Write the budget atomically; raises ValueError for a budget out of (0, MAX_GLM]."""
    if not (math.isfinite(budget_glm) and 0 < budget_glm <= MAX_GLM):
        raise ValueError(f"the budget must be more than 0 and at most {MAX_GLM:g} GLM")
    path = budget_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"budget_glm": budget_glm}), encoding="utf-8")
    os.replace(tmp, path)
    return path


class BudgetFile:
    """Polls the budget file; :meth:`poll` returns a budget written since ``since`` (wall
    clock seconds), once per write, or None. A malformed file is ignored (and reported once)."""

    def __init__(self, data_dir: Path, since: float | None = None) -> None:
        self.path = budget_path(data_dir)
        self._seen = time.time() if since is None else since
        self.error: str | None = None

    def poll(self) -> float | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        if stat.st_mtime <= self._seen:
            return None
        self._seen = stat.st_mtime
        try:
            with self.path.open("rb") as fh:
                value = json.loads(fh.read(_MAX_FILE_BYTES))["budget_glm"]
            budget = float(value)
            if isinstance(value, bool) or not (math.isfinite(budget) and 0 < budget <= MAX_GLM):
                raise ValueError("out of range")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self.error = f"{self.path} is not a budget ({type(exc).__name__}); ignored"
            return None
        self.error = None
        return budget


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m golem_backend.golem.budget",
        description="Set the Golem budget (GLM) of the bots running on this DATA_DIR.",
    )
    parser.add_argument("glm", type=float, help="the new total budget in GLM (0 < GLM <= 1000)")
    args = parser.parse_args(argv)
    from golem_backend.settings import BackendSettings

    settings = BackendSettings()
    try:
        path = write_budget(settings.data_dir, args.glm)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Golem budget set to {args.glm:g} GLM in {path}; running bots take it within a few "
        "seconds. Set GOLEM_BUDGET_GLM in .env too, or a restart goes back to it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
