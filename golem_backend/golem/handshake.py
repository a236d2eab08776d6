"""The version handshake: a provider's classifier must run the bot's library versions.

When an instance starts, before the model or any image is uploaded, the service runs
``provider.serve versions`` in the VM and downloads its report (:mod:`provider.versions`):
the installed version of every library of the lock (``provider/constraints.txt``) and the
version of every feature extractor. :func:`check_versions` compares it with this process's
own. Any difference (a VM image built from another lock or other code) retires the instance
with :class:`VersionMismatch`, whose message names both versions and the fix; an image older
than the handshake does not know the command at all (:data:`OLD_IMAGE`).

The report comes from an untrusted machine: it is parsed with bounds (size, entry count,
name and version syntax) and only the parsed tokens are ever shown, never the raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from golem_backend.golem.protocol import ProtocolError, load_reply
from provider.versions import extractor_versions, installed_versions, locked_versions

#: The largest versions report accepted (a real one is about 1 KB).
REPORT_LIMIT = 16 * 1024
MAX_ENTRIES = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")
MAX_LISTED = 4  # differences named in one message
FIX = (
    "Rebuild the VM image from the lock (`make image`), publish it, set GOLEM_IMAGE_HASH to "
    "the hash it prints and restart the bot; the local fallback answers meanwhile when "
    "GOLEM_FALLBACK=local."
)
OFF_LOCK = (
    "This bot's own libraries are not the lock's (provider/constraints.txt): reinstall it "
    "with `make setup` (or rebuild its image), then rebuild the VM image if they still differ."
)
OLD_IMAGE = (
    "The Golem VM image predates the version handshake: its provider.serve reports no "
    "library versions, so models made here may be refused there. " + FIX
)


class VersionMismatch(Exception):
    """The provider's classifier runs other versions; ``str()`` is the operator's message."""


@dataclass(frozen=True, slots=True)
class RuntimeVersions:
    libraries: dict[str, str]
    extractors: dict[str, str]


@cache
def own_versions() -> RuntimeVersions:
    """This process's locked libraries and extractors (what the providers must match)."""
    return RuntimeVersions(installed_versions(), extractor_versions())


def parse_report(data: bytes | None) -> RuntimeVersions:
    """The provider's report, validated; raises :class:`ProtocolError` when malformed."""
    obj = load_reply(data, REPORT_LIMIT)
    runtime = obj.get("runtime")
    if not isinstance(runtime, dict):
        raise ProtocolError("the versions report has no runtime object")
    return RuntimeVersions(
        _table(runtime.get("libraries"), "libraries"),
        _table(runtime.get("extractors"), "extractors"),
    )


def _table(value: object, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not 0 < len(value) <= MAX_ENTRIES:
        raise ProtocolError(f"the versions report's {what} are not a table of 1-{MAX_ENTRIES}")
    table: dict[str, str] = {}
    for name, version in value.items():
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ProtocolError(f"the versions report names a malformed {what[:-1]}")
        if not (isinstance(version, str) and _VERSION.fullmatch(version)):
            raise ProtocolError(f"the versions report has a malformed version for {name}")
        table[name] = version
    return table


def check_versions(theirs: RuntimeVersions, ours: RuntimeVersions | None = None) -> None:
    """Raise :class:`VersionMismatch` unless the provider runs exactly our versions."""
    ours = ours or own_versions()
    differences = _differences("", theirs.libraries, ours.libraries) + _differences(
        "extractor ", theirs.extractors, ours.extractors
    )
    if differences:
        listed = "; ".join(differences[:MAX_LISTED])
        more = len(differences) - MAX_LISTED
        listed += f"; and {more} more" if more > 0 else ""
        off_lock = ours.libraries != locked_versions()
        raise VersionMismatch(
            f"The Golem VM image runs other classifier versions than this bot: {listed}. "
            + (OFF_LOCK if off_lock else FIX)
        )


def _differences(kind: str, theirs: dict[str, str], ours: dict[str, str]) -> list[str]:
    found = []
    for name in sorted(set(ours) | set(theirs)):
        there, here = theirs.get(name, "missing"), ours.get(name, "missing")
        if there != here:
            found.append(f"{kind}{name} {there} on the provider, {here} here")
    return found
