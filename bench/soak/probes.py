"""What the soak watches from outside the bot: its processes (from ``/proc``) and its
directories. Linux only, like the rest of the benchmarks' process handling."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            out += [int(c) for c in text.split()]
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...)."""
    found, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 if it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def state(pid: int) -> str:
    """The process state letter (R, S, D, Z...), or "" if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _taught_or_model(path: str) -> bool:
    """Files bounded by the servers' quotas, counted apart: taught images, models, and the
    answered images kept for feedback and review (``feedback/``)."""
    return "/images/" in path or path.endswith(".model") or "/feedback/" in path


def tree_size(root: Path, *, skip_taught_and_models: bool = False) -> tuple[int, int]:
    """``(bytes, files)`` under ``root``, optionally without taught images, model files and
    kept answer images (a model half-written, ``.model.*.tmp``, still counts)."""
    total = files = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if skip_taught_and_models and _taught_or_model(path):
                continue
            try:
                total += os.lstat(path).st_size
            except OSError:  # removed while walking
                continue
            files += 1
    return total, files


def data_files(data_dir: Path) -> list[tuple[str, int]]:
    """``(path, bytes)`` of the data dir's files other than taught images and models,
    largest first (what the data-dir figure is made of)."""
    out = []
    for path in data_dir.rglob("*"):
        if path.is_file() and not _taught_or_model(str(path)):
            out.append((str(path.relative_to(data_dir)), path.stat().st_size))
    return sorted(out, key=lambda f: -f[1])


@dataclass(frozen=True)
class Sample:
    """One look at the bot: its process, its workers, its directories."""

    t: float  # seconds since the traffic started
    alive: bool
    bot_rss: int
    workers: int  # processes below the bot (workers, forkserver, resource tracker, trainer)
    worker_pids: frozenset[int]
    zombies: int
    workers_rss: int
    fds: int
    tmp_bytes: int
    tmp_files: int
    data_bytes: int  # the data dir without taught images and model files
    data_files: int
    taught_bytes: int
    taught_files: int
    model_files: int  # every scope's, the default model included
    model_files_per_scope: int  # the most in one server's (or the default scope's) folder
    kept_answer_files: int  # the most answered images kept in one server's feedback/


def sample(t: float, pid: int, alive: bool, tmp_dir: Path, data_dir: Path) -> Sample:
    kids = descendants(pid) if alive else []
    data = tree_size(data_dir, skip_taught_and_models=True)
    taught = (0, 0)
    models = 1 if (data_dir / "models" / "current.model").exists() else 0
    per_scope = kept = 0
    guilds = data_dir / "guilds"
    if guilds.is_dir():
        for scope in guilds.iterdir():
            b, f = tree_size(scope / "images")
            taught = (taught[0] + b, taught[1] + f)
            n = len(list((scope / "models").glob("*.model")))
            models += n
            per_scope = max(per_scope, n)
            kept = max(kept, tree_size(scope / "feedback")[1])
    return Sample(
        t=t,
        alive=alive,
        bot_rss=rss_bytes(pid) if alive else 0,
        workers=len(kids),
        worker_pids=frozenset(kids),
        zombies=sum(state(k) == "Z" for k in kids),
        workers_rss=sum(rss_bytes(k) for k in kids),
        fds=open_fds(pid) if alive else 0,
        tmp_bytes=(tmp := tree_size(tmp_dir))[0],
        tmp_files=tmp[1],
        data_bytes=data[0],
        data_files=data[1],
        taught_bytes=taught[0],
        taught_files=taught[1],
        model_files=models,
        model_files_per_scope=per_scope,
        kept_answer_files=kept,
    )
