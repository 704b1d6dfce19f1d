"""The layering holds: eventstore <- actors <- sagas <- api, with no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["eventstore", "actors", "sagas", "api"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            graph[_module_name(path)] = _imports(path)
    return graph


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_lower_layers(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    forbidden = set(LAYERS) - allowed
    bad = [
        f"{mod} imports {imp}"
        for mod, imps in _modules().items()
        if mod.split(".")[0] == layer
        for imp in imps
        if imp.split(".")[0] in forbidden
    ]
    assert not bad, "imports against eventstore <- actors <- sagas <- api:\n" + "\n".join(bad)


def _resolve(imp: str, graph: dict[str, set[str]]) -> str | None:
    """The most specific project module an import names (``a.b.c`` -> ``a.b`` if no ``a.b.c``)."""
    parts = imp.split(".")
    while parts:
        name = ".".join(parts)
        if name in graph:
            return name
        parts.pop()
    return None


def _internal_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for mod, imps in graph.items():
        targets = {_resolve(imp, graph) for imp in imps}
        edges[mod] = {t for t in targets if t is not None and t != mod}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for mod in sorted(edges):
        if state.get(mod) is None:
            cycle = visit(mod)
            if cycle:
                return cycle
    return None


def test_no_import_cycles_between_modules() -> None:
    cycle = find_cycle(_internal_edges(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checkers_can_fail(tmp_path: Path) -> None:
    """Guard against checks that cannot fail: a planted cycle and a planted upward import."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}
    assert find_cycle(_internal_edges(graph)) == ["a.x", "a.y", "a.z", "a.x"]
    upward = tmp_path / "upward.py"
    upward.write_text("from api.cli import main\nimport sagas\n")
    assert {"api.cli", "sagas"} <= _imports(upward)
