"""The folder is the architecture: each room imports only what its role allows, and nothing imports in a circle.

Imports inside functions and under ``TYPE_CHECKING`` count like any other: a
rule kept only at module level would be a rule kept by hand.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maild"
CARD_MODULES = ("poller", "classifier", "authorizer", "responder")
"""The design card fixes these stages at the top of the package."""

FORBIDDEN = {
    "pipeline": ("store", "daemon", "ops", "web", "cli"),
    "mail": ("store", "daemon", "ops", "web", "cli"),
    "rules": ("store", "daemon", "ops", "web", "cli"),
    "store": ("daemon", "ops", "web", "cli"),
    "ops": ("daemon", "web", "cli"),
    "daemon": ("web", "cli"),
    "web": ("daemon", "cli"),
}
"""Room -> the rooms it must not import. ``pipeline`` is every module at the top of the package."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 or f"{module}.__init__" in MODULES or (len(parts) == 2 and parts[1] in _PACKAGES):
        return parts[1]
    return "pipeline"


_PACKAGES = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def imports_of(module: str) -> Iterator[str]:
    """Every maild module ``module`` imports, wherever the import statement stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "maild")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "maild":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


def graph() -> dict[str, set[str]]:
    return {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each one a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_card_modules_stand_at_the_top_of_the_package() -> None:
    assert all((PACKAGE / f"{name}.py").is_file() for name in CARD_MODULES)


def test_the_rooms_are_the_ones_the_readme_names() -> None:
    assert {"mail", "rules", "store", "daemon", "cli", "ops", "web"} == _PACKAGES


@pytest.mark.parametrize("source_room", sorted(FORBIDDEN))
def test_a_room_imports_nothing_its_role_forbids(source_room: str) -> None:
    edges = graph()
    bad = sorted(f"{m} imports {i}" for m, targets in edges.items() if room(m) == source_room
                 for i in targets if room(i) in FORBIDDEN[source_room])
    assert bad == []


def test_nothing_outside_the_command_line_imports_it() -> None:
    edges = graph()
    bad = sorted(f"{m} imports {i}" for m, targets in edges.items() if room(m) != "cli"
                 for i in targets if room(i) == "cli")
    assert bad == []


def test_no_module_imports_itself_through_others() -> None:
    assert cycles(graph()) == []


def test_the_checker_sees_imports_inside_functions_and_cycles() -> None:
    """The rules above are only as good as the reader: it must see a function's import and a two-module loop."""
    tree = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(tree) == [["a", "b", "c"]]
    assert "maild.daemon.wiring" in set(imports_of("maild.cli.daemon"))
    assert room("maild.store.models") == "store"
    assert room("maild.poller") == "pipeline"
    assert room("maild.daemon.outbox.sender") == "daemon"
