"""A local exe-unit: interprets yapapi's exe-script commands on a temporary directory.

``LocalActivity`` stands in for :class:`yapapi.rest.activity.Activity`: ``send(batch)``
returns what ``PollingBatch`` returns (an async iterator of ``(CommandExecuted, kwargs)``),
raising ``BatchTimeoutError`` past the deadline and ``BatchError`` when the activity dies,
so yapapi's own ``process_batches`` and ``ServiceRunner`` drive it unchanged.

Commands: ``deploy`` (creates empty volumes), ``start``, ``run`` (a real subprocess),
``transfer`` (``file://`` <-> ``container:`` paths), ``terminate``. The VM layout is mapped
onto the activity's directory: ``/golem/{input,output,work}`` -> ``<root>/{input,...}``
(in arguments too, also inside ``/bin/sh -c`` strings) and the image's interpreter
(``/usr/local/bin/python3``) -> this venv's ``sys.executable``. Commands run without the
caller's environment (as on Golem), with ``PYTHONPATH`` = the repository (the image's
``.pth`` file), each in its own session so the whole process group can be killed.

Fault injection (:class:`FaultPlan`): the next command matching a substring can ``fail``
(non-zero exit), ``hang`` (until the script times out), ``die`` (the activity is killed
mid-batch), have its ``reply`` replaced (the ``--out`` file is overwritten) or ``lie``: the
real reply is rewritten, well-formed, with every answer wrong (``lie="label"``: the second
best label wins) or every image called ``corrupt`` (``lie="corrupt"``). ``refuse`` ends as
the real client ends when the daemon answers ``ok: false`` (exit code 1, ``daemon error:
...`` on stderr). A fault with ``poison`` bytes fires only for a command with an input file
containing them (a hostile image: ``hang`` is then a decoder stuck on it). ``old`` is an
image older than the command: the real ``provider.serve`` runs with the subcommand replaced
by one it does not know, so it ends as an older release would (argparse, exit code 64).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ya_activity import ApiException
from ya_activity import models as yaa
from yapapi import events
from yapapi.rest.activity import BatchError, BatchTimeoutError

from golem_backend.golem import layout

REPO_ROOT = Path(__file__).resolve().parents[3]
FAULT_KINDS = ("fail", "hang", "die", "reply", "refuse", "lie", "old")
#: What an image older than a command runs instead: a subcommand provider.serve lacks.
UNKNOWN_COMMAND = "command-of-a-later-release"
#: A download to the requestor is written in chunks at a bounded rate (about 256 MB/s),
#: as gftp writes what the network brings, so the requestor can watch it arrive.
TRANSFER_CHUNK = 256 * 1024
TRANSFER_PAUSE_S = 0.001


@dataclass
class Fault:
    """One injected failure for the next command whose command line contains ``match``."""

    kind: str  # one of FAULT_KINDS
    match: str = "provider.serve client"
    instance: int | None = None  # activity number (1, 2, ... in creation order); None = any
    times: int = 1
    reply: bytes = b""  # for "reply": what the --out file is replaced with
    poison: bytes = b""  # fires only when an input file contains these bytes ("refuse": any)
    lie: str = "label"  # for "lie": "label" (wrong labels) or "corrupt" (every image)


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    fired: list[tuple[str, int, str]] = field(default_factory=list)  # (kind, activity, cmd)
    hang_teardown: bool = False  # ending an activity never returns (a provider that hangs)

    def add(self, kind: str, match: str = "provider.serve client", **kwargs: Any) -> Fault:
        assert kind in FAULT_KINDS, kind
        fault = Fault(kind, match, **kwargs)
        self.faults.append(fault)
        return fault

    def take(
        self, command_line: str, activity: int, inputs: list[bytes] | None = None
    ) -> Fault | None:
        for fault in self.faults:
            wanted = fault.instance is None or fault.instance == activity
            if fault.kind == "refuse" or fault.poison:
                wanted = wanted and any(fault.poison in data for data in inputs or [])
            if fault.times > 0 and fault.match in command_line and wanted:
                fault.times -= 1
                self.fired.append((fault.kind, activity, command_line))
                return fault
        return None


@dataclass
class _Result:
    ok: bool
    message: str = ""
    stdout: str = ""
    stderr: str = ""


class LocalActivity:
    """One provider activity on this machine (see the module docstring)."""

    def __init__(self, number: int, root: Path, faults: FaultPlan) -> None:
        self.number = number
        self.id = f"local-activity-{number}"
        self.root = root
        self.faults = faults
        self.volumes = {v: root / Path(v).name for v in layout.VOLUMES}
        self.deployed = self.started = self.dead = False
        self.scripts: list[list[dict[str, Any]]] = []  # every exe-script received
        self.timings: list[tuple[str, float]] = []  # (command, seconds) as executed
        self._pgids: set[int] = set()

    def __repr__(self) -> str:
        return f"LocalActivity({self.id})"

    # --- the Activity API used by yapapi -----------------------------------------------

    async def state(self) -> yaa.ActivityState:
        if self.dead:
            raise ApiException(status=404, reason="activity terminated")
        return yaa.ActivityState(state=["Ready", None])

    async def send(
        self, batch: list[dict[str, Any]], deadline: datetime | None = None
    ) -> AsyncIterator[tuple[type[events.CommandEvent], dict[str, Any]]]:
        if self.dead:
            raise BatchError("Activity terminated by provider")
        self.scripts.append(batch)
        return self._execute(batch, deadline)

    async def destroy(self) -> None:
        """The agreement ended: kill everything the activity started."""
        self.kill()
        if self.faults.hang_teardown:
            await asyncio.Event().wait()

    # --- control ------------------------------------------------------------------------

    def kill(self) -> None:
        """Kill every process this activity started (the provider went away)."""
        self.dead = True
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def processes(self, pgid: int | None = None) -> list[int]:
        """Live processes started by this activity: in one of its process groups, and with
        its directory on their command line (so a reused pid is never mistaken for ours)."""
        marker = str(self.root).encode()
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                group = int(fields[2])
                if fields[0] == "Z" or group not in self._pgids or pgid not in (None, group):
                    continue
                if marker in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
        return found

    @property
    def daemon_running(self) -> bool:
        return (self.volumes[layout.WORK_DIR] / Path(layout.SOCKET_PATH).name).exists()

    # --- execution ----------------------------------------------------------------------

    async def _execute(
        self, batch: list[dict[str, Any]], deadline: datetime | None
    ) -> AsyncIterator[tuple[type[events.CommandEvent], dict[str, Any]]]:
        for index, command in enumerate(batch):
            if self.dead:
                raise BatchError("Activity terminated by provider")
            remaining = (deadline - datetime.now(UTC)).total_seconds() if deadline else None
            if remaining is not None and remaining <= 0:
                raise BatchTimeoutError()
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(self._command(command), remaining)
            except TimeoutError:
                raise BatchTimeoutError() from None
            self.timings.append((next(iter(command)), time.perf_counter() - started))
            kwargs = {
                "cmd_idx": index,
                "message": result.message,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "success": result.ok,
            }
            yield events.CommandExecuted, kwargs
            if not result.ok:
                return

    async def _command(self, command: dict[str, Any]) -> _Result:
        ((name, args),) = command.items()
        if name == "deploy":
            for path in self.volumes.values():
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(parents=True)
            self.deployed = True
            return _Result(True)
        if name == "start":
            self.started = self.deployed
            return _Result(self.deployed, "" if self.deployed else "start before deploy")
        if name == "terminate":
            self.kill()
            return _Result(True)
        if not self.started:
            return _Result(False, f"{name} before deploy/start")
        if name == "run":
            return await self._run(args["entry_point"], list(args.get("args", [])))
        if name == "transfer":
            return await self._transfer(args["from"], args["to"])
        return _Result(False, f"unknown exe-script command {name!r}")

    def _map(self, text: str) -> str:
        for vm_path, local in self.volumes.items():
            text = text.replace(vm_path, str(local))
        return text.replace(layout.PYTHON, sys.executable)

    def _container_path(self, url: str) -> Path | None:
        path = url.removeprefix("container:")
        for vm_path, local in self.volumes.items():
            if path == vm_path or path.startswith(vm_path + "/"):
                return local / path[len(vm_path) :].lstrip("/")
        return None

    async def _transfer(self, src: str, dst: str) -> _Result:
        if src.startswith("container:"):
            source, target = self._container_path(src), Path(unquote(urlparse(dst).path))
        else:
            source, target = Path(unquote(urlparse(src).path)), self._container_path(dst)
        if source is None or target is None:
            return _Result(False, f"transfer outside the volumes: {src} -> {dst}")
        if not source.is_file():
            return _Result(False, f"transfer source does not exist: {src}")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.startswith("container:"):  # to the requestor: arrives in chunks, as over gftp
            await _stream_copy(source, target)
        else:
            shutil.copyfile(source, target)
        return _Result(True)

    async def _run(self, entry_point: str, args: list[str]) -> _Result:
        if not entry_point.startswith("/"):
            return _Result(False, f"entry point must be an absolute path: {entry_point}")
        line = " ".join([entry_point, *args])
        fault = self.faults.take(line, self.number, self._inputs(args))
        if fault is not None and fault.kind == "refuse":
            stderr = "daemon error: ValueError: injected refusal of a poison image\n"
            return _Result(False, "ExeScript command exited with code 1", "", stderr)
        if fault is not None and fault.kind == "fail":
            return _Result(False, "ExeScript command exited with code 3", "", "injected failure")
        if fault is not None and fault.kind == "hang":
            await asyncio.Event().wait()
        if fault is not None and fault.kind == "die":
            self.kill()
            raise BatchError("Activity terminated by provider")
        if fault is not None and fault.kind == "old":  # e.g. `versions` before the handshake
            subcommand = args.index(layout.SERVE_MODULE) + 1
            args = [*args[:subcommand], UNKNOWN_COMMAND, *args[subcommand + 1 :]]
        result = await self._subprocess([self._map(entry_point), *map(self._map, args)])
        if fault is not None and fault.kind in ("reply", "lie") and "--out" in args:
            out = self._container_path(args[args.index("--out") + 1])
            assert out is not None
            out.write_bytes(fault.reply if fault.kind == "reply" else _lie(out, fault.lie))
        return result

    def _inputs(self, args: list[str]) -> list[bytes]:
        """The contents of the input files a command names (for ``refuse`` faults)."""
        paths = [self._container_path(a) for a in args if a.startswith(layout.INPUT_DIR + "/")]
        return [p.read_bytes() for p in paths if p is not None and p.is_file()]

    async def _subprocess(self, argv: list[str]) -> _Result:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.root,
            env=env,
            start_new_session=True,
        )
        self._pgids.add(proc.pid)
        if self.dead:  # the activity ended while the command was being spawned
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:  # the script timed out: kill what the command started
            for pid in self.processes(pgid=proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            raise
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode != 0:
            return _Result(
                False, f"ExeScript command exited with code {proc.returncode}", stdout, stderr
            )
        return _Result(True, "", stdout, stderr)


async def _stream_copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` a chunk at a time, letting the event loop run between
    chunks (the real gftp is a separate process writing while the requestor runs)."""
    with source.open("rb") as src, target.open("ab") as dst:  # gftp may have created it
        dst.truncate(0)
        while chunk := src.read(TRANSFER_CHUNK):
            dst.write(chunk)
            dst.flush()
            await asyncio.sleep(TRANSFER_PAUSE_S)


def _lie(reply: Path, how: str) -> bytes:
    """The daemon's real reply, rewritten by a dishonest provider (well-formed)."""
    obj = json.loads(reply.read_bytes())
    for i, item in enumerate(obj["results"]):
        if how == "corrupt":
            obj["results"][i] = {"error": {"code": "corrupt", "message": "Damaged image."}}
        elif "top" in item:
            top = item["top"]
            if len(top) > 1:  # the second best label wins, scores unchanged
                top[0]["label"], top[1]["label"] = top[1]["label"], top[0]["label"]
            else:
                top[0]["label"] = next(lb for lb in obj["labels"] if lb != top[0]["label"])
            item["label"], item["confidence"] = top[0]["label"], top[0]["confidence"]
    return json.dumps(obj).encode()
