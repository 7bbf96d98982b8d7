"""No two modules of one app import each other, directly or round a longer circle, when the
modules are loaded: the import graph of each app is walked from its module-level imports
(those in a function body run later and are how a task reaches its service)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ["catalog", "rooms", "scrobbling", "livefeed", "project"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module, *, module: str, is_package: bool) -> set[str]:
    """Names imported when the module loads: top level, class bodies, if/try blocks; not
    function bodies, not `if TYPE_CHECKING:`."""
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(app: str) -> dict[str, set[str]]:
    """module -> the modules of the same app it imports at load time."""
    paths = [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _module_level_imports(tree, module=name, is_package=path.name == "__init__.py")
        graph[name] = {other for other in imported if other in modules and other != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return [*path[path.index(other):], other]
            if other not in state and (cycle := visit(other)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_finds_a_circle_when_there_is_one():
    assert find_cycle({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == ["a.x", "a.y", "a.z", "a.x"]
    assert find_cycle({"a.x": {"a.y"}, "a.y": set()}) is None
    tree = ast.parse("from . import tasks\nimport a.y\ndef f():\n    from a import z\n")
    assert _module_level_imports(tree, module="a.x", is_package=False) == {"a", "a.tasks", "a.y"}


@pytest.mark.parametrize("app", APPS)
def test_no_import_cycle_between_modules_of_one_app(app):
    graph = import_graph(app)
    assert graph, f"no modules found for {app}"
    cycle = find_cycle(graph)
    assert cycle is None, f"{app} modules import each other in a circle: {' -> '.join(cycle)}"


@pytest.mark.parametrize("app", ["catalog", "rooms", "scrobbling"])
def test_tasks_reach_their_app_only_from_inside_the_task(app):
    """Services enqueue tasks (`delay_on_commit`); a task imports the services it calls in
    its body, so the two never form a circle however either grows."""
    imported = import_graph(app)[f"{app}.tasks"]
    assert not imported, f"{app}/tasks.py imports {sorted(imported)} when it loads; import inside the task"
