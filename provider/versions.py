"""What this classifier runs on: its locked libraries' versions and its extractors' versions.

The lock (``constraints.txt`` beside this file, made by ``make lock``) names the classifier's
runtime libraries; the provider VM image, the bot image and ``make setup`` install exactly
those versions. The Golem version handshake compares :func:`runtime_report` of a provider's
VM (``python3 -m provider.serve versions``) with the bot's own before anything is uploaded:
a model trained with one scikit-learn is refused by another, and features made by another
extractor version mean other answers. Only the standard library at module level.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LOCK_FILE = Path(__file__).with_name("constraints.txt")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical_name(name: str) -> str:
    """A distribution's name as PEP 503 compares it (``Pillow`` -> ``pillow``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def locked_versions(lock: Path = LOCK_FILE) -> dict[str, str]:
    """``{canonical name: version}`` of every library the lock pins."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        found = _PIN.match(line.strip())
        if found:
            pins[canonical_name(found.group(1))] = found.group(2)
    return pins


def installed_versions() -> dict[str, str]:
    """The installed version of every locked library (``"missing"`` when not installed)."""
    found: dict[str, str] = {}
    for name in locked_versions():
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def extractor_versions() -> dict[str, str]:
    """``{extractor name: version}``: a version changes whenever the features would."""
    from provider.features import EXTRACTORS  # numpy and OpenCV: only when asked

    return {name: extractor.version for name, extractor in EXTRACTORS.items()}


def runtime_report() -> dict[str, dict[str, str]]:
    """What the version handshake compares (JSON-ready)."""
    return {"libraries": installed_versions(), "extractors": extractor_versions()}
