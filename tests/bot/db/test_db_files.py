"""The files the database's rows name."""

from __future__ import annotations

import os
from pathlib import Path

from bot.db.files import write_atomic


def test_write_atomic_leaves_no_temp_files(tmp_path: Path):
    target = tmp_path / "d" / "state.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["state.json"]
