"""How the package's modules import each other: each alone, reading runs cheaply, no cycles.

Each module is imported in a fresh interpreter, so that what it loads (``sys.modules``) is its
own doing and an import that works only after another module was loaded shows up.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import replay

PACKAGE = Path(replay.__file__).resolve().parent
MODULES = ["replay", *(m.name for m in pkgutil.walk_packages(replay.__path__, "replay."))]

MACHINERY = {"replay.run.driver", "replay.mmu.engine", "replay.mmu.reference"}
"""The replay itself: reading or comparing runs must not load it."""
HEAVY = {"numpy", "pyarrow", "polars", "matplotlib"}

NOT_LOADED: dict[str, set[str]] = {
    # replay diff and replay report read runs; the CLI is the only printer (rich).
    "replay.diff": MACHINERY | {"rich"},
    "replay.run.load": MACHINERY,
    "replay.run.schema": MACHINERY,
    "replay.report": MACHINERY,
    # The engines hand their fault rows to a consumer; writing Parquet is the run's business.
    "replay.mmu.engine": {"pyarrow"},
    "replay.mmu.reference": {"pyarrow"},
    "replay.mmu.results": {"pyarrow"},
    # replay --help stays fast: the commands import what they need when they run.
    "replay.cli": HEAVY,
}
"""What importing a module (or any module of a package) must not load."""

PROBE = (
    "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(sys.modules)))"
)


def _rule(name: str) -> set[str]:
    return set().union(
        *(banned for key, banned in NOT_LOADED.items() if name == key or name.startswith(key + "."))
    )


def test_every_module_is_listed() -> None:
    assert len(MODULES) == len(set(MODULES)) > 40
    for key in NOT_LOADED:
        assert key in MODULES, f"{key} is not a module of replay; update NOT_LOADED"


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_alone(name: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, name],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"import {name} in a fresh interpreter fails:\n{proc.stderr}"
    loaded = set(json.loads(proc.stdout.splitlines()[-1]))
    assert name in loaded
    banned = {m for m in loaded if m in _rule(name) or m.split(".")[0] in _rule(name)}
    assert not banned, f"import {name} loads {sorted(banned)}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Which replay modules each replay module imports, wherever the import is written.

    Imports under ``TYPE_CHECKING`` and inside functions count: a cycle through them still
    ties the modules into one, which is what a reader has to untangle.
    """
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # ``from pkg import mod`` imports the module pkg.mod; ``from mod import x``, mod.
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in paths and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "replay.run.walks" in graph["replay.run.driver"]  # at the top
    assert "replay.run.records" in graph["replay.run.summary"]  # under TYPE_CHECKING
    assert "replay.run.driver" in graph["replay.cli.run"]  # inside a function
    assert "replay.cli.convert" in graph["replay.cli"]  # from package import module


def test_cycles_are_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
