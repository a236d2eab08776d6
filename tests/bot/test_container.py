"""Static checks of the bot's Dockerfile, docker/yagna.Dockerfile and compose.yaml.

No Docker engine runs on the project's machines: the files are parsed (dockerfile-parse,
PyYAML), every path they copy must exist in the build context and not be excluded by
.dockerignore, and the commands they run must be the ones the README and the package
declare.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from bot.core.settings import Settings
from tests.bot.harness import ROOT

BOT_DOCKERFILE = ROOT / "Dockerfile"
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
    build, runtime = stages(parse(BOT_DOCKERFILE))
    for stage in (build, runtime):
        assert re.fullmatch(r"python:3\.1[1-9]-slim( AS \w+)?", stage[0]["value"]), stage[0]
    assert any("--from=build" in i["value"] for i in runtime if i["instruction"] == "COPY")
    assert not any(i["instruction"] == "COPY" and "--from" not in i["value"] for i in runtime)
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0"), users
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
    assert pinned and f"golem-node=={pinned.group(1)}" in YAGNA_DOCKERFILE.read_text()


def test_compose_services_volumes_and_profiles():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"bot", "yagna", "postgres"}
    assert "profiles" not in services["bot"]  # the bot always runs
    assert services["yagna"]["profiles"] == ["golem"]
    assert services["postgres"]["profiles"] == ["postgres"]
    assert (ROOT / services["bot"]["build"] / "Dockerfile").is_file()
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
    assert set(bot["environment"]) <= names
    assert bot["env_file"] == ".env"


def test_readme_says_the_image_is_unbuilt_here():
    assert "unbuilt" in README.lower() and "compose.yaml" in README
