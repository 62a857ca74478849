"""The package's import graph keeps the one-direction flow: cli -> http -> service <- store, and no cycle. The web
console is a protocol layer beside http (mounted by http.app): console -> service.

Read from the source with `ast`, every import counted (also those inside functions, which run all the same),
except those under `if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import openrooms

PACKAGE = Path(openrooms.__file__).parent
# The modules of the service the store may import: what it stores and the interface it implements.
SERVICE_MODULES_THE_STORE_USES = {"openrooms.service.model", "openrooms.service.ports"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (name for child in node.orelse for name in _imports(child, module, is_package))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            yield origin
            # `from openrooms.service import errors` imports the module openrooms.service.errors.
            yield from (f"{origin}.{alias.name}" for alias in node.names)
        yield from _imports(node, module, is_package)


def import_graph() -> dict[str, set[str]]:
    """Every openrooms module -> the openrooms modules it imports."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        # A module's own packages are imported before it, whatever it imports: no arrow to them.
        own = {module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1)}
        graph[module] = {
            name
            for name in _imports(tree, module, path.name == "__init__.py")
            if name in paths and name != module and name not in own
        }
    return graph


def unit_of(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: `openrooms.http.app` -> `http`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "openrooms"


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = {}
    for module, imported in graph.items():
        arrows = units.setdefault(unit_of(module), set())
        arrows.update(unit_of(name) for name in imported if unit_of(name) != unit_of(module))
    return units


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected part of `graph` that has one (empty: no cycle)."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == "open":
                found.append([*path[path.index(succ):], succ])
            elif succ not in state:
                visit(succ, path)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def arrows(graph: dict[str, set[str]], source_unit: str, target_unit: str) -> list[tuple[str, str]]:
    return sorted(
        (module, name)
        for module, imported in graph.items()
        if unit_of(module) == source_unit
        for name in imported
        if unit_of(name) == target_unit
    )


GRAPH = import_graph()


def test_the_graph_is_read() -> None:
    # Guards the reader itself: these arrows exist, so a reader that found none would prove nothing.
    assert "openrooms.service.rooms" in GRAPH["openrooms.http.rooms"]
    assert "openrooms.service.errors" in GRAPH["openrooms.service.rooms"]  # `from openrooms.service import errors`
    assert "openrooms.service.model" in GRAPH["openrooms.store.sqlite"]
    assert {"cli", "http", "service", "store"} <= set(unit_graph(GRAPH))


def test_no_cycle_between_subpackages() -> None:
    assert cycles(unit_graph(GRAPH)) == []


def test_no_cycle_between_modules() -> None:
    assert cycles(GRAPH) == []


def test_nothing_but_the_command_line_imports_it() -> None:
    for unit in unit_graph(GRAPH):
        if unit not in ("cli", "__main__"):
            assert arrows(GRAPH, unit, "cli") == [], unit


def test_the_service_imports_neither_the_wire_nor_the_store() -> None:
    assert arrows(GRAPH, "service", "http") == []
    assert arrows(GRAPH, "service", "store") == []


def test_the_store_imports_only_the_services_model_and_port() -> None:
    used = {name for _, name in arrows(GRAPH, "store", "service")}
    assert used <= SERVICE_MODULES_THE_STORE_USES
    assert arrows(GRAPH, "store", "http") == []


def test_the_console_is_a_protocol_layer_over_the_services() -> None:
    assert "openrooms.service.rooms" in GRAPH["openrooms.console.app"]
    assert arrows(GRAPH, "console", "http") == []
    assert arrows(GRAPH, "console", "store") == []
    assert arrows(GRAPH, "service", "console") == []
    assert {module for module, _ in arrows(GRAPH, "http", "console")} == {"openrooms.http.app"}


def test_cycles_are_found() -> None:
    # The checker against a graph with a known cycle, so that an empty answer above means something.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
