"""What a built wheel holds: every package of the product, found by setuptools.

A folder of modules without ``__init__.py`` is a namespace package: the tests import it from
the checkout, but ``[tool.setuptools.packages.find]`` leaves it out of the wheel, so the
installed bot (the container image) would fail to import it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_modules_is_a_package_the_wheel_includes():
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = set(find_packages(str(ROOT), include=find["find"]["include"]))
    folders = set()
    for top in ("provider", "golem_backend", "bot"):
        for module in (ROOT / top).rglob("*.py"):
            if "__pycache__" not in module.parts:
                folders.add(".".join(module.parent.relative_to(ROOT).parts))
    assert folders - found == set(), "folders without __init__.py (left out of the wheel)"
