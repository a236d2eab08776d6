"""A short run of the soak benchmark (``bench/bench_soak.py``): the real bot process, the
simulator, the same mixed traffic, for 36 seconds.

It asserts the criteria a short run can judge: every request answered, no unexpected error,
the bot alive and stopping cleanly, no worker leak or zombie, TMPDIR flat, taught files
matching the images learned, REST calls valid. RSS and fd growth need the long run (the
first minutes of a process grow as its caches fill; ``make bench-soak`` is the 2-hour run
with a crowd's burst every 3 minutes); the options for those are exercised here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JUDGED_HERE = (
    "every request answered",
    "no unexpected error (apology)",
    "bot alive throughout",
    "clean stop on SIGTERM (exit 0)",
    "no worker leak",
    "temp dir flat",
    "taught image files = images learned",
    "kept answer images bounded",
    "model files bounded",
    "REST calls valid (Discord's OpenAPI spec)",
    "the benchmark itself ran cleanly",
)


def test_a_short_soak_answers_everything_and_leaks_no_process() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_soak",
            *("--minutes", "0.6", "--warmup-minutes", "0.2"),
            *("--burst-every", "15", "--burst-size", "20"),  # a crowd at 20 s and 35 s
            *("--rss-window-minutes", "0.2"),  # the long run's last-hour RSS, on 12 s
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    found = re.findall(r"^  (ok  |FAIL) ([^:]+):", out, flags=re.MULTILINE)
    verdicts = {name: mark.strip() for mark, name in found}
    assert set(JUDGED_HERE) <= set(verdicts), out + proc.stderr
    failed = [name for name in JUDGED_HERE if verdicts[name] != "ok"]
    assert not failed, out + proc.stderr
    sent = re.search(r"^all\s+(\d+)\s+(\d+)", out, flags=re.MULTILINE)
    assert sent is not None and int(sent.group(1)) >= 30, out  # traffic really flowed
    crowd = re.search(r"^crowd\s+(\d+)\s+(\d+)", out, flags=re.MULTILINE)
    assert crowd is not None and int(crowd.group(1)) >= 20, out  # a burst of 20 members
    # the last window's RSS was measured idle at its start and at the end (judged on
    # the 2-hour run only: the first minutes of a process grow as its caches fill)
    assert "bot RSS over the last 0.2 min growth <= 5%: idle " in out, out
