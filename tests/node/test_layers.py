"""The layers of node/, checked on the source with ``ast`` (as tests/protocol/test_imports.py
checks protocol/): which layer may import which, that only node/net imports libp2p, that the
service is pure, and that no two modules of the node import each other in a cycle.

Imports inside ``if TYPE_CHECKING:`` do not count (they never run); imports inside functions do.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

NODE = Path(__file__).resolve().parents[2] / "node"

#: Each module's layer; a module may import only modules of its own layer or lower ones.
#: The front ends (api, cli) come last: nothing below imports them, except that the runtime
#: starts the API server.
LAYERS: dict[str, int] = {
    "node": 0,
    "node.home": 0,
    "node.metrics": 0,
    "node.policy": 0,
    "node.textout": 0,
    "node.clock": 0,
    "node.memory": 0,
    "node.logformat": 0,
    "node.recovery": 0,
    "node.trio_util": 0,
    "node.tokens": 1,
    "node.store": 1,
    "node.net": 2,
    "node.sync": 3,
    "node.views": 3,
    "node.authoring": 3,
    "node.gitlog": 3,
    "node.gitrecords": 3,
    "node.moderation": 3,
    "node.service": 4,
    "node.peering": 4,
    "node.providers": 4,
    "node.exchange": 4,
    "node.liveness": 4,
    "node.store_work": 4,
    "node.gossip": 4,
    "node.handle": 4,
    "node.runtime": 5,
    "node.api": 6,
    "node.web": 6,
    "node.cli": 7,
}
#: Imports that cross layers upward on purpose.
ALLOWED_UP = {("node.runtime", "node.api")}
#: What only node/net may import.
LIBP2P = ("libp2p", "multiaddr")
#: What the pure service must not import: I/O, clocks, threads. ``random`` only for the type
#: of the generator it is given (``random.Random``), never its module-level functions.
IMPURE = (
    "trio",
    "libp2p",
    "multiaddr",
    "sqlite3",
    "socket",
    "asyncio",
    "time",
    "os",
    "threading",
    "subprocess",
)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(NODE.rglob("*.py")):
        parts = path.relative_to(NODE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer_of(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer: add it to LAYERS")


def group_of(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports at run time (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {i for i in imports(p) if i in known and i != m} for m, p in known.items()}


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_respect_the_layers(module: str) -> None:
    mine = layer_of(module)
    for imported in graph()[module]:
        if layer_of(imported) > mine:
            assert (group_of(module), group_of(imported)) in ALLOWED_UP, (
                f"{module} (layer {mine}) imports {imported} (layer {layer_of(imported)})"
            )


@pytest.mark.parametrize("module", sorted(modules()))
def test_only_node_net_imports_libp2p(module: str) -> None:
    if module.startswith("node.net"):
        return
    bad = sorted(i for i in imports(modules()[module]) if i.split(".")[0] in LIBP2P)
    assert not bad, f"{module} imports {bad}: go through node.net.transport"


@pytest.mark.parametrize(
    "module", ["node.service", "node.policy", "node.peering", "node.providers"]
)
def test_the_decisions_are_pure(module: str) -> None:
    bad = sorted(i for i in imports(modules()[module]) if i.split(".")[0] in IMPURE)
    assert not bad, f"{module} imports {bad}: time, randomness and the store are its inputs"


@pytest.mark.parametrize("module", ["node.service", "node.peering"])
def test_the_service_draws_only_from_its_generator(module: str) -> None:
    path = modules()[module]
    draws = sorted(
        ast.unparse(n)
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "random"
        and n.attr != "Random"
    )
    assert not draws, f"{module} draws from the global generator: {draws}"


def test_no_import_cycles() -> None:
    edges = graph()
    # Package __init__ modules are imported by their children implicitly: leave them out.
    edges = {m: {i for i in e if modules()[i].name != "__init__.py"} for m, e in edges.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(edges[module]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_the_checker_sees_a_cycle_and_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import libp2p.pubsub\n"
        "if TYPE_CHECKING:\n    from node.cli import main\n"
        "def f():\n    from node.api.app import build_app\n"
    )
    found = imports(source)
    assert "libp2p.pubsub" in found
    assert "node.api.app" in found
    assert "node.api.app.build_app" in found
    assert not any(name.startswith("node.cli") for name in found)
