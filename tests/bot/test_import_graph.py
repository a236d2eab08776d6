"""The shape of ``bot/``: no import cycles (type-only and in-function imports included),
the core and the database never import a feature, and a feature uses another feature only
through that feature's package (its ``__init__``), never through its private modules;
nothing of the bot imports the dashboard (it sits on top, loaded by name); and the backend
is classified through in one module only, the door's (``classifying``).

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``
anywhere in a module (under ``if TYPE_CHECKING:``, inside functions) is an edge.
``from package import name`` is an edge to ``package.name`` when that is a module, else to
``package``. The implicit import of a module's parent packages is not an edge (Python runs
a package's ``__init__`` before any of its submodules, whoever imports them).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (a folder under ``root``) by dotted name."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> Iterable[str]:
    """The dotted names ``module`` imports, as written (relative imports resolved): for
    ``from a import b`` both ``a.b`` and ``a`` (the caller keeps the one that exists)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}|{base}"


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``module -> modules of package it imports``."""
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for raw in imported_names(name, path):
            target = _resolve(raw, modules)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def _resolve(raw: str, modules: dict[str, Path]) -> str | None:
    if "|" in raw:  # from base import name: the submodule if it is one, else base
        submodule, raw = raw.split("|")
        if submodule in modules:
            return submodule
    parts = raw.split(".")
    while parts:  # import a.b.c where only a.b is a module of ours: a.b
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def tangles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted: each
    is a set of modules that all import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each tangle, as ``[a, b, ..., a]``."""
    return [_one_cycle(graph, set(c)) for c in tangles(graph)]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # cannot happen in a component


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def forbidden_edges(graph: dict[str, set[str]], sources: tuple[str, ...], target: str) -> list[str]:
    """Edges from a module of one of the ``sources`` packages into ``target``."""
    return sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        if any(within(src, package) for package in sources)
        for dst in dsts
        if within(dst, target)
    )


def private_feature_imports(graph: dict[str, set[str]]) -> list[str]:
    """Edges from outside a feature (``bot.cogs.<name>``) into one of its private modules
    (``bot.cogs.<name>._module``)."""
    found = []
    for src, dsts in graph.items():
        for dst in dsts:
            parts = dst.split(".")
            private = within(dst, "bot.cogs") and len(parts) > 3 and parts[3].startswith("_")
            if private and not within(src, ".".join(parts[:3])):
                found.append(f"{src} -> {dst}")
    return sorted(found)


def imports_of_own_package(graph: dict[str, set[str]]) -> list[str]:
    """Edges from a module to a package that contains it (its ``__init__``): submodules
    import submodules."""
    return sorted(
        f"{src} -> {dst}"
        for src, dsts in graph.items()
        for dst in dsts
        if src.startswith(dst + ".")
    )


# --- the checker itself, on small packages written here -------------------------------------
def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_sees_type_only_and_in_function_imports(tmp_path: Path):
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import thing\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.c import C\n"
                "thing = 1\n"
            ),
            "pkg/c.py": "def f():\n    from . import a\n    return a\n",
            "pkg/d.py": "import pkg.a\nimport os\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_the_checker_finds_forbidden_edges(tmp_path: Path):
    write(
        tmp_path,
        {
            "bot/__init__.py": "",
            "bot/core/__init__.py": "",
            "bot/core/client.py": "from bot.cogs.one import setup\n",
            "bot/cogs/__init__.py": "",
            "bot/cogs/one/__init__.py": "from bot.cogs.one._cog import setup\n",
            "bot/cogs/one/_cog.py": "from bot.cogs.two._logic import x\nsetup = 1\n",
            "bot/cogs/two/__init__.py": "",
            "bot/cogs/two/_logic.py": "x = 1\n",
            "bot/db/__init__.py": "from bot.db.store import Store\ndef open_store(): ...\n",
            "bot/db/store.py": "from bot.db import files\nStore = 1\n",
            "bot/db/files.py": "",
            "bot/db/cli.py": "def main():\n    from bot.db import open_store\n",
        },
    )
    graph = import_graph(tmp_path, "bot")
    assert cycles(graph) == []
    assert forbidden_edges(graph, ("bot.core",), "bot.cogs") == ["bot.core.client -> bot.cogs.one"]
    assert private_feature_imports(graph) == ["bot.cogs.one._cog -> bot.cogs.two._logic"]
    assert graph["bot.db.store"] == {"bot.db.files"}  # a submodule, not the package
    assert imports_of_own_package(graph) == ["bot.db.cli -> bot.db"]


# --- bot/ ------------------------------------------------------------------------------------
def test_bot_has_no_import_cycle():
    graph = import_graph(ROOT, "bot")
    found = [
        f"{len(tangle)} modules ({', '.join(tangle)}), e.g. " + " -> ".join(cycle)
        for tangle, cycle in zip(tangles(graph), cycles(graph), strict=True)
    ]
    assert not found, "import cycles in bot/:\n" + "\n".join(found)


def test_the_core_and_the_database_import_no_feature():
    graph = import_graph(ROOT, "bot")
    assert "bot.core.client" in graph and "bot.db.store" in graph  # the layout under test
    edges = forbidden_edges(graph, ("bot.core", "bot.db"), "bot.cogs")
    assert not edges, "core/db importing a feature:\n" + "\n".join(edges)


def test_features_use_each_other_through_their_packages_only():
    edges = private_feature_imports(import_graph(ROOT, "bot"))
    assert not edges, "a feature's private module used by another:\n" + "\n".join(edges)


def test_modules_import_modules_not_the_package_they_are_in():
    edges = imports_of_own_package(import_graph(ROOT, "bot"))
    assert not edges, "a module importing its own package's __init__:\n" + "\n".join(edges)


def test_nothing_of_the_bot_imports_the_dashboard():
    """The dashboard sits on top: it uses the features, the core and the database; none of
    them uses it (the core loads it by name, like a feature)."""
    graph = import_graph(ROOT, "bot")
    assert "bot.dashboard.app" in graph  # the layout under test
    edges = forbidden_edges(graph, ("bot.core", "bot.db", "bot.cogs"), "bot.dashboard")
    assert not edges, "importing the dashboard:\n" + "\n".join(edges)


def test_only_the_classifying_path_calls_the_backend():
    """By construction: ``backend.classify`` is called in ``bot/core/classifying.py`` only,
    whose ``classify_images`` needs a turn at the door; a new path cannot go around it."""
    root = Path(__file__).resolve().parents[2] / "bot"
    callers = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "classify"
                and "backend" in ast.unparse(node.func.value)
            ):
                callers.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    assert callers and all(c.startswith("bot/core/classifying.py:") for c in callers), callers
