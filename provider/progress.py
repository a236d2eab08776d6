"""A dependency-free progress bar on stderr for long CLI work."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``bar(stage, done, total)``; redraws at most 10x/s, only on a terminal unless forced."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._stage = ""
        self._started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self._stage:
            if self._stage:
                self.stream.write("\n")
            self._stage, self._started = stage, now
        elif done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / total if total else 1.0
        filled = int(frac * 30)
        elapsed = now - self._started
        eta = f" eta {elapsed / frac - elapsed:4.0f}s" if 0 < frac < 1 else ""
        bar = "#" * filled + "-" * (30 - filled)
        self.stream.write(f"\r{stage:<22} [{bar}] {done}/{total}{eta}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._stage:
            self.stream.write("\n")
            self.stream.flush()
            self._stage = ""
