"""The layers drawn in docs/architecture.md, held by the imports themselves.

Every ``modelexport`` and ``model_zoo`` import is read from the source
(function-level ones included, since a lazy import is still a dependency),
so a change that reintroduces a cycle, within the exporter or between it and
the zoo, or reaches up a layer fails here, not in review.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modelexport"
PACKAGES = ("modelexport", "model_zoo")
MEASUREMENT = {"harness", "gate", "benchmarking"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module of ``PACKAGES``, whether the import sits at module level)."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith(PACKAGES):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith(PACKAGES)]
        else:
            continue
        found += [(name, id(node) in top_level) for name in names]
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module: imported at module level}."""
    modules = {_module_name(p): p for package in PACKAGES
               for p in (ROOT / package).rglob("*.py")}
    edges: dict[str, dict[str, bool]] = defaultdict(dict)
    for name, path in modules.items():
        for target, top in _imports(path):
            if target in modules and target != name:
                edges[name][target] = edges[name].get(target, False) or top
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in list(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _package(module: str) -> str:
    """The exporter's sub-package (``capture``, ``cli``...), or ``model_zoo`` whole."""
    parts = module.split(".")
    if parts[0] != "modelexport":
        return parts[0]
    return parts[1] if len(parts) > 1 else "modelexport"


def test_no_module_imports_itself_back(graph):
    assert _cycles({m: set(t) for m, t in graph.items()}) == []


def test_no_package_imports_itself_back(graph):
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        packages[_package(module)] |= {_package(t) for t in targets} - {_package(module)}
    assert _cycles(packages) == []


def test_the_exporter_finds_the_zoo_without_importing_it(graph):
    """``zoo:`` names resolve through an entry point: no exporter module imports the zoo
    except the measurement layers and the CLI, which run the zoo."""
    reaching = sorted(m for m, targets in graph.items() if m.startswith("modelexport.")
                      and _package(m) not in MEASUREMENT | {"cli"}
                      for t in targets if _package(t) == "model_zoo")
    assert reaching == []


def test_a_cycle_is_seen():
    """The detector itself can fail: a planted two-module loop is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


@pytest.mark.parametrize("lower,upper", [
    ("capture", "attribution"), ("capture", "strategies"), ("attribution", "strategies"),
    ("tools", "validation"), ("tools", "strategies"),
])
def test_a_lower_layer_never_imports_a_higher_one(graph, lower, upper):
    reaching = sorted(m for m, targets in graph.items() if _package(m) == lower
                      for t in targets if _package(t) == upper)
    assert reaching == []


def test_the_product_imports_measurement_only_lazily_from_the_cli(graph):
    eager = sorted(f"{m} -> {t}" for m, targets in graph.items()
                   if _package(m) not in MEASUREMENT
                   for t, top in targets.items() if _package(t) in MEASUREMENT
                   and (top or _package(m) != "cli"))
    assert eager == []
