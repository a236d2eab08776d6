"""Evicting forgotten images from the shared feature cache (``DATA_DIR/features.h5``, keyed
by image sha256, written by both backends' trainings).

The bot's store calls the evictor that :func:`cache_evictor` makes after every forget that
removes taught images (``bot.db.removals``: the digests wait in ``pending_removals`` until
it succeeds). The HDF5 work (``provider.cache.evict``) runs in a child process,
``python -m golem_backend.feature_cache CACHE`` with the digests on stdin, so the bot's
process never loads h5py; a cache another process is writing is retried a few times.

Why evict from one shared cache rather than keep a cache per server deleted with it:
``/forget mine`` and ``/forget label`` remove some of a server's images, not the server,
so a per-server cache would need the same eviction, and the default dataset's features
(used by every server's retrain) would be extracted once per server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

#: a child that has not finished by then is killed (the digests stay pending)
EVICTION_TIMEOUT_S = 120.0
#: attempts while another process (a training) holds the cache file
BUSY_ATTEMPTS = 20
BUSY_WAIT_S = 0.5
_DIGEST = re.compile(r"[0-9a-f]{64}")


class CacheEvictionFailed(Exception):
    """The cache could not be changed now; the message says why."""


async def evict_cached_features(
    cache_path: Path, digests: Sequence[str], timeout_s: float = EVICTION_TIMEOUT_S
) -> int:
    """Remove ``digests`` from the cache at ``cache_path``; the rows removed.
    :class:`CacheEvictionFailed` (then nothing was changed)."""
    if not digests:
        return 0
    bad = [d for d in digests if not _DIGEST.fullmatch(d)]
    if bad:
        raise ValueError(f"not sha256 hex digests: {bad[:3]}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "golem_backend.feature_cache",
        str(cache_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate("\n".join(digests).encode() + b"\n"), timeout_s
        )
    except BaseException as exc:  # a timeout, or cancelled: no child left behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        if isinstance(exc, TimeoutError):
            raise CacheEvictionFailed(
                f"evicting from {cache_path} took over {timeout_s:.0f} s"
            ) from None
        raise
    if proc.returncode != 0:
        reason = err.decode("utf-8", "replace").strip().splitlines()
        raise CacheEvictionFailed(reason[-1] if reason else f"exit code {proc.returncode}")
    return int(json.loads(out)["evicted"])


def cache_evictor(cache_path: Path) -> Callable[[list[str]], Awaitable[None]]:
    """The ``Store.evict_features`` callback for the cache at ``cache_path``."""

    async def evict(digests: list[str]) -> None:
        await evict_cached_features(cache_path, digests)

    return evict


def main(argv: list[str]) -> int:
    from provider.cache import NotAFeatureCache, evict

    if len(argv) != 1:
        print("usage: python -m golem_backend.feature_cache CACHE < digests", file=sys.stderr)
        return 2
    digests = [line.strip() for line in sys.stdin if line.strip()]
    if not all(_DIGEST.fullmatch(d) for d in digests):
        print("stdin must hold one sha256 hex digest per line", file=sys.stderr)
        return 2
    for attempt in range(BUSY_ATTEMPTS):
        try:
            removed = evict(Path(argv[0]), digests)
        except BlockingIOError:  # HDF5's file lock: a training is writing it
            if attempt == BUSY_ATTEMPTS - 1:
                print(f"{argv[0]} stayed in use by another process", file=sys.stderr)
                return 3
            time.sleep(BUSY_WAIT_S)
            continue
        except (NotAFeatureCache, OSError) as exc:
            print(f"cannot evict from {argv[0]}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"evicted": removed}))
        return 0
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
