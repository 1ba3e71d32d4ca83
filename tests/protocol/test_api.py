"""The public API at the top of ``protocol``: what an embedder imports (docs/EMBEDDING.md).

``from protocol import X`` must give the very object the submodule defines, ``__all__`` must
name exactly what is exported, fresh keys must be fresh, and every view result that holds a
public key must also give its peer id, the text form people and JSON see.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import protocol
from protocol import ledger, negentropy, testing
from protocol.signing import SEED_SIZE, SigningKey, peer_id, verify

ROOT = Path(__file__).resolve().parents[2]


def test_all_names_exactly_the_exports_and_each_loads() -> None:
    assert len(protocol.__all__) == len(set(protocol.__all__))
    assert set(protocol._SOURCES) | {"__version__"} == set(protocol.__all__)
    namespace: dict[str, object] = {}
    exec("from protocol import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(protocol.__all__)
    assert set(protocol.__all__) <= set(dir(protocol))
    with pytest.raises(AttributeError, match="no attribute 'Storage'"):
        protocol.Storage  # noqa: B018  (only the exported name exists at the top)


def test_type_checkers_see_the_same_names_from_the_same_modules() -> None:
    # The ``if TYPE_CHECKING:`` imports are what mypy and editors read; _SOURCES is what runs.
    tree = ast.parse((ROOT / "protocol" / "__init__.py").read_text())
    (block,) = [n for n in tree.body if isinstance(n, ast.If)]
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == protocol._SOURCES


def test_submodules_load_only_when_used() -> None:
    # scripts/negentropy-harness runs on the standard library alone: importing the package and
    # its negentropy module must not import msgpack, PyNaCl or cryptography.
    code = (
        "import sys, protocol, protocol.negentropy\n"
        "from protocol import Negentropy, NegentropyError\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert not loaded & {'msgpack', 'nacl', 'cryptography'}, loaded\n"
        "assert 'protocol.record' not in sys.modules\n"
        "from protocol import Record\n"
        "assert 'protocol.record' in sys.modules and 'nacl' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_each_export_is_the_object_its_submodule_defines() -> None:
    for name in protocol.__all__:
        value = getattr(protocol, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            home = __import__(value.__module__, fromlist=["_"])
            assert getattr(home, value.__name__) is value, name
    # The one renamed export: ``Storage`` alone would say nothing at the top of the package.
    assert protocol.NegentropyStorage is negentropy.Storage


def test_the_test_helpers_are_not_exported() -> None:
    # Their keys are public (seeded from a name): nothing real may sign with them by accident.
    assert not set(protocol.__all__) & set(testing.__all__)


def test_version_is_the_distributions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert protocol.__version__ == project["version"]


def test_generate_makes_distinct_working_keys() -> None:
    keys = [SigningKey.generate() for _ in range(8)]
    assert len({k.seed for k in keys}) == len(keys)
    for key in keys:
        assert len(key.seed) == SEED_SIZE
        signature = key.sign(b"message")
        assert verify(key.public_key, b"message", signature)
        assert not verify(key.public_key, b"other message", signature)
        # The seed alone rebuilds the key: it is the identity to keep.
        assert SigningKey(key.seed).public_key == key.public_key
        assert key.peer_id == peer_id(key.public_key)
        assert key.seed.hex() not in repr(key)


def test_a_generated_key_signs_records_that_parse() -> None:
    key = SigningKey.generate()
    record = protocol.sign_record(key, body=protocol.ProjectBody(name="Mine"), ts=1)
    parsed = protocol.parse_record(protocol.encode(record.to_value()), now_ms=1)
    assert parsed == record
    assert parsed.author_peer_id == key.peer_id


def test_views_give_peer_ids_beside_keys() -> None:
    f = testing.RecordFactory()
    project = f.project("alice", maintainers=("carol",))
    solo = f.contribution("bob", project, minutes=60)
    joint = f.contribution("dave", project, minutes=30, coauthors=("erin", "bob"))
    records = [
        project,
        solo,
        joint,
        f.endorsement("alice", solo, weight=2),
        f.endorsement("carol", joint),
    ]
    view = ledger.ProjectView.build(project, records)

    state = view.state
    assert state.maintainer_peer_ids == tuple(peer_id(k) for k in state.sorted_maintainers)
    assert set(state.maintainer_peer_ids) == {f.key("alice").peer_id, f.key("carol").peer_id}

    summary = view.summary()
    assert summary.maintainer_peer_ids == tuple(peer_id(k) for k in summary.maintainers)
    assert list(summary.maintainer_peer_ids) == summary.to_json()["maintainers"]

    for entry in view.live_contributions():
        assert entry.author_peer_id == peer_id(entry.record.author)
        assert entry.author_peer_id == entry.to_json()["author"]
        assert list(entry.coauthor_peer_ids) == entry.to_json()["coauthors"]
    joint_entry = view.contribution(joint.id)
    assert joint_entry is not None
    assert joint_entry.coauthor_peer_ids == (f.key("erin").peer_id, f.key("bob").peer_id)

    shares = view.shares()
    assert {s.contributor_peer_id for s in shares} == {
        f.key(n).peer_id for n in ("bob", "dave", "erin")
    }
    for share in shares:
        assert share.contributor_peer_id == peer_id(share.contributor)
        assert share.contributor_peer_id == share.to_json()["contributor"]
