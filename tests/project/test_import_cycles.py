"""No two modules of one app import each other, directly or round a longer circle.

Two walks of each app's import graph:
- at load time (imports at module level, in class bodies, if/try blocks): a circle there
  breaks the import itself;
- with the imports inside function bodies too: a circle there still ties two modules into
  one (neither can change or be read without the other), so it is refused as well, with one
  exception, the one direction the house style prescribes: a task module (`<app>/tasks.py`)
  imports the services it calls inside the task, while services enqueue tasks
  (`delay_on_commit`) with a module-level import of the tasks module. A task's function-level
  imports are therefore left out of the second walk; everything else counts.
"""

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


def _imports(tree: ast.Module, *, module: str, is_package: bool, inside_functions: bool = False) -> set[str]:
    """Names the module imports: at load time (top level, class bodies, if/try blocks; not
    `if TYPE_CHECKING:`), and with `inside_functions` also those in function bodies."""
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not inside_functions:
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


def _module_level_imports(tree: ast.Module, *, module: str, is_package: bool) -> set[str]:
    return _imports(tree, module=module, is_package=is_package)


def is_task_module(module: str) -> bool:
    return module.split(".")[-1] == "tasks"


def import_graph(app: str, *, inside_functions: bool = False) -> dict[str, set[str]]:
    """module -> the modules of the same app it imports at load time, or with
    `inside_functions` anywhere in it (except a task module's imports inside its tasks)."""
    paths = [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]
    modules = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _imports(tree, module=name, is_package=path.name == "__init__.py",
                            inside_functions=inside_functions and not is_task_module(name))
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
    assert _imports(tree, module="a.x", is_package=False, inside_functions=True) == {"a", "a.tasks", "a.y", "a.z"}


def test_the_function_level_walk_allows_only_a_task_importing_inside_its_task(tmp_path, monkeypatch):
    app = tmp_path / "demoapp"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "services.py").write_text("from demoapp import tasks\n")
    (app / "tasks.py").write_text("def run():\n    from demoapp import services\n")
    (app / "delivery.py").write_text("def send():\n    from demoapp import links\n")
    (app / "links.py").write_text("from demoapp import delivery\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    graph = import_graph("demoapp", inside_functions=True)
    assert graph["demoapp.tasks"] == set()  # the allowed direction
    assert find_cycle(graph) == ["demoapp.delivery", "demoapp.links", "demoapp.delivery"]
    assert find_cycle(import_graph("demoapp")) is None  # at load time there is no circle


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


@pytest.mark.parametrize("app", APPS)
def test_no_import_circle_even_through_imports_inside_functions(app):
    """A function-level import does not hide a circle: only a task importing what it calls
    inside the task is allowed (see the module docstring)."""
    cycle = find_cycle(import_graph(app, inside_functions=True))
    assert cycle is None, (f"{app} modules import each other in a circle (counting imports inside functions): "
                           f"{' -> '.join(cycle)}")
