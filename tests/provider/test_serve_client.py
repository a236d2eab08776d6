"""``provider.serve ping``: what the requestor's start-up check reports (no daemon running)."""

from __future__ import annotations

import time

import pytest

from provider import serve


def test_ping_reports_the_daemons_reason_when_it_fails_mid_poll(tmp_path, monkeypatch, capsys):
    """The daemon can fail between request()'s look at its marker and the connect attempt
    (seen once in CI): ping must still report the daemon's reason, not "cannot connect"."""
    sock = str(tmp_path / "clf.sock")
    real_request = serve.request

    def daemon_dies_meanwhile(path: str, payload: dict, timeout: float = 120.0) -> dict:
        try:
            return real_request(path, payload, timeout)
        except serve.DaemonUnavailable:
            serve.failed_marker(path).write_text("cannot load the model m.clf: corrupted\n")
            raise

    monkeypatch.setattr(serve, "request", daemon_dies_meanwhile)
    started = time.monotonic()
    assert serve.main(["ping", "--socket", sock, "--wait", "30"]) == serve.EXIT_UNAVAILABLE
    assert time.monotonic() - started < 5  # fails fast, not at the end of --wait
    err = capsys.readouterr().err
    assert "cannot load the model m.clf: corrupted" in err
    assert "cannot connect" not in err


def test_ping_without_a_daemon_gives_up_after_wait(tmp_path, capsys):
    sock = str(tmp_path / "clf.sock")
    started = time.monotonic()
    assert serve.main(["ping", "--socket", sock, "--wait", "0.3"]) == serve.EXIT_UNAVAILABLE
    assert 0.3 <= time.monotonic() - started < 5
    assert "cannot connect" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["boom\n", ""])
def test_a_failed_daemon_is_reported_at_once(tmp_path, capsys, text):
    sock = str(tmp_path / "clf.sock")
    serve.failed_marker(sock).write_text(text)
    assert serve.main(["ping", "--socket", sock, "--wait", "30"]) == serve.EXIT_UNAVAILABLE
    assert (text.strip() or "daemon failed") in capsys.readouterr().err
