"""``protocol/`` is pure: no I/O, no clock, no global randomness (time and rng are parameters).

Checked on the source with ``ast``, so it holds for every module, including those added later:
each may import only the standard library, ``msgpack``, ``nacl``, ``cryptography`` and
``protocol`` itself, and none of the standard library's I/O, concurrency, clock or randomness
modules; and no module may reach for a clock or a random source by attribute either. The one
random source allowed is libsodium's, once, in ``signing.py``: ``SigningKey.generate`` needs an
unpredictable seed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"
MODULES = sorted(PROTOCOL.glob("*.py"))

THIRD_PARTY = frozenset({"msgpack", "nacl", "cryptography", "protocol"})
#: Standard-library modules that mean I/O, concurrency, a clock or randomness.
FORBIDDEN = frozenset(
    {
        "asyncio",
        "concurrent",
        "datetime",
        "http",
        "multiprocessing",
        "node",
        "os",
        "random",
        "secrets",
        "selectors",
        "shutil",
        "socket",
        "sqlite3",
        "ssl",
        "subprocess",
        "tempfile",
        "threading",
        "time",
        "urllib",
        "uuid",
        "libp2p",
        "trio",
    }
)
#: ``name.attr`` uses that read a clock or a random source; ``*`` is any attribute.
FORBIDDEN_ATTRIBUTES = {
    "time": {"*"},
    "random": {"*"},
    "secrets": {"*"},
    "os": {"urandom", "getrandom", "environ", "getenv", "getpid", "times"},
    "datetime": {"now", "utcnow", "today", "datetime", "date"},
    "uuid": {"uuid1", "uuid4"},
    "trio": {"*"},
}
#: libsodium's random sources, by their dotted names as a module would spell them.
LIBSODIUM_RANDOM = frozenset(
    {"nacl.utils.random", "nacl.utils.randombytes_deterministic", "nacl.bindings.randombytes"}
)
#: The random-source uses each module may make: ``SigningKey.generate``'s seed, only.
ALLOWED_RANDOMNESS = {"signing.py": ["nacl.utils.random"]}


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for an attribute chain on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level module name) of every import; relative imports are ``protocol``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = "protocol" if node.level else (node.module or "").split(".")[0]
            found.append((node.lineno, name))
    return found


def import_problems(source: str) -> list[str]:
    problems = []
    for line, name in imported_modules(ast.parse(source)):
        if name in FORBIDDEN:
            problems.append(f"line {line}: imports {name}")
        elif name not in sys.stdlib_module_names and name not in THIRD_PARTY:
            problems.append(f"line {line}: imports {name}, which is not an allowed dependency")
    return problems


def clock_and_randomness_uses(source: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and dotted_name(node) in LIBSODIUM_RANDOM:
            problems.append(f"line {node.lineno}: {dotted_name(node)}")
        elif isinstance(node, ast.ImportFrom) and any(
            f"{node.module}.{alias.name}" in LIBSODIUM_RANDOM for alias in node.names
        ):
            problems.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attrs = FORBIDDEN_ATTRIBUTES.get(node.value.id, set())
            if "*" in attrs or node.attr in attrs:
                problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in FORBIDDEN_ATTRIBUTES:
            problems.append(f"line {node.lineno}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "input", "__import__", "exec", "eval"}
        ):
            problems.append(f"line {node.lineno}: calls {node.func.id}()")
    return problems


def test_there_are_modules_to_check() -> None:
    names = {path.stem for path in MODULES}
    assert {"codec", "record", "signing", "validation", "bundle", "testing", "errors"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_allowed_dependencies(path: Path) -> None:
    assert import_problems(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_reads_no_clock_and_no_random_source(path: Path) -> None:
    uses = clock_and_randomness_uses(path.read_text(encoding="utf-8"))
    assert [use.split(": ", 1)[1] for use in uses] == ALLOWED_RANDOMNESS.get(path.name, [])


# The checkers themselves must catch what they are for, or the tests above prove nothing.


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import libp2p.peer.id",
        "from libp2p import new_host",
        "import sqlite3",
        "import socket",
        "import asyncio",
        "import random",
        "import time",
        "from time import time",
        "import node.cli",
        "from node import home",
        "import os.path",
        "import requests",
        "def f():\n    import threading",
    ],
)
def test_import_checker_catches_forbidden_imports(source: str) -> None:
    assert import_problems(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import hashlib",
        "from collections.abc import Mapping",
        "import msgpack",
        "import nacl.bindings",
        "from cryptography.hazmat.primitives import serialization",
        "from protocol.errors import InvalidRecord",
        "from . import codec",
        "from __future__ import annotations",
    ],
)
def test_import_checker_allows_the_allowed(source: str) -> None:
    assert import_problems(source) == []


@pytest.mark.parametrize(
    "source",
    [
        "t = time.time()",
        "t = time.monotonic_ns()",
        "x = random.random()",
        "x = random.Random(4)",
        "b = os.urandom(32)",
        "b = secrets.token_bytes(8)",
        "d = datetime.now()",
        "d = datetime.datetime.now()",
        "u = uuid.uuid4()",
        "from os import urandom",
        "f = open('ledger.db')",
        "seed = nacl.utils.random(32)",
        "b = nacl.bindings.randombytes(32)",
        "from nacl.utils import random",
    ],
)
def test_use_checker_catches_clocks_and_randomness(source: str) -> None:
    assert clock_and_randomness_uses(source) != []


def test_use_checker_allows_parameters_named_like_clocks() -> None:
    source = "def f(now_ms, rng):\n    return now_ms + rng.random() + self.time"
    assert clock_and_randomness_uses(source) == []
