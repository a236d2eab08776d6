"""``ClassifierService``: the yapapi Service whose handlers only build exe-unit scripts.

Lifecycle of one instance on a provider (all paths from :mod:`golem_backend.golem.layout`):

* ``start()``: deploy + start the VM; the version handshake (:mod:`.handshake`): run
  ``provider.serve versions`` and compare its report with this process's versions, before
  anything is uploaded (a mismatch retires the instance with :class:`VersionMismatch`);
  then upload the requestor's model artifact to ``/golem/work/model.bin``, launch the
  provider-side daemon in the background (``/bin/sh -c "python3 -m provider.serve daemon
  ... &"``), poll it until it answers (``provider.serve ping --wait``) and check that it
  serves the uploaded model.
* ``run()``: take :class:`ClassifyBatch` messages from the dispatcher (``send_message``),
  and for each run ONE script (:mod:`.batch_script`): upload the images to
  ``/golem/input/<batch>-<i>``, run the stdlib-only client (``provider.serve client``),
  download ``/golem/output/<batch>.json`` (size-limited), validate it (:mod:`.protocol`)
  and resolve the batch's future. How a batch can fail, and what the dispatcher then
  does, is in :mod:`.batch`.
* ``shutdown()``: terminate the activity.

Scheduling, retries and replacement all live in the dispatcher. Files on the requestor's
disk: every script's uploads and replies are released and deleted when it ends, whatever
the outcome (:mod:`.transfers`).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from yapapi.rest.activity import BatchError, BatchTimeoutError, CommandExecutionError
from yapapi.script import Script
from yapapi.services import Service

from golem_backend.golem import layout
from golem_backend.golem.batch import (
    BatchRefused,
    BatchTimedOut,
    ClassifyBatch,
    InstanceFailed,
    describe_failure,
    exit_code,
    refusal,
)
from golem_backend.golem.batch_script import HeadFiles, batch_script
from golem_backend.golem.handshake import (
    OLD_IMAGE,
    REPORT_LIMIT,
    VersionMismatch,
    check_versions,
    parse_report,
)
from golem_backend.golem.model_store import ModelStore
from golem_backend.golem.protocol import ProtocolError, check_model, load_reply, reply_limit
from golem_backend.golem.transfers import Reply, ScriptFiles

logger = logging.getLogger(__name__)

ScriptGen = AsyncGenerator[Script, Any]


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


class ClassifierService(Service):
    """One classifier instance on one provider (see the module docstring)."""

    def __init__(self, config: ServiceConfig, _id: str | None = None) -> None:
        super().__init__(_id)
        self.config = config
        self.model_id: str | None = None  # the model the daemon serves, once verified
        self.failure: str | None = None  # why this instance stopped serving, if it failed
        #: the handshake's error when the provider runs other versions (it is then retired)
        self.version_mismatch: str | None = None
        self.batches_served = 0
        self.images_served = 0
        self.heads = HeadFiles(config.head_files)  # servers' heads on the provider, LRU

    @property
    def restart_condition(self) -> bool:
        """Never restart in place: the dispatcher replaces failed instances itself.

        yapapi's default restarts an instance that failed before ``running`` by reusing this
        object. For a long-lived service the dispatcher must see every failure (to re-send
        batches, count replacements, back off, and respect the cluster's expiration), so it
        spawns a fresh instance instead.
        """
        return False

    def new_script(self, timeout_s: float) -> Script:
        assert self._ctx is not None, "handlers run only with a work context"
        return self._ctx.new_script(timeout=timedelta(seconds=timeout_s))

    def serve(self, command: str, *args: str) -> tuple[str, ...]:
        """The command line of ``provider.serve <command> <args>`` in the VM."""
        return (self.config.python, "-m", layout.SERVE_MODULE, command, *args)

    # --- start ------------------------------------------------------------------------

    async def start(self) -> ScriptGen:
        cfg = self.config
        script = self.new_script(cfg.deploy_timeout_s)
        script.deploy(**self.get_deploy_args())
        script.start()
        try:
            yield script
        except BatchError as exc:
            self.failure = f"deploy failed: {describe_failure(exc, cfg.deploy_timeout_s)}"
            raise

        script, report, files = self._versions_script()
        try:
            yield script
            data = report.read()
        except BatchError as exc:
            self._handshake_failed(exc)
            raise
        finally:
            await files.release()
        self._check_versions(data)

        artifact = cfg.store.current
        script = self.new_script(cfg.prepare_timeout_s)
        files = ScriptFiles(cfg.transfer_dir)
        files.upload(script, artifact.data, layout.MODEL_PATH)
        daemon = shlex.join(
            self.serve(
                *("daemon", "--model", layout.MODEL_PATH, "--socket", layout.SOCKET_PATH),
                *("--head-dir", layout.HEAD_DIR, "--head-cache-mb", f"{cfg.head_cache_mb:g}"),
            )
        )
        script.run("/bin/sh", "-c", f"{daemon} > {layout.DAEMON_LOG} 2>&1 < /dev/null &")
        wait_s = str(max(1, int(cfg.prepare_timeout_s) - 5))
        script.run(
            *self.serve("ping", "--socket", layout.SOCKET_PATH, "--wait", wait_s),
            "--out",
            layout.READY_PATH,
        )
        ready = files.download(script, layout.READY_PATH, reply_limit(0))
        try:
            yield script
            reply = ready.read()
        except BatchError as exc:
            self.failure = (
                f"classifier daemon did not start: {describe_failure(exc, cfg.prepare_timeout_s)}"
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

    def _versions_script(self) -> tuple[Script, Reply, ScriptFiles]:
        """The version handshake's script (:mod:`.handshake`): nothing is uploaded yet."""
        script = self.new_script(self.config.prepare_timeout_s)
        files = ScriptFiles(self.config.transfer_dir)
        script.run(*self.serve("versions", "--out", layout.VERSIONS_PATH))
        return script, files.download(script, layout.VERSIONS_PATH, REPORT_LIMIT), files

    def _handshake_failed(self, exc: BatchError) -> None:
        """An older ``provider.serve`` does not know ``versions``: that image is retired."""
        if isinstance(exc, CommandExecutionError) and exit_code(exc) == EXIT_USAGE:
            self._mismatch(OLD_IMAGE)
        self.failure = (
            f"version handshake failed: {describe_failure(exc, self.config.prepare_timeout_s)}"
        )

    def _check_versions(self, data: bytes | None) -> None:
        """Raise :class:`VersionMismatch` unless the provider runs our versions."""
        try:
            check_versions(parse_report(data))
        except ProtocolError as exc:
            self.failure = f"version handshake failed: {exc}"
            raise
        except VersionMismatch as exc:
            self._mismatch(str(exc))

    def _mismatch(self, message: str) -> None:
        self.failure = self.version_mismatch = message
        logger.error("%s retired: %s", self.name, message)
        raise VersionMismatch(message)

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
                script, parse = batch_script(self, batch, files)
                await (yield script)
                outcomes = parse()
            except BatchTimeoutError:
                logger.warning("%s: batch %s timed out", self.name, batch.batch_id)
                if not batch.future.done():
                    batch.future.set_exception(BatchTimedOut(f"{len(batch.images)} image(s)"))
                continue  # the dispatcher decides who is at fault
            except CommandExecutionError as exc:
                reason = refusal(exc)
                if reason is None:
                    self._fail(batch, exc)
                    return  # -> stopping: the dispatcher replaces this instance
                logger.info(
                    "%s: the daemon refused batch %s: %s", self.name, batch.batch_id, reason
                )
                if not batch.future.done():
                    batch.future.set_exception(BatchRefused(reason))
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
        self.failure = describe_failure(exc, self.config.script_timeout_s)
        logger.warning("%s failed batch %s: %s", self.name, batch.batch_id, self.failure)
        if not batch.future.done():
            batch.future.set_exception(InstanceFailed(self.failure))

    # --- shutdown ---------------------------------------------------------------------

    async def shutdown(self) -> ScriptGen:
        script = self.new_script(10.0)
        script.terminate()
        try:
            yield script
        except BatchError as exc:  # the activity may already be gone
            logger.debug("%s: terminate failed: %s", self.name, exc)

    @property
    def name(self) -> str:
        """Provider name when known, else a short instance id (for logs and /status)."""
        return self.provider_name or f"instance-{self.id[:8]}"


#: ``provider.serve``'s exit code for a command line it does not understand.
EXIT_USAGE = 64
