"""The house rules of trio_ws/'s layout: small modules, no import cycles, layers that look down.

Read from the source with ``ast`` (nothing is imported), over every relative
or ``trio_ws`` import, those under ``if TYPE_CHECKING:`` and inside functions
included: a type-only import circle is still a circle for the reader.

* At most 16 modules directly in ``trio_ws/``; no module over 600 lines.
* No import cycles: the strongly connected components of the module graph
  are single modules. ``from . import sub`` depends on ``sub``, not on the
  package's ``__init__``.
* The layers, lowest first: ``_observe`` (everything reports into it),
  ``_app``, ``_websocket``, ``_http``, ``_server``; a layer imports none
  above it. Two edges go up by design, and only these: ``_app`` names the
  handler's connection type (``_websocket/connection.py``) under
  ``TYPE_CHECKING`` only, since a narrower type would refuse handlers
  annotated with ``WebSocketConnection``; and ``_app/app.py`` parses targets
  with ``_http/target.py``, which imports nothing of trio_ws.
* Nothing in ``trio_ws/`` outside ``signalr/`` imports ``trio_ws.signalr``.
* In ``signalr/``: ``_transports`` imports nothing of ``_hub``, ``_endpoints``
  or ``_client``; ``_hub`` nothing of ``_endpoints`` or ``_client``;
  ``_endpoints`` nothing of ``_client``. The client (``_client``) shares
  with the server side only what is pure: from ``_transports`` the
  negotiate types and the replay buffer (``negotiate.py``, ``replay.py``),
  and from ``_hub`` what reads a hub class, which the typed client calls by
  (``hub.py``, ``typed.py``, ``methods.py``, ``binding.py``); never
  ``_endpoints``, nor a hub connection or its calls.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "trio_ws"

_MAX_TOP_MODULES = 16
_MAX_LINES = 600


def _modules(root: Path) -> dict[str, Path]:
    """Every module under ``root``, by dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """The trio_ws modules ``name`` imports: (module, whether only for type checking)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module is not None and node.module.split(".")[0] == "trio_ws":
                target = node.module
            else:
                continue
            named = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [module for module in named if module in modules]
            found = submodules if len(submodules) == len(node.names) else [target, *submodules]
        elif isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        else:
            continue
        for module in found:
            if module in modules and module != name:
                yield module, id(node) in typing_only


def _graph(root: Path = ROOT) -> dict[str, dict[str, bool]]:
    """Module -> {imported module: whether only for type checking}."""
    modules = _modules(root)
    graph: dict[str, dict[str, bool]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for module, typing_only in _imports(name, path, modules):
            edges[module] = edges.get(module, True) and typing_only
    return graph


def _cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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
    return components


def test_few_modules_at_the_top() -> None:
    top = sorted(path.name for path in ROOT.glob("*.py"))
    assert len(top) <= _MAX_TOP_MODULES, f"trio_ws/ has {len(top)} modules: {top}; put some in a package"


def test_no_module_too_long() -> None:
    too_long = {
        name: lines
        for name, path in _modules(ROOT).items()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > _MAX_LINES
    }
    assert too_long == {}, f"split these by job: {too_long}"


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_a_cycle_is_found() -> None:
    """The cycle finder itself: a type-only import back is a cycle too."""
    graph = {"a": {"b": False}, "b": {"c": False}, "c": {"a": True}, "d": {"a": False}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _package(module: str) -> str:
    """``trio_ws._http`` for ``trio_ws._http.wire``; ``trio_ws.signalr._hub`` for its modules."""
    parts = module.split(".")
    depth = 3 if len(parts) > 2 and parts[1] == "signalr" else 2
    return ".".join(parts[:depth])


_LAYERS = ["trio_ws._observe", "trio_ws._app", "trio_ws._websocket", "trio_ws._http", "trio_ws._server"]

# (importer's package, imported package) -> the modules it may import anyway, and whether only
# under TYPE_CHECKING (see the module docstring).
_ALLOWED_UP: dict[tuple[str, str], tuple[frozenset[str], bool]] = {
    ("trio_ws._app", "trio_ws._websocket"): (frozenset({"trio_ws._websocket.connection"}), True),
    ("trio_ws._app", "trio_ws._http"): (frozenset({"trio_ws._http.target"}), False),
}

_SIGNALR_FORBIDDEN = {
    "trio_ws.signalr._transports": {
        "trio_ws.signalr._hub",
        "trio_ws.signalr._endpoints",
        "trio_ws.signalr._client",
    },
    "trio_ws.signalr._hub": {"trio_ws.signalr._endpoints", "trio_ws.signalr._client"},
    "trio_ws.signalr._endpoints": {"trio_ws.signalr._client"},
}
_CLIENT_SHARES = frozenset(
    {
        "trio_ws.signalr._transports.negotiate",
        "trio_ws.signalr._transports.replay",
        "trio_ws.signalr._hub.hub",
        "trio_ws.signalr._hub.typed",
        "trio_ws.signalr._hub.methods",
        "trio_ws.signalr._hub.binding",
    }
)


def _layer_breaches(graph: dict[str, dict[str, bool]]) -> list[str]:
    breaches = []
    for module, edges in sorted(graph.items()):
        here = _package(module)
        for imported, typing_only in sorted(edges.items()):
            there = _package(imported)
            edge = f"{module} imports {imported}"
            if here in _LAYERS and there in _LAYERS and _LAYERS.index(there) > _LAYERS.index(here):
                allowed, only_typing = _ALLOWED_UP.get((here, there), (frozenset(), False))
                if imported not in allowed or (only_typing and not typing_only):
                    breaches.append(edge)
            if there.startswith("trio_ws.signalr") and not module.startswith("trio_ws.signalr"):
                breaches.append(edge)
            if there in _SIGNALR_FORBIDDEN.get(here, ()):
                breaches.append(edge)
            if (
                here == "trio_ws.signalr._client"
                and there
                in {"trio_ws.signalr._transports", "trio_ws.signalr._hub", "trio_ws.signalr._endpoints"}
                and imported not in _CLIENT_SHARES
            ):
                breaches.append(edge)
    return breaches


def test_layers_import_only_downwards() -> None:
    assert _layer_breaches(_graph()) == []


@pytest.mark.parametrize(
    ("module", "imported", "typing_only"),
    [
        ("trio_ws._http.wire", "trio_ws._server.server", True),
        ("trio_ws._app.routing", "trio_ws._websocket.connection", False),
        ("trio_ws._observe.metrics", "trio_ws._app.app", True),
        ("trio_ws._server.cli", "trio_ws.signalr._hub.hub", False),
        ("trio_ws.signalr._hub.connection", "trio_ws.signalr._endpoints.server", True),
        ("trio_ws.signalr._client.engine", "trio_ws.signalr._hub.dispatch", True),
    ],
)
def test_a_breach_is_found(module: str, imported: str, typing_only: bool) -> None:
    """Each rule, broken once on a copy of the real graph, is reported."""
    graph = _graph()
    graph[module][imported] = typing_only
    assert _layer_breaches(graph) == [f"{module} imports {imported}"]
