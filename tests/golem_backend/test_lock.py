"""The one lock of the classifier's runtime libraries (provider/constraints.txt).

pyproject.toml's ranges must admit every locked version, the lock's input must carry
pyproject's own specifiers, both images and ``make setup`` must install with it, and this
environment (made by ``make setup``) must hold exactly the locked versions: the Golem
provider's VM image is built from the same lock, and the version handshake compares them.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provider.versions import LOCK_FILE, locked_versions
from tests.golem_backend.harness import REPO_ROOT

LOCK = REPO_ROOT / "provider" / "constraints.txt"
LOCK_INPUT = REPO_ROOT / "provider" / "constraints.in"
LOCK_IN_REPO = "provider/constraints.txt"


def requirements(path: Path) -> list[Requirement]:
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [Requirement(ln) for ln in lines if ln]


def pyproject_dependencies() -> dict[str, Requirement]:
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, deps)}


def run_lines(dockerfile: Path) -> list[str]:
    parsed = DockerfileParser(path=str(dockerfile)).structure
    return [i["value"] for i in parsed if i["instruction"] == "RUN"]


def test_the_lock_pins_every_library_exactly_once() -> None:
    pins = requirements(LOCK)
    assert len(pins) >= 8
    names = [canonicalize_name(r.name) for r in pins]
    assert len(names) == len(set(names)), "a library is pinned twice (per-platform markers?)"
    for req in pins:
        assert len(req.specifier) == 1, req
        (spec,) = req.specifier
        assert spec.operator == "==" and "*" not in spec.version, req
        assert req.marker is None, f"{req}: the lock is for one platform, without markers"
    assert LOCK == LOCK_FILE  # the file the handshake reads its library names from
    assert locked_versions() == {canonicalize_name(r.name): str(r.specifier)[2:] for r in pins}


def test_pyproject_ranges_admit_every_locked_version() -> None:
    deps = pyproject_dependencies()
    pins = {canonicalize_name(r.name): str(r.specifier)[2:] for r in requirements(LOCK)}
    checked = 0
    for name, pinned in pins.items():
        if name in deps:
            assert deps[name].specifier.contains(pinned, prereleases=True), (
                f"pyproject.toml's {deps[name]} does not admit the locked {name}=={pinned}"
            )
            checked += 1
    assert checked >= 8  # every direct runtime library of the classifier
    # and the check itself can fail
    assert not deps["scikit-learn"].specifier.contains("2.0.0")


def test_the_lock_input_carries_pyproject_specifiers() -> None:
    deps = pyproject_dependencies()
    wanted = requirements(LOCK_INPUT)
    assert {canonicalize_name(r.name) for r in wanted} == {
        "numpy",
        "scikit-learn",
        "threadpoolctl",
        "onnxruntime",
        "opencv-python-headless",
        "mahotas",
        "h5py",
        "pillow",
    }
    pins = {canonicalize_name(r.name) for r in requirements(LOCK)}
    for req in wanted:
        name = canonicalize_name(req.name)
        assert str(req.specifier) == str(deps[name].specifier), f"{req} vs {deps[name]}"
        assert name in pins, f"{name} is not in the lock: run `make lock`"


def test_the_provider_image_installs_exactly_the_lock() -> None:
    dockerfile = REPO_ROOT / "provider" / "Dockerfile"
    parsed = DockerfileParser(path=str(dockerfile)).structure
    copies = [shlex.split(i["value"]) for i in parsed if i["instruction"] == "COPY"]
    [lock_copy] = [c for c in copies if c[0] == LOCK_IN_REPO]
    installs = [r for r in run_lines(dockerfile) if "pip install" in r]
    assert installs, "the VM image installs nothing"
    for run in installs:
        args = shlex.split(run.split("&&")[0])
        assert "-r" in args and args[args.index("-r") + 1] == lock_copy[1], run
        assert "--no-deps" in args, "only what the lock lists: --no-deps"
        assert not [a for a in args[args.index("install") + 1 :] if re.match(r"[A-Za-z]", a)]
    assert any("pip check" in r for r in run_lines(dockerfile))


def test_the_bot_image_and_setup_install_with_the_lock() -> None:
    runs = [r for r in run_lines(REPO_ROOT / "Dockerfile") if "pip install" in r]
    package_installs = [r for r in runs if re.search(r"pip install .*(?<![\w/-])\.(\s|$)", r)]
    assert package_installs, runs
    for run in package_installs:
        args = shlex.split(run)
        assert args[args.index("-c") + 1] == LOCK_IN_REPO, run
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"LOCK   := {LOCK_IN_REPO}" in makefile
    stamp_rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert stamp_rule is not None
    assert "$(LOCK)" in stamp_rule.group(1), "a new lock must re-run the setup"
    assert re.search(r"pip install .*-c \$\(LOCK\) -e '\.\[dev\]'", stamp_rule.group(2))
    lock_rule = r"^lock:.*\n(\t.*\n)*\t.*uv pip compile provider/constraints\.in"
    assert re.search(lock_rule, makefile, re.M)


def test_this_environment_holds_the_locked_versions() -> None:
    """``make setup`` installed with the lock (a stale venv: run ``make setup`` again)."""
    wrong = []
    for name, pinned in locked_versions().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong.append(f"{name} {installed} (locked {pinned})")
    if wrong:
        pytest.fail("not the locked versions: " + ", ".join(wrong) + "; run `make setup`")
