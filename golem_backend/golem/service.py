"""``ClassifierService``: the yapapi Service whose handlers only build exe-unit scripts.

Lifecycle of one instance on a provider (all paths from :mod:`golem_backend.golem.layout`):

* ``start()``: deploy + start the VM; upload the requestor's model artifact to
  ``/golem/work/model.bin``; launch the provider-side daemon in the background
  (``/bin/sh -c "python3 -m provider.serve daemon ... &"``); poll it until it answers
  (``provider.serve ping --wait``) and check that it serves the uploaded model.
* ``run()``: take :class:`ClassifyBatch` messages from the dispatcher (``send_message``),
  and for each build ONE script: upload the images to ``/golem/input/<batch>-<i>``, run the
  stdlib-only client (``provider.serve client``), download ``/golem/output/<batch>.json``
  (size-limited), validate it (:mod:`.protocol`) and resolve the batch's future. When the
  model was retrained, the same script first uploads the new artifact and reloads it.
* Servers' heads: a batch names, per image, the head that answers it (None: the uploaded
  model). A head this instance lacks is uploaded by the batch's own script, first, to
  ``/golem/work/<model id>.model`` (content-addressed: uploaded at most once per instance
  while it stays); the instance keeps the ``head_files`` most recently used ones and
  removes the oldest beyond that. The reply is checked against each head's own labels.
* ``shutdown()``: terminate the activity.

A batch that fails (command error, malformed reply) fails its future with
:class:`InstanceFailed` and ends this instance: the dispatcher re-sends the batch elsewhere
and replaces the instance. A batch that times out fails with :class:`BatchTimedOut` and the
instance keeps serving: an image may be at fault (a decoder stuck on a hostile file), so the
dispatcher splits the batch and checks the instance with canaries before blaming it. A
batch the daemon *refused* (it answered ``ok: false``, so the client exited with
``EXIT_REFUSED``) is a request error, not an instance failure: its future
fails with :class:`BatchRefused` and the instance keeps serving; the dispatcher retries the
batch's requests one at a time so only the offending one fails. Scheduling, retries and
replacement all live in the dispatcher.

Files on the requestor's disk: every script's uploads and replies are released and deleted
when it ends, whatever the outcome (:mod:`.transfers`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import tempfile
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from yapapi.rest.activity import BatchError, BatchTimeoutError, CommandExecutionError
from yapapi.script import Script
from yapapi.services import Service

from golem_backend.base import Outcome
from golem_backend.golem import layout
from golem_backend.golem.canaries import CanarySet
from golem_backend.golem.protocol import (
    ProtocolError,
    check_model,
    load_reply,
    parse_classify_reply,
    reply_limit,
)
from golem_backend.golem.transfers import ScriptFiles

logger = logging.getLogger(__name__)

ScriptGen = AsyncGenerator[Script, Any]


@dataclass(frozen=True, slots=True)
class ModelArtifact:
    """A trained model file held by the requestor: its bytes, id and labels."""

    data: bytes
    model_id: str
    labels: tuple[str, ...]


class ModelStore:
    """The model every instance should serve; swapped by retrain, read by each instance.

    ``canaries``: images of known answer for the current model (:mod:`.canaries`), or None.
    """

    def __init__(self, artifact: ModelArtifact) -> None:
        self.current = artifact
        self.canaries: CanarySet | None = None


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """What an instance needs; passed through ``instance_params`` (Golem passes no env)."""

    store: ModelStore
    script_timeout_s: float = 20.0  # one classification batch, transfers included
    deploy_timeout_s: float = 900.0  # image download + VM boot on the provider
    prepare_timeout_s: float = 120.0  # model upload + daemon start + readiness
    max_pixels: int = 40_000_000
    python: str = layout.PYTHON
    head_files: int = 64  # servers' heads kept on the provider's disk (LRU)
    head_cache_mb: float = 256.0  # of them, loaded in the daemon's memory (LRU)
    #: where replies are received (each file deleted once read); the backend's private dir
    transfer_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))


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


class ClassifierService(Service):
    """One classifier instance on one provider (see the module docstring)."""

    def __init__(self, config: ServiceConfig, _id: str | None = None) -> None:
        super().__init__(_id)
        self.config = config
        self.model_id: str | None = None  # the model the daemon serves, once verified
        self.failure: str | None = None  # why this instance stopped serving, if it failed
        self.batches_served = 0
        self.images_served = 0
        self.head_files: OrderedDict[str, None] = OrderedDict()  # heads on the provider, LRU
        self.head_uploads: Counter[str] = Counter()  # uploads per head id (for operators)

    @property
    def restart_condition(self) -> bool:
        """Never restart in place: the dispatcher replaces failed instances itself.

        yapapi's default restarts an instance that failed before ``running`` by reusing this
        object. For a long-lived service the dispatcher must see every failure (to re-send
        batches, count replacements, back off, and respect the cluster's expiration), so it
        spawns a fresh instance instead.
        """
        return False

    def _script(self, timeout_s: float) -> Script:
        assert self._ctx is not None, "handlers run only with a work context"
        return self._ctx.new_script(timeout=timedelta(seconds=timeout_s))

    def _serve(self, command: str, *args: str) -> tuple[str, ...]:
        return (self.config.python, "-m", layout.SERVE_MODULE, command, *args)

    # --- start ------------------------------------------------------------------------

    async def start(self) -> ScriptGen:
        cfg = self.config
        script = self._script(cfg.deploy_timeout_s)
        script.deploy(**self.get_deploy_args())
        script.start()
        try:
            yield script
        except BatchError as exc:
            self.failure = f"deploy failed: {_describe(exc, cfg.deploy_timeout_s)}"
            raise

        artifact = cfg.store.current
        script = self._script(cfg.prepare_timeout_s)
        files = ScriptFiles(cfg.transfer_dir)
        files.upload(script, artifact.data, layout.MODEL_PATH)
        daemon = shlex.join(
            self._serve(
                *("daemon", "--model", layout.MODEL_PATH, "--socket", layout.SOCKET_PATH),
                *("--head-dir", layout.HEAD_DIR, "--head-cache-mb", f"{cfg.head_cache_mb:g}"),
            )
        )
        script.run("/bin/sh", "-c", f"{daemon} > {layout.DAEMON_LOG} 2>&1 < /dev/null &")
        wait_s = str(max(1, int(cfg.prepare_timeout_s) - 5))
        script.run(
            *self._serve("ping", "--socket", layout.SOCKET_PATH, "--wait", wait_s),
            "--out",
            layout.READY_PATH,
        )
        ready = files.download(script, layout.READY_PATH, reply_limit(0))
        try:
            yield script
            reply = ready.read()
        except BatchError as exc:
            self.failure = (
                f"classifier daemon did not start: {_describe(exc, cfg.prepare_timeout_s)}"
            )
            raise
        finally:
            await files.release()
        try:
            check_model(load_reply(reply, reply_limit(0)), artifact.model_id, artifact.labels)
        except ProtocolError as exc:
            self.failure = f"classifier daemon is not serving the uploaded model: {exc}"
            raise
        self.model_id = artifact.model_id
        logger.info("%s serves model %s", self.name, artifact.model_id)

    # --- run --------------------------------------------------------------------------

    async def run(self) -> ScriptGen:
        while True:
            signal = await self._listen()
            batch = signal.message
            if not isinstance(batch, ClassifyBatch):
                logger.warning("%s ignores an unexpected message %r", self.name, batch)
                continue
            if batch.future.done():  # timed out or cancelled while queued
                continue
            if not batch.images and self.model_id == self.config.store.current.model_id:
                batch.future.set_result([])  # a model sync with nothing to do
                continue
            files = ScriptFiles(self.config.transfer_dir)
            guard = asyncio.create_task(files.guard())
            try:
                script, parse = self._batch_script(batch, files)
                await (yield script)
                outcomes = parse()
            except BatchTimeoutError:
                logger.warning("%s: batch %s timed out", self.name, batch.batch_id)
                if not batch.future.done():
                    batch.future.set_exception(BatchTimedOut(f"{len(batch.images)} image(s)"))
                continue  # the dispatcher decides who is at fault
            except CommandExecutionError as exc:
                refusal = _refusal(exc)
                if refusal is None:
                    self._fail(batch, exc)
                    return  # -> stopping: the dispatcher replaces this instance
                logger.info(
                    "%s: the daemon refused batch %s: %s", self.name, batch.batch_id, refusal
                )
                if not batch.future.done():
                    batch.future.set_exception(BatchRefused(refusal))
                continue  # the instance is healthy: keep serving
            except Exception as exc:  # BatchError, ProtocolError, or a bug: never lose the batch
                self._fail(batch, exc)
                return  # -> stopping: the dispatcher replaces this instance
            finally:
                guard.cancel()
                await files.release()
            self.batches_served += 1
            self.images_served += len(batch.images)
            if not batch.future.done():
                batch.future.set_result(outcomes)

    def _fail(self, batch: ClassifyBatch, exc: Exception) -> None:
        """Record why this instance stops serving and fail ``batch`` (to be re-sent)."""
        self.failure = _describe(exc, self.config.script_timeout_s)
        logger.warning("%s failed batch %s: %s", self.name, batch.batch_id, self.failure)
        if not batch.future.done():
            batch.future.set_exception(InstanceFailed(self.failure))

    def _batch_script(self, batch: ClassifyBatch, files: ScriptFiles) -> tuple[Script, Any]:
        """One script: [model update] + uploads + client run + reply download."""
        cfg = self.config
        script = self._script(cfg.script_timeout_s)
        artifact = cfg.store.current
        reload_reply = None
        if artifact.model_id != self.model_id:
            path = layout.model_update_path(artifact.model_id)
            files.upload(script, artifact.data, path)
            script.run(
                *self._serve("reload", "--socket", layout.SOCKET_PATH, "--model", path),
                "--out",
                layout.RELOAD_PATH,
            )
            reload_reply = files.download(script, layout.RELOAD_PATH, reply_limit(0))

        heads = batch.heads if any(h is not None for h in batch.heads) else []
        uploads, removals = self._head_transfers(script, files, heads)
        reply = None
        if batch.images:
            inputs = [f"{layout.INPUT_DIR}/{batch.batch_id}-{i}" for i in range(len(batch.images))]
            for data, dst in zip(batch.images, inputs, strict=True):
                files.upload(script, data, dst)
            out = f"{layout.OUTPUT_DIR}/{batch.batch_id}.json"
            names = ",".join(h.model_id if h is not None else "-" for h in heads)
            script.run(
                *self._serve("client", "--socket", layout.SOCKET_PATH),
                *("--top-k", str(batch.top_k), "--max-pixels", str(cfg.max_pixels)),
                *("--timeout", str(int(cfg.script_timeout_s) + 1), "--cleanup", "--out", out),
                *((f"--heads={names}",) if heads else ()),  # "=": names may start with "-"
                *inputs,
            )
            reply = files.download(script, out, reply_limit(len(batch.images)))

        def parse() -> list[Outcome]:
            if reload_reply is not None:
                check_model(
                    load_reply(reload_reply.read(), reply_limit(0)),
                    artifact.model_id,
                    artifact.labels,
                )
                self.model_id = artifact.model_id
                logger.info("%s now serves model %s", self.name, artifact.model_id)
            self._heads_transferred(heads, uploads, removals)
            if reply is None:
                return []
            return parse_classify_reply(
                reply.read(),
                n_images=len(batch.images),
                top_k=batch.top_k,
                model_id=artifact.model_id,
                labels=artifact.labels,
                heads=[(h.model_id, h.labels) if h else None for h in heads] if heads else None,
            )

        return script, parse

    def _head_transfers(
        self, script: Script, files: ScriptFiles, heads: list[ModelArtifact | None]
    ) -> tuple[list[ModelArtifact], list[str]]:
        """Add to ``script`` the uploads of the heads this instance lacks, and the removal
        of the least recently used ones beyond ``head_files``; returns both lists."""
        needed = {h.model_id: h for h in heads if h is not None}
        uploads = [h for model_id, h in needed.items() if model_id not in self.head_files]
        for head in uploads:
            files.upload(script, head.data, layout.head_path(head.model_id))
        kept = [m for m in self.head_files if m not in needed] + list(needed)
        excess = max(0, len(kept) - max(self.config.head_files, len(needed)))
        removals = kept[:excess]
        for model_id in removals:
            script.run("/bin/rm", "-f", layout.head_path(model_id))
        return uploads, removals

    def _heads_transferred(
        self, heads: list[ModelArtifact | None], uploads: list[ModelArtifact], removals: list[str]
    ) -> None:
        """The script ran: record what is on the provider now (most recently used last)."""
        for head in uploads:
            self.head_uploads[head.model_id] += 1
        for head in heads:
            if head is not None:
                self.head_files[head.model_id] = None
                self.head_files.move_to_end(head.model_id)
        for model_id in removals:
            self.head_files.pop(model_id, None)

    # --- shutdown ---------------------------------------------------------------------

    async def shutdown(self) -> ScriptGen:
        script = self._script(10.0)
        script.terminate()
        try:
            yield script
        except BatchError as exc:  # the activity may already be gone
            logger.debug("%s: terminate failed: %s", self.name, exc)

    @property
    def name(self) -> str:
        """Provider name when known, else a short instance id (for logs and /status)."""
        return self.provider_name or f"instance-{self.id[:8]}"


def _refusal(exc: CommandExecutionError) -> str | None:
    """The daemon's reason when ``exc`` is the client refused by the daemon, else None.

    Only the classification client counts, and only when it exited with ``EXIT_REFUSED``
    (1) after printing ``daemon error: ...``, which it does only when the daemon answered
    ``ok: false``. Any other exit (2: the daemon is unavailable; 1 from a Python traceback;
    a signal, ...) or another command (the model reload) is an instance failure.
    """
    if not re.search(r"provider\.serve'?,? '?client\b", exc.command):
        return None
    code = re.search(r"\bcode (-?\d+)\b", exc.message or "")
    stderr = " ".join((exc.stderr or "").split())
    if (code is not None and code.group(1) != "1") or _REFUSED_MARKER not in stderr:
        return None
    reason = stderr.rsplit(_REFUSED_MARKER, 1)[1].strip() or "no reason given"
    return reason if len(reason) <= 200 else reason[:197] + "..."


_REFUSED_MARKER = "daemon error:"  # provider.serve's _finish() for an ok:false reply


def _describe(exc: Exception, timeout_s: float) -> str:
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
