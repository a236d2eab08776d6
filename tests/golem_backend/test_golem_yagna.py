"""GolemBackend.start() against a real yagna daemon, offline on loopback.

yagna 0.17.6 (pip package ``golem-node``) serves its REST API offline when its relay points
at an unused loopback port; the payment allocation then fails because no chain is
reachable. start() must end quickly in BackendUnavailable naming that cause, and no yagna
process may outlive the test. In CI (CI=true) a missing yagna is a failure, not a skip:
``bash .ci/yagna.sh install`` provides it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from golem_backend.base import BackendUnavailable
from golem_backend.factory import create_backend
from golem_backend.golem.backend import GolemBackend
from golem_backend.settings import BackendSettings
from provider.results import Prediction

START_BUDGET_S = 60.0


def _yagna_binary() -> str:
    found = shutil.which("yagna")
    venv_bin = Path(sys.executable).parent / "yagna"
    if found is None and venv_bin.exists():
        found = str(venv_bin)
    if found is None:
        reason = "yagna is not installed (`bash .ci/yagna.sh install` = pip install golem-node)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(f"{reason}; CI runs this test")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


@dataclass
class Yagna:
    url: str
    appkey: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def yagna() -> Iterator[Yagna]:
    binary = _yagna_binary()
    work = Path(tempfile.mkdtemp(prefix="ya", dir="/tmp"))  # short: the GSB socket path
    port, relay = _free_port(), _free_port()
    appkey = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YAGNA_", "YA_", "GSB_"))}
    env.update(
        YAGNA_DATADIR=str(work / "data"),
        GSB_URL=f"unix:{work}/yagna.sock",
        YA_NET_RELAY_HOST=f"127.0.0.1:{relay}",
        YAGNA_AUTOCONF_APPKEY=appkey,
        YAGNA_API_URL=f"http://127.0.0.1:{port}",
    )
    log = work / "yagna.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "service", "run", "--api-url", url],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_api(url, appkey, process, log)
        yield Yagna(url, appkey, process, log)
    finally:
        _stop(process)
        leftovers = _group_members(process.pid)
        shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"yagna processes left behind: {leftovers}"


def _wait_for_api(url: str, appkey: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    request = urllib.request.Request(f"{url}/me", headers={"Authorization": f"Bearer {appkey}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"yagna exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"yagna's REST API did not come up within 60 s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for pid in _group_members(process.pid):  # children that survived their parent
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)


def _settings(tmp_path: Path, url: str, appkey: str, **extra: object) -> BackendSettings:
    return BackendSettings(
        _env_file=None,  # type: ignore[call-arg]
        backend="golem",
        data_dir=tmp_path,
        yagna_api_url=url,
        yagna_appkey=appkey,
        golem_payment_network="hoodi",
        golem_image_hash="0" * 56,
        golem_start_timeout_s=START_BUDGET_S,
        **extra,
    )


async def _start_fails(settings: BackendSettings) -> tuple[str, float]:
    backend = GolemBackend(settings)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await asyncio.wait_for(backend.start(), START_BUDGET_S + 15)
    elapsed = time.monotonic() - started
    await backend.stop()
    await backend.stop()  # safe twice
    return caught.value.message, elapsed


async def test_start_ends_with_the_payment_cause(yagna: Yagna, tmp_path: Path) -> None:
    message, elapsed = await _start_fails(_settings(tmp_path, yagna.url, yagna.appkey))
    assert elapsed < START_BUDGET_S
    assert "payment allocation on erc20/hoodi failed" in message
    assert "unreachable" in message.lower()  # yagna: "Error getting balance ... unreachable"
    assert "yagna payment fund --network hoodi" in message
    assert yagna.appkey not in message
    assert yagna.process.poll() is None  # the daemon itself is fine


async def test_start_with_a_wrong_appkey(yagna: Yagna, tmp_path: Path) -> None:
    message, elapsed = await _start_fails(_settings(tmp_path, yagna.url, "not-the-key"))
    assert elapsed < 15
    assert "rejected YAGNA_APPKEY" in message and "yagna app-key create" in message


async def test_start_without_yagna(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    message, elapsed = await _start_fails(_settings(tmp_path, url, "key"))
    assert elapsed < 15
    assert f"yagna is not reachable at {url}" in message and "yagna service run" in message


async def test_start_without_appkey(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:1", "")
    message, _ = await _start_fails(settings)
    assert "YAGNA_APPKEY is not set" in message


async def test_with_the_fallback_a_bot_whose_yagna_cannot_pay_still_answers(
    yagna: Yagna, tmp_path: Path, tiny_model, sample_images
) -> None:
    """GOLEM_FALLBACK=local: the real yagna cannot allocate payment (offline chain), yet
    requests are answered by the local backend and /status says why Golem is not used."""
    settings = _settings(tmp_path, yagna.url, yagna.appkey, golem_fallback="local", local_workers=1)
    settings.model_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_model.path, settings.model_path)
    backend = create_backend(settings)
    await asyncio.wait_for(backend.start(), START_BUDGET_S)
    try:
        (outcome,) = await backend.classify([sample_images[0]])
        assert isinstance(outcome, Prediction) and outcome.label in tiny_model.labels
        status = await backend.status()
        assert status.ready and status.answered_by == "local"
        deadline = time.monotonic() + START_BUDGET_S
        while "payment allocation on erc20/hoodi failed" not in status.detail:
            assert time.monotonic() < deadline, status.detail
            await asyncio.sleep(0.5)
            status = await backend.status()
        assert "the local backend answers meanwhile" in status.detail
        assert yagna.appkey not in status.detail
        (outcome,) = await backend.classify([sample_images[1]])
        assert isinstance(outcome, Prediction)
    finally:
        await asyncio.wait_for(backend.stop(), 60)


async def test_reopening_the_connection_with_a_new_allocation(yagna: Yagna, tmp_path: Path) -> None:
    """What a budget raise does after a budget stop (GolemRuntime.reopen): a new yapapi
    session whose allocation is the budget left. Offline the allocation cannot be made, so
    it ends, bounded, in the payment error, and no connection stays open."""
    from golem_backend.golem.runtime import GolemRuntime

    runtime = GolemRuntime(_settings(tmp_path, yagna.url, yagna.appkey))
    with pytest.raises(BackendUnavailable):
        await runtime.start()  # offline: the first allocation fails the same way
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await asyncio.wait_for(runtime.reopen(0.25, START_BUDGET_S), START_BUDGET_S + 15)
    assert time.monotonic() - started < START_BUDGET_S
    assert "payment allocation on erc20/hoodi failed" in caught.value.message
    assert yagna.appkey not in caught.value.message
    assert not runtime.connected
    await runtime.close()
