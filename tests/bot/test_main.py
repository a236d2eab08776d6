"""``python -m bot --help``, ``--version`` and ``db --help``: usage, exit 0, and nothing
started, run as real processes in an empty folder (no settings read, no database, no
backend: the folder stays empty)."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def run_bot(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in ``cwd`` with none of the bot's settings in the environment
    (no DISCORD_TOKEN: a bot that started would exit 3)."""
    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "usage", "says"),
    [
        (["--help"], "usage: python -m bot [-h] [--version] {run,db} ...", "exit codes of run"),
        (["-h"], "usage: python -m bot [-h] [--version] {run,db} ...", "DISCORD_TOKEN missing"),
        (["run", "--help"], "usage: python -m bot run [-h]", "Start the bot"),
        (
            ["db", "--help"],
            "usage: python -m bot db [-h] {upgrade,current,repair,backup,restore,copy}",
            "repair",
        ),
    ],
)
def test_help_prints_usage_and_starts_nothing(tmp_path: Path, args: list[str], usage, says):
    done = run_bot(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage) and says in done.stdout, done.stdout
    assert done.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no var/, no bot.db, no model


def test_version_prints_the_installed_version_and_starts_nothing(tmp_path: Path):
    done = run_bot(["--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    expected = metadata.version("golem-image-classifier-bot")
    assert done.stdout == f"python -m bot {expected}\n" and done.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_command_is_a_usage_error(tmp_path: Path):
    done = run_bot(["serve"], tmp_path)
    assert done.returncode == 2
    assert "invalid choice: 'serve'" in done.stderr and done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_no_command_runs_the_bot(tmp_path: Path):
    """A bare ``python -m bot`` (and ``run``) still starts the bot: here it reads the
    settings and stops at the missing token (exit 3)."""
    for args in ([], ["run"]):
        done = run_bot(args, tmp_path)
        assert done.returncode == 3, (args, done.stderr)
        assert "DISCORD_TOKEN: required but not set" in done.stderr
