"""No package imports itself in a circle: within each package the modules form a hierarchy, so
each can be read (and imported) knowing only the modules below it.

What counts as an import, read from the source with ``ast``:

- every ``import`` and ``from ... import`` statement the module can execute: at module level
  (also inside ``if`` / ``try``) and inside functions and methods. A function-level import
  closing a circle only hides it from import time (the circle ``get_robot`` -> spec files ->
  families -> robots once was); counted, it is caught here.
- not an import under ``if TYPE_CHECKING:``: it never runs, and annotations may name a module
  above (none does today).

``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to
``pkg`` itself (its ``__init__``); ``import pkg.a.b`` is an edge to ``pkg.a.b``. Importing a
submodule also runs its parent packages' ``__init__``, which is not counted as an edge (the
packages' ``__init__`` files import their submodules lazily, or not at all).
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sims", "adaptive_control", "policies", "export", "adapt_cli")


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(path: Path, module: str) -> list[tuple[str, int]]:
    """``(dotted name, line)`` of everything ``module`` (the file ``path``) may import: for
    ``from a import b`` the candidate ``a.b`` (the caller falls back to ``a``)."""
    is_package = path.name == "__init__.py"
    out: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            out.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join([*here, base] if base else here)
            out.extend((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        visit(node)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """Module -> {module of the same package it imports: the line of the first such import}."""
    modules = _modules(root, package)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        for name, line in _imported(path, module):
            target = name
            while target and target not in modules:  # a.b.name -> a.b -> a
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].setdefault(target, line)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = dfs(target)
                if cycle:
                    return cycle
        state[module] = 2
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = dfs(module)
            if cycle:
                return cycle
    return []


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = (f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle))
    return " -> ".join(steps) + f" -> {cycle[-1]}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_within_the_package(package):
    if not (ROOT / package / "__init__.py").is_file():
        pytest.skip(f"no package {package!r} in this checkout")
    graph = import_graph(ROOT, package)
    cycle = find_cycle(graph)
    assert not cycle, f"{package} imports itself in a circle: {_describe(graph, cycle)}"


def test_the_check_finds_a_cycle_closed_inside_a_function(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "low.py": "import os\n\ndef late():\n    from pkg.sub import high\n    return high\n",
        "mid.py": "from typing import TYPE_CHECKING\nfrom . import low\n"
                  "if TYPE_CHECKING:\n    from pkg.sub.high import X\n",
        "sub/__init__.py": "",
        "sub/high.py": "from ..mid import low\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.mid"] == {"pkg.low": 2}  # the TYPE_CHECKING import is no edge
    assert graph["pkg.sub.high"] == {"pkg.mid": 1}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and set(cycle) == {"pkg.low", "pkg.mid", "pkg.sub.high"}
    (pkg / "low.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) == []
