"""Apps reach each other only through what they offer: which app may import which, and never
another app's private names.

- scrobbling never imports rooms: rooms tells scrobbling what its members hear
  (rooms/scrobbles.py), through scrobbling's public API;
- catalog imports neither scrobbling nor rooms: they count plays and play tracks through
  catalog's services and selectors;
- outside scrobbling, app code imports only scrobbling.services (its public API) and, for
  relations, scrobbling.models; the project's wiring (urls, the API router, the pages that
  gather every app, the demo loader) is not an app and may import any module;
- no module imports a name starting with "_" from another app, or uses one through a module
  of another app it imported.

Imports inside functions count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.project.test_import_cycles import ROOT, _module_name

APPS = ["catalog", "rooms", "scrobbling", "livefeed", "project"]
NEVER = {"scrobbling": {"rooms"}, "catalog": {"scrobbling", "rooms"}}
# What app code elsewhere may import of an app: {app: allowed modules}.
PUBLIC = {"scrobbling": {"scrobbling.services", "scrobbling.models"}}
WIRING = {"project"}  # the site's wiring, not an app: it may import any app's modules


def _app(module: str) -> str:
    return module.split(".")[0]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _paths(app: str) -> list[Path]:
    return [p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts]


def crossings(source: str, *, module: str) -> list[tuple[str, str]]:
    """(module imported, name or "") for every import of another app in `module`'s source,
    anywhere in it, and (module, "._name") for each private attribute used through such a
    module."""
    tree = ast.parse(source)
    found: list[tuple[str, str]] = []
    bound: dict[str, str] = {}  # local name -> the other app's module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _app(alias.name) != _app(module):
                    found.append((alias.name, ""))
                    # `import a.b` binds `a`; `import a.b as c` binds `c` to a.b.
                    bound[alias.asname or _app(alias.name)] = alias.name if alias.asname else _app(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and _app(node.module) != _app(module):
            for alias in node.names:
                found.append((node.module, alias.name))
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                and _private(node.attr):
            found.append((bound[node.value.id], "." + node.attr))
    return found


def violations(app: str) -> list[str]:
    problems = []
    for path in _paths(app):
        where = path.relative_to(ROOT)
        for imported, name in crossings(path.read_text(), module=_module_name(path)):
            other = _app(imported)
            if other not in APPS:
                continue  # Django, the standard library, ...
            target = f"{imported}.{name.lstrip('.')}" if name else imported
            if other in NEVER.get(app, ()):
                problems.append(f"{where}: {app} imports {target} ({app} never imports {other})")
            if any(_private(part) for part in target.split(".")):
                problems.append(f"{where}: imports {target}, a private name of {other}")
            public = PUBLIC.get(other)
            if public is not None and app not in WIRING and not name.startswith(".") \
                    and imported not in public and f"{imported}.{name}" not in public:
                problems.append(f"{where}: imports {target}; outside {other} only {sorted(public)} may be imported")
    return problems


def test_the_walk_sees_every_kind_of_crossing():
    source = ("from scrobbling import delivery\nimport rooms.presence as p\nfrom livefeed import _x\n"
              "def f():\n    from catalog.models import _secret\n    return delivery._send, p._key\n")
    assert sorted(crossings(source, module="project.mod")) == sorted([
        ("livefeed", "_x"),
        ("scrobbling", "delivery"), ("rooms.presence", ""), ("catalog.models", "_secret"),
        ("scrobbling.delivery", "._send"), ("rooms.presence", "._key"),
    ])


@pytest.mark.parametrize("app", APPS)
def test_apps_reach_each_other_only_through_what_they_offer(app):
    problems = violations(app)
    assert not problems, "\n".join(problems)
