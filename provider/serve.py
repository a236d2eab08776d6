"""Provider-side classifier daemon and its tiny client (runs inside the Golem VM).

Spawning the full CLI per batch costs about a second of imports and network loading, so
the service starts one long-lived daemon that holds the model, and each batch runs the
client, which only forwards the request over a Unix socket and writes the JSON reply:

    python3 -m provider.serve daemon --model /golem/work/model.bin --socket /golem/work/clf.sock
    python3 -m provider.serve ping   --socket S --wait 60 --out /golem/output/ready.json
    python3 -m provider.serve client --socket S --top-k 3 --out /golem/output/<id>.json FILE...
    python3 -m provider.serve client --socket S --heads ID,-,ID ... FILE...   (one head a file)
    python3 -m provider.serve reload --socket S --model /golem/work/model-<id>.bin --out F
    python3 -m provider.serve stop   --socket S
    python3 -m provider.serve versions --out /golem/output/versions.json

Only the standard library is imported at module level, so the client starts in tens of
milliseconds; the daemon imports :mod:`provider.model` when it starts. Golem passes no
environment to commands: every setting is an argument.

Protocol: one JSON object and a newline each way per connection. Replies carry
``{"ok": true, "version": 1, "model_id", "labels", ...}`` or ``{"ok": false, "error"}``; a
classification reply has ``results``: one object per file, either a prediction
(``Prediction.to_json()``) or ``{"error": {"code", "message"}}``.

Servers' heads: a classify request may carry ``heads``, one entry per file, a model id or
null (the daemon's own model). The daemon loads a head from ``<head dir>/<id>.model`` (the
requestor uploads it there first), verifies it and that it holds that id, and keeps loaded
heads in an LRU bounded by ``--head-cache-mb``; each prediction names the head that made it.

Versions: ``versions`` needs no daemon; it writes ``{"ok": true, "version": 1, "runtime":
{"libraries": {name: version}, "extractors": {name: version}}}`` (:mod:`provider.versions`),
which the requestor compares with its own before it uploads anything (the handshake). An
image older than the handshake does not know the command and exits 64.

Client exit codes: 0 success, 1 the daemon answered with an error, 2 the daemon is not
available (not started, crashed, or failed to load its model), 64 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_UNIX_PATH = 107  # sun_path is 108 bytes including the terminating NUL
EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2, 64


class DaemonUnavailable(Exception):
    """The daemon cannot be reached (not started, crashed, or failed to load its model)."""


def failed_marker(socket_path: str) -> Path:
    """The file a daemon writes its fatal error to, so clients fail fast instead of waiting."""
    return Path(f"{socket_path}.failed")


def daemon_failure(socket_path: str) -> str | None:
    """The daemon's own reason for failing, if it wrote one."""
    try:
        return failed_marker(socket_path).read_text(errors="replace").strip() or "daemon failed"
    except FileNotFoundError:
        return None


# --- wire -------------------------------------------------------------------------------


def _read_message(conn: socket.socket) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise ValueError("message too large")
        if chunk.endswith(b"\n"):
            break
    obj = json.loads(b"".join(chunks) or b"null")
    if not isinstance(obj, dict):
        raise ValueError("a message must be a JSON object")
    return obj


def _send_message(conn: socket.socket, obj: dict[str, Any]) -> None:
    conn.sendall(json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n")


def request(socket_path: str, payload: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to the daemon and return its reply (raises DaemonUnavailable)."""
    failure = daemon_failure(socket_path)
    if failure is not None:
        raise DaemonUnavailable(failure)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(socket_path)
        except OSError as exc:
            raise DaemonUnavailable(f"cannot connect to {socket_path}: {exc}") from exc
        _send_message(conn, payload)
        try:
            return _read_message(conn)
        except (OSError, ValueError) as exc:
            raise DaemonUnavailable(f"no valid reply from the daemon: {exc}") from exc


# --- daemon -----------------------------------------------------------------------------


_HEAD_ID_CHARS = frozenset("0123456789abcdef")


class _Daemon:
    """Holds one loaded classifier (and servers' heads) and answers requests one at a time."""

    def __init__(
        self, model_path: str, head_dir: str | None = None, head_cache_mb: float = 256
    ) -> None:
        self.classifier = self._load(model_path)
        self.head_dir = Path(head_dir) if head_dir else None
        from provider.heads import HeadCache

        self.heads = HeadCache(int(head_cache_mb * 2**20))

    @staticmethod
    def _load(model_path: str) -> Any:
        from provider.model import Classifier

        return Classifier.load(model_path)

    def describe(self) -> dict[str, Any]:
        clf = self.classifier
        return {
            "ok": True,
            "version": PROTOCOL_VERSION,
            "model_id": str(clf.model_id),
            "labels": [str(label) for label in clf.labels],
        }

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "ping":
            return self.describe()
        if op == "classify":
            return self._classify(req)
        if op == "reload":
            self.classifier = self._load(str(req["model"]))
            return self.describe()
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _classify(self, req: dict[str, Any]) -> dict[str, Any]:
        from provider.errors import ImageError

        files = [Path(str(f)) for f in req.get("files", [])]
        top_k = int(req.get("top_k", 3))
        kwargs: dict[str, Any] = {}
        if req.get("max_pixels"):
            kwargs["max_pixels"] = int(req["max_pixels"])
        started = time.perf_counter()
        heads = req.get("heads")
        if heads is not None:
            outcomes = self._classify_with_heads(files, heads, top_k, kwargs)
        else:
            outcomes = (
                self.classifier.classify_sources(files, top_k=top_k, **kwargs) if files else []
            )
        results = [
            {"error": o.to_json()} if isinstance(o, ImageError) else o.to_json() for o in outcomes
        ]
        reply = self.describe()
        reply["results"] = results
        reply["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return reply

    def _classify_with_heads(
        self, files: list[Path], heads: Any, top_k: int, kwargs: dict[str, Any]
    ) -> list[Any]:
        """Each file answered by its head (a model id, or None for the daemon's own model).

        Raises ``ValueError`` (the request is refused) for a malformed head list, an id
        that is not a model id, or a head file that is missing or fails verification.
        """
        from provider.heads import HeadKey, classify_with_heads

        if not isinstance(heads, list) or len(heads) != len(files):
            raise ValueError("heads must list one model id (or null) per file")
        chosen: list[Any] = []
        for head in heads:
            if head is None:
                chosen.append(None)
                continue
            if (
                not isinstance(head, str)
                or not 1 <= len(head) <= 64
                or not set(head) <= _HEAD_ID_CHARS
                or self.head_dir is None
            ):
                raise ValueError(f"not a head this daemon can load: {str(head)[:80]!r}")
            chosen.append(self.heads.get(HeadKey(head, str(self.head_dir / f"{head}.model"))))
        outcomes = classify_with_heads(self.classifier, files, chosen, top_k, **kwargs)
        from provider.errors import ModelError

        for outcome in outcomes:
            if isinstance(outcome, ModelError):
                raise ValueError(outcome.message)
        return outcomes

    def head_stats(self) -> dict[str, int]:
        return self.heads.stats()


def run_daemon(
    model_path: str, socket_path: str, head_dir: str | None = None, head_cache_mb: float = 256
) -> int:
    """Load the model, then serve requests on ``socket_path`` until stopped (SIGTERM/stop)."""
    marker = failed_marker(socket_path)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    if len(socket_path.encode()) > MAX_UNIX_PATH:
        return _fatal(marker, f"socket path is too long for a Unix socket: {socket_path}")
    try:
        daemon = _Daemon(model_path, head_dir, head_cache_mb)
    except Exception as exc:  # a ModelError, or anything else that prevents serving
        return _fatal(marker, f"cannot load the model {model_path}: {exc}")

    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    os.chmod(socket_path, 0o600)
    server.listen(8)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving model {daemon.classifier.model_id} on {socket_path}", file=sys.stderr)
    sys.stderr.flush()
    try:
        while True:
            conn, _ = server.accept()
            with conn:
                if not _serve_one(daemon, conn):
                    return EXIT_OK
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)


def _serve_one(daemon: _Daemon, conn: socket.socket) -> bool:
    """Answer one connection; False when asked to stop."""
    conn.settimeout(60.0)
    try:
        req = _read_message(conn)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            _send_message(conn, {"ok": False, "error": f"bad request: {exc}"})
        return True
    if req.get("op") == "stop":
        with contextlib.suppress(OSError):
            _send_message(conn, {"ok": True, "version": PROTOCOL_VERSION})
        return False
    try:
        reply = daemon.handle(req)
    except Exception as exc:  # keep serving; the client reports the error
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(OSError):
        _send_message(conn, reply)
    return True


def _fatal(marker: Path, message: str) -> int:
    print(f"FATAL: {message}", file=sys.stderr)
    with contextlib.suppress(OSError):
        marker.write_text(message + "\n")
    return EXIT_UNAVAILABLE


# --- client commands --------------------------------------------------------------------


def _write_atomic(path: str, obj: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, separators=(",", ":"))
    os.replace(tmp, path)


def _finish(reply: dict[str, Any], out: str | None) -> int:
    if not reply.get("ok"):
        print(f"daemon error: {reply.get('error', 'unknown error')}", file=sys.stderr)
        return EXIT_REFUSED
    if out:
        _write_atomic(out, reply)
    else:
        print(json.dumps(reply))
    return EXIT_OK


def _cleanup(files: Sequence[str], out: str) -> None:
    """Remove a batch's inputs and the replies of earlier batches (already downloaded)."""
    parents = set()
    for name in files:
        with contextlib.suppress(OSError):
            os.unlink(name)
        parents.add(os.path.dirname(name))
    for parent in parents:
        with contextlib.suppress(OSError):
            os.rmdir(parent)
    out_path = Path(out)
    for old in out_path.parent.glob("batch-*.json"):
        if old != out_path:
            with contextlib.suppress(OSError):
                old.unlink()


def cmd_client(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"op": "classify", "files": args.files, "top_k": args.top_k}
    if args.heads:
        payload["heads"] = [None if h == "-" else h for h in args.heads.split(",")]
    if args.max_pixels:
        payload["max_pixels"] = args.max_pixels
    reply = request(args.socket, payload, timeout=args.timeout)
    code = _finish(reply, args.out)
    if args.cleanup and args.out:
        _cleanup(args.files, args.out)
    return code


def cmd_ping(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.wait
    while True:
        try:
            reply = request(args.socket, {"op": "ping"}, timeout=10.0)
        except DaemonUnavailable as exc:
            # The daemon may have failed between request()'s look at the marker and now:
            # report its reason, not "cannot connect".
            failure = daemon_failure(args.socket)
            if failure is not None:
                raise DaemonUnavailable(failure) from exc
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
        else:
            return _finish(reply, args.out)


def cmd_reload(args: argparse.Namespace) -> int:
    reply = request(args.socket, {"op": "reload", "model": args.model}, timeout=args.timeout)
    return _finish(reply, args.out)


def cmd_stop(args: argparse.Namespace) -> int:
    return _finish(request(args.socket, {"op": "stop"}, timeout=10.0), None)


def cmd_versions(args: argparse.Namespace) -> int:
    from provider.versions import runtime_report

    return _finish({"ok": True, "version": PROTOCOL_VERSION, "runtime": runtime_report()}, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m provider.serve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("daemon", help="load the model and serve requests on a Unix socket")
    p.add_argument("--model", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--head-dir", help="folder of servers' heads, <model id>.model each")
    p.add_argument("--head-cache-mb", type=float, default=256.0)

    p = sub.add_parser("client", help="classify image files through the daemon")
    p.add_argument("--socket", required=True)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--out", help="write the JSON reply here (atomically) instead of stdout")
    p.add_argument("--max-pixels", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--cleanup", action="store_true", help="delete the inputs afterwards")
    p.add_argument("--heads", help="comma-separated model id per file, '-' = the daemon's model")
    p.add_argument("files", nargs="*")
    p.set_defaults(func=cmd_client)

    p = sub.add_parser("ping", help="wait until the daemon answers, print its model")
    p.add_argument("--socket", required=True)
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the daemon")
    p.add_argument("--out")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("reload", help="make the daemon load another model file")
    p.add_argument("--socket", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out")
    p.add_argument("--timeout", type=float, default=300.0)
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("stop", help="stop the daemon")
    p.add_argument("--socket", required=True)
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("versions", help="print the locked libraries' and extractors' versions")
    p.add_argument("--out")
    p.set_defaults(func=cmd_versions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, which means "unavailable" here
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.command == "daemon":
        return run_daemon(args.model, args.socket, args.head_dir, args.head_cache_mb)
    try:
        return int(args.func(args))
    except DaemonUnavailable as exc:
        print(f"classifier daemon unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
