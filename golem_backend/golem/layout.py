"""The provider VM's file layout: one place for every absolute path the service uses.

Shared by the service scripts, the Dockerfile test and the local exe-unit harness. Golem
ignores the image's ``CMD``/``ENTRYPOINT``/``ENV`` and starts every command without an
environment, so everything is an absolute path or a command-line argument. This module
imports nothing beyond the standard library.
"""

from __future__ import annotations

#: The interpreter of the ``python:3.11-slim`` base image.
PYTHON = "/usr/local/bin/python3"
SITE_PACKAGES = "/usr/local/lib/python3.11/site-packages"
#: The project (``provider`` package, ONNX weights, default dataset), outside the volumes.
APP_DIR = "/opt/classifier"
#: A ``.pth`` file that puts ``APP_DIR`` on ``sys.path`` of every ``python3`` (no ENV needed).
PTH_FILE = f"{SITE_PACKAGES}/classifier.pth"
SERVE_MODULE = "provider.serve"

INPUT_DIR = "/golem/input"  # images of each batch: /golem/input/<batch-id>/<i>
OUTPUT_DIR = "/golem/output"  # JSON replies: /golem/output/<batch-id>.json
WORK_DIR = "/golem/work"  # model artifacts, the daemon's socket and log
VOLUMES = (INPUT_DIR, OUTPUT_DIR, WORK_DIR)

MODEL_PATH = f"{WORK_DIR}/model.bin"
SOCKET_PATH = f"{WORK_DIR}/clf.sock"
DAEMON_LOG = f"{WORK_DIR}/daemon.log"
READY_PATH = f"{OUTPUT_DIR}/ready.json"
RELOAD_PATH = f"{OUTPUT_DIR}/reload.json"
VERSIONS_PATH = f"{OUTPUT_DIR}/versions.json"  # the version handshake's report


#: Servers' heads, uploaded on demand: /golem/work/<model id>.model (no sub-folder to create)
HEAD_DIR = WORK_DIR


def head_path(model_id: str) -> str:
    """Where a server's head is uploaded (its id is hex digits; the daemon refuses others)."""
    return f"{HEAD_DIR}/{model_id}.model"


def model_update_path(model_id: str) -> str:
    """Where a retrained model is uploaded before the daemon reloads it."""
    safe = "".join(c for c in model_id if c.isalnum() or c in "-_")[:64] or "model"
    return f"{WORK_DIR}/model-{safe}.bin"
