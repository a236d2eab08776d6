"""One micro-batch as the dispatcher hands it to an instance, and how a batch can end.

A batch that fails (command error, malformed reply) fails its future with
:class:`InstanceFailed` and ends the instance: the dispatcher re-sends the batch elsewhere
and replaces the instance. A batch that times out fails with :class:`BatchTimedOut` and the
instance keeps serving: an image may be at fault (a decoder stuck on a hostile file), so the
dispatcher splits the batch and checks the instance with canaries before blaming it. A batch
the daemon *refused* (it answered ``ok: false``, so the client exited with ``EXIT_REFUSED``)
is a request error, not an instance failure: its future fails with :class:`BatchRefused`
and the instance keeps serving.

Provider output is untrusted: :func:`describe_failure` and :func:`refusal` turn yapapi's
errors into one bounded line for logs and ``/status``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from yapapi.rest.activity import BatchTimeoutError, CommandExecutionError

from golem_backend.base import Outcome
from golem_backend.golem.model_store import ModelArtifact


class InstanceFailed(Exception):
    """A batch could not be served by this instance (retryable on another one)."""


class BatchTimedOut(Exception):
    """The batch's script timed out: an image or the instance may be at fault."""


class BatchRefused(Exception):
    """The daemon refused the batch (``ok: false``): the request is at fault, not the instance.

    ``str()`` is a one-line reason (the daemon's own error, truncated: provider output is
    untrusted).
    """


@dataclass(eq=False)
class ClassifyBatch:
    """One micro-batch: the dispatcher awaits ``future`` (outcomes in image order).

    An empty ``images`` list only brings the instance's model up to date.
    """

    batch_id: str
    images: list[bytes]
    top_k: int
    future: asyncio.Future[list[Outcome]] = field(repr=False)
    #: per image, the server's head that answers it (None: the uploaded model); [] = none
    heads: list[ModelArtifact | None] = field(default_factory=list, repr=False)


_REFUSED_MARKER = "daemon error:"  # provider.serve's _finish() for an ok:false reply


def refusal(exc: CommandExecutionError) -> str | None:
    """The daemon's reason when ``exc`` is the client refused by the daemon, else None.

    Only the classification client counts, and only when it exited with ``EXIT_REFUSED``
    (1) after printing ``daemon error: ...``, which it does only when the daemon answered
    ``ok: false``. Any other exit (2: the daemon is unavailable; 1 from a Python traceback;
    a signal, ...) or another command (the model reload) is an instance failure.
    """
    if not re.search(r"provider\.serve'?,? '?client\b", exc.command):
        return None
    code = exit_code(exc)
    stderr = " ".join((exc.stderr or "").split())
    if (code is not None and code != 1) or _REFUSED_MARKER not in stderr:
        return None
    reason = stderr.rsplit(_REFUSED_MARKER, 1)[1].strip() or "no reason given"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def exit_code(exc: CommandExecutionError) -> int | None:
    """The exit code the exe-unit reported for a failed command, when it says one."""
    code = re.search(r"\bcode (-?\d{1,6})\b", exc.message or "")
    return int(code.group(1)) if code else None


def describe_failure(exc: Exception, timeout_s: float) -> str:
    """A one-line reason for logs and /status (provider output is untrusted: truncated)."""
    if isinstance(exc, BatchTimeoutError):
        return f"the script timed out after {timeout_s:g} s"
    if isinstance(exc, CommandExecutionError):
        found = re.search(r"provider\.serve'?,? '?(\w+)", exc.command)
        what = f"`provider.serve {found.group(1)}`" if found else "a command"
        stderr = " ".join((exc.stderr or "").split())[-200:]
        return f"{what} failed on the provider ({exc.message or 'no message'})" + (
            f": {stderr}" if stderr else ""
        )
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}"
