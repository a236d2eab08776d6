"""The compose `golem` profile's yagna entrypoint (docker/yagna-init.sh) against the real yagna.

The script runs as it does in its container, offline on loopback (see test_golem_yagna.py):
it starts yagna, creates the bot's app key once, writes it to YAGNA_APPKEY_FILE for the bot
(0640, never logged), keeps yagna's bus socket to the owner and the shared group, and stops
yagna on SIGTERM. The key it writes is accepted by yagna's REST API and read by the bot's
settings (YAGNA_APPKEY_FILE).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from golem_backend.golem.runtime import read_appkey
from golem_backend.settings import BackendSettings
from tests.golem_backend.harness import REPO_ROOT
from tests.golem_backend.test_golem_yagna import _free_port, _group_members, _stop, _yagna_binary

INIT = REPO_ROOT / "docker" / "yagna-init.sh"


def start_init(work: Path, api_port: int, relay_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YAGNA_", "YA_", "GSB_"))}
    env.update(
        YAGNA=_yagna_binary(),
        YAGNA_DATADIR=str(work / "data"),
        GSB_URL=f"unix:{work}/bus/gsb.sock",
        YA_NET_RELAY_HOST=f"127.0.0.1:{relay_port}",
        YAGNA_API_URL=f"http://127.0.0.1:{api_port}",
        YAGNA_APPKEY_FILE=str(work / "bus" / "appkey"),
        YAGNA_START_TIMEOUT_S="60",
    )
    log = work / "init.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["sh", str(INIT)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log


def wait_for_key(path: Path, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"yagna-init exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text().strip()
        time.sleep(0.25)
    pytest.fail(f"no app key within 90 s:\n{log.read_text()[-3000:]}")


def me(api_port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{api_port}/me", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status


def stop_init(process: subprocess.Popen[bytes]) -> int:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=40)
    finally:
        _stop(process)  # anything left is killed


def test_the_init_step_writes_a_working_key_once_and_stops_yagna(tmp_path: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="yi", dir="/tmp"))  # short: the socket path
    (work / "bus").mkdir()
    api_port, relay_port = _free_port(), _free_port()
    key_file = work / "bus" / "appkey"
    try:
        process, log = start_init(work, api_port, relay_port)
        key = wait_for_key(key_file, process, log)
        assert me(api_port, key) == 200  # yagna accepts the key
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o640
        socket = work / "bus" / "gsb.sock"
        assert stat.S_ISSOCK(socket.stat().st_mode)
        assert stat.S_IMODE(socket.stat().st_mode) & 0o007 == 0  # owner and group only
        assert stat.S_IMODE(socket.stat().st_mode) & 0o060 == 0o060  # the bot's group may use it
        settings = BackendSettings(_env_file=None, yagna_appkey_file=key_file)  # type: ignore[call-arg]
        assert read_appkey(settings) == key  # what the bot reads

        assert stop_init(process) == 0
        assert _group_members(process.pid) == [], "yagna outlived its init step"

        # a restart (the persistent volume kept yagna's data): the same key, written again
        key_file.unlink()
        process, log = start_init(work, api_port, relay_port)
        assert wait_for_key(key_file, process, log) == key
        assert me(api_port, key) == 200
        assert stop_init(process) == 0
        text = log.read_text()
        assert key not in text, "the app key was logged"
        assert text.count('app key "classifier-bot" is in') == 2
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def test_the_init_step_needs_a_key_file(tmp_path: Path) -> None:
    result = subprocess.run(
        ["sh", str(INIT)],
        env={"PATH": os.environ["PATH"], "YAGNA": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "YAGNA_APPKEY_FILE" in result.stderr


@pytest.mark.parametrize(
    "content",
    ["", "\n", "not a key!\n", "x" * 5000, "abc\n"],
    ids=["empty", "blank", "bad", "huge", "short"],
)
def test_a_broken_key_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    from golem_backend.base import BackendUnavailable

    path = tmp_path / "appkey"
    path.write_text(content)
    settings = BackendSettings(_env_file=None, yagna_appkey_file=path)  # type: ignore[call-arg]
    with pytest.raises(BackendUnavailable, match="does not hold an app key") as caught:
        read_appkey(settings)
    assert "x" * 50 not in caught.value.message
    missing = BackendSettings(_env_file=None, yagna_appkey_file=tmp_path / "nope")  # type: ignore[call-arg]
    with pytest.raises(BackendUnavailable, match="cannot be read"):
        read_appkey(missing)
