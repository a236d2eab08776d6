"""Static checks of provider/Dockerfile (no Docker engine here): the image layout it creates
contains every path the ClassifierService's real scripts use."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path, PurePosixPath

import pytest
from yapapi import WorkContext

from golem_backend.golem import layout
from golem_backend.golem.batch import ClassifyBatch
from golem_backend.golem.model_store import ModelArtifact, ModelStore
from golem_backend.golem.service import ClassifierService, ServiceConfig
from tests.golem_backend.harness import REPO_ROOT, LocalStorageProvider
from tests.golem_backend.harness.engine import _agreement

DOCKERFILE = REPO_ROOT / "provider" / "Dockerfile"
#: Pinned: the exact release and Debian suite, and the image index digest (the bot's base too).
BASE_IMAGE = (
    "python:3.11.14-slim-bookworm"
    "@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d"
)
#: What python:3.11-slim provides that the service relies on.
BASE_LAYOUT = {"/bin/sh", "/dev/null", "/usr/local/bin/python3", layout.SITE_PACKAGES}
RUNTIME_DEPS = (
    "numpy",
    "scikit-learn",
    "threadpoolctl",
    "onnxruntime",
    "opencv-python-headless",
    "mahotas",
    "h5py",
    "Pillow",
)


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    return [(s.split(None, 1)[0].upper(), s.split(None, 1)[1]) for s in logical]


def image_layout() -> tuple[set[str], dict[str, Path]]:
    """(directories and files known to exist in the image, image path -> repo source)."""
    paths = set(BASE_LAYOUT)
    copied: dict[str, Path] = {}
    for keyword, args in instructions():
        if keyword == "VOLUME":
            paths.update(args.split())
        elif keyword == "WORKDIR":
            paths.add(args.strip())
        elif keyword == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                src = REPO_ROOT / source
                if src.is_dir():
                    for file in src.rglob("*"):
                        if file.is_file() and "__pycache__" not in file.parts:
                            rel = file.relative_to(src).as_posix()
                            copied[f"{dest.rstrip('/')}/{rel}"] = file
                else:
                    copied[dest] = src
    for image_path in copied:
        paths.update(str(p) for p in PurePosixPath(image_path).parents)
    paths.update(copied)
    return paths, copied


def test_base_image_and_no_ignored_instructions() -> None:
    keywords = instructions()
    assert keywords[0] == ("FROM", BASE_IMAGE)
    assert layout.SITE_PACKAGES.endswith("python3.11/site-packages")  # matches the FROM tag
    froms = [
        line.split()[1:]
        for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]
    stages = {words[-1] for words in froms if len(words) == 3}  # FROM image AS name
    bot_bases = {words[0] for words in froms if words[0] not in stages}
    assert bot_bases == {BASE_IMAGE}  # the bot trains with the libraries the VM runs
    used = {k for k, _ in keywords}
    # Golem ignores these: relying on them would break on providers.
    assert not used & {"ENV", "CMD", "ENTRYPOINT", "USER"}


def test_every_copy_source_exists_and_lands_outside_the_volumes() -> None:
    copies = [shlex.split(args) for k, args in instructions() if k == "COPY"]
    assert copies, "the Dockerfile copies nothing"
    for *sources, dest in copies:
        assert not any(s.startswith("--") for s in sources), "no COPY flags expected"
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY source {source} missing from the repo"
        assert dest.startswith(layout.APP_DIR), dest
        assert not any(dest.startswith(v) for v in layout.VOLUMES)


def test_volumes_declared() -> None:
    volumes = {v for k, args in instructions() if k == "VOLUME" for v in args.split()}
    assert set(layout.VOLUMES) <= volumes


def test_project_is_importable_without_env() -> None:
    """``python3 -m provider.serve`` works from any directory: a .pth file, not PYTHONPATH."""
    runs = " ".join(args for k, args in instructions() if k == "RUN")
    assert re.search(rf"echo {re.escape(layout.APP_DIR)} > {re.escape(layout.PTH_FILE)}", runs)
    assert PurePosixPath(layout.PTH_FILE).parent == PurePosixPath(layout.SITE_PACKAGES)
    paths, copied = image_layout()
    module_file = f"{layout.APP_DIR}/{layout.SERVE_MODULE.replace('.', '/')}.py"
    assert module_file in copied, "the daemon module is not in the image"
    for needed in ("provider/__init__.py", "provider/model.py", "provider/features/cnn.py"):
        image_path = f"{layout.APP_DIR}/{needed}"
        assert image_path in paths, f"{needed} is not copied into the image"
    onnx = {PurePosixPath(p).name for p in copied if p.endswith(".onnx")}
    assert {"efficientnet_lite0.onnx", "efficientnet_lite0_int8.onnx"} <= onnx, onnx
    assert any("/provider/data/flowers17/" in p for p in copied), "default dataset missing"


def test_the_image_installs_only_the_locked_classifier_libraries() -> None:
    """The lock (checked in test_lock.py) holds the classifier's libraries and theirs only."""
    runs = " ".join(args for k, args in instructions() if k == "RUN")
    assert "-r /opt/classifier/provider/constraints.txt" in runs
    lock = (REPO_ROOT / "provider" / "constraints.txt").read_text().lower()
    for name in RUNTIME_DEPS:
        assert f"\n{name.lower()}==" in lock, name
    for bot_only in ("yapapi", "discord", "pydantic", "sqlalchemy", "aiohttp"):
        assert bot_only not in runs and f"\n{bot_only}" not in lock


def _container_paths(script_batch: list[dict]) -> set[str]:
    """Every absolute path a script's commands refer to inside the VM."""
    found: set[str] = set()
    for command in script_batch:
        ((name, args),) = command.items()
        if name == "run":
            tokens = [args["entry_point"], *args["args"]]
            for token in list(tokens):
                if " " in token:  # a /bin/sh -c command line
                    tokens.extend(shlex.split(token))
            found.update(t for t in tokens if t.startswith("/") and " " not in t)
        elif name == "transfer":
            for end in (args["from"], args["to"]):
                if end.startswith("container:"):
                    found.add(end.removeprefix("container:"))
    return found


async def _scripts_of_the_service(tmp_path: Path) -> list[list[dict]]:
    """Build (not run) the real start() and run() scripts of a ClassifierService."""
    store = ModelStore(ModelArtifact(b"model", "m1", ("a", "b")))
    service = ClassifierService(ServiceConfig(store=store))
    # scripts are built, not run: the handshake gets no report, which is not under test here
    service._check_versions = lambda data: None  # type: ignore[method-assign]
    storage = LocalStorageProvider(tmp_path)
    service._set_ctx(WorkContext(None, _agreement(1), storage, emitter=lambda *a, **k: None))  # type: ignore[arg-type]
    done = asyncio.get_running_loop().create_future()
    done.set_result([])
    batches = []
    start = service.start()
    script = await start.__anext__()
    while True:
        await script._before()
        batches.append(script._evaluate())
        try:
            script = await start.asend(done)
        except StopAsyncIteration:
            break
        except Exception:  # the empty ready reply fails validation; the script was built
            break
    service.model_id = "old"  # so run() also builds the model-update commands
    batch = ClassifyBatch(
        "batch-1", [b"img1", b"img2"], 3, asyncio.get_running_loop().create_future()
    )
    await service.send_message(batch)
    run = service.run()
    script = await run.__anext__()
    await script._before()
    batches.append(script._evaluate())
    await run.aclose()
    return batches


async def test_every_path_the_service_uses_exists_in_the_image(tmp_path: Path) -> None:
    paths, _ = image_layout()
    batches = await _scripts_of_the_service(tmp_path)
    used = set().union(*(_container_paths(b) for b in batches))
    assert layout.PYTHON in used and layout.SOCKET_PATH in used and layout.MODEL_PATH in used
    assert layout.VERSIONS_PATH in used
    volumes = tuple(v + "/" for v in layout.VOLUMES)
    for path in sorted(used):
        in_volume = path.startswith(volumes)
        assert in_volume or path in paths, f"{path} is used by the service but not in the image"
    assert json.dumps(batches)  # the scripts are plain JSON for the exe-unit
    with pytest.raises(AssertionError):  # the check itself can fail
        assert "/usr/bin/python3" in paths
