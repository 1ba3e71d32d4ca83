"""``tests/vectors/records.json``: no drift from its generator, and every vector replays.

The replay uses only what another implementation would have: the hex, the clock and the
expected outcome. The generator is loaded from its file, since ``tests`` is not a package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from protocol import codec
from protocol.errors import InvalidRecord
from protocol.record import SIGNING_DOMAIN
from protocol.signing import peer_id
from protocol.testing import key, seed
from protocol.validation import (
    ERROR_CODES,
    FIELD_ERROR_PREFIXES,
    is_known_code,
    parse_record,
    topic_of,
    validate_message,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RECORDS_JSON = VECTORS / "records.json"


@cache
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_records", VECTORS / "gen_records.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def checked_in() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDS_JSON.read_text(encoding="utf-8"))
    return data


def vectors(section: str) -> list[dict[str, Any]]:
    return list(checked_in()[section])


def test_checked_in_file_matches_the_generator() -> None:
    fresh = json.loads(json.dumps(generator().build()))
    stored = checked_in()
    for section in ("format", "keys", "valid", "invalid", "topics", "codec"):
        assert fresh[section] == stored[section], (
            f"records.json section {section!r} drifted from gen_records.build(): "
            "regenerate with `python tests/vectors/gen_records.py` and review the diff"
        )
    assert fresh == stored


def test_render_writes_what_build_returns() -> None:
    gen = generator()
    data = gen.build()
    assert json.loads(gen.render(data)) == json.loads(json.dumps(data))
    assert gen.render(data).endswith("}\n")


def test_header_and_keys() -> None:
    data = checked_in()
    assert data["format"] == "commons-record-v1"
    assert [k["name"] for k in data["keys"]] == ["alice", "bob", "carol"]
    for entry in data["keys"]:
        name = entry["name"]
        assert entry["seed"] == hashlib.sha256(f"commons-test-key:{name}".encode()).hexdigest()
        assert entry["seed"] == seed(name).hex()
        assert entry["public_key"] == key(name).public_key.hex()
        assert entry["peer_id"] == peer_id(bytes.fromhex(entry["public_key"]))


def test_coverage_of_the_vectors() -> None:
    valid = vectors("valid")
    invalid = vectors("invalid")
    assert {v["kind"] for v in valid} == {
        "project",
        "project-update",
        "contribution",
        "endorsement",
        "retraction",
        "profile",
        "claim",
        "claim-confirmation",
        "device-link",
        "device-join",
        "device-revoke",
        "vote",
        "poll-2",
    }
    assert len(invalid) >= 35
    codes = {v["error"] for v in invalid}
    # Every documented code except wrong-topic (a gossip rule: see the topics section) ...
    assert ERROR_CODES - {"wrong-topic"} <= codes
    # ... and every family of field codes.
    assert {c.split(":", 1)[0] for c in codes if ":" in c} >= FIELD_ERROR_PREFIXES
    assert all(is_known_code(c) for c in codes)
    sizes = [len(v["hex"]) // 2 for v in valid]
    assert max(sizes) == codec.MAX_SIZE


def _decoded_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_decoded_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _decoded_json(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("vector", vectors("valid"), ids=lambda v: v["description"][:50])
def test_valid_vector(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    record = parse_record(raw, now_ms=vector["now_ms"])
    assert record.kind == vector["kind"]
    assert record.raw == raw
    assert codec.encode(record.to_value()) == raw
    assert codec.encode(codec.decode(raw)) == raw
    assert record.id.hex() == vector["id"] == hashlib.sha256(raw).hexdigest()
    signing_input = bytes.fromhex(vector["signing_input_hex"])
    assert record.signing_input() == signing_input
    unsigned = codec.decode(raw)
    assert isinstance(unsigned, dict)
    del unsigned["sig"]
    assert signing_input == SIGNING_DOMAIN + codec.encode(unsigned)
    assert _decoded_json(codec.decode(raw)) == vector["decoded"]


@pytest.mark.parametrize("vector", vectors("invalid"), ids=lambda v: v["description"][:50])
def test_invalid_vector(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as info:
        parse_record(bytes.fromhex(vector["hex"]), now_ms=vector["now_ms"])
    assert info.value.code == vector["error"]


@pytest.mark.parametrize("vector", vectors("topics"), ids=lambda v: v["description"])
def test_topic_vector(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    record = parse_record(raw, now_ms=None)
    assert topic_of(record) == vector["topic"]
    assert validate_message(vector["topic"], raw, now_ms=record.ts) == record
    for other in ("/commons/1/meta", "/commons/1/p/" + "00" * 32, vector["topic"] + "x"):
        if other != vector["topic"]:
            with pytest.raises(InvalidRecord, match="wrong-topic"):
                validate_message(other, raw, now_ms=record.ts)


def _from_typed(value: dict[str, Any]) -> object:
    ((tag, inner),) = value.items()
    if tag == "int":
        return int(inner)
    if tag == "str":
        return inner
    if tag == "bin":
        return bytes.fromhex(inner)
    if tag == "array":
        return [_from_typed(v) for v in inner]
    assert tag == "map"
    return {k: _from_typed(v) for k, v in inner}


@pytest.mark.parametrize(
    "vector", checked_in()["codec"]["canonical"], ids=lambda v: v["description"]
)
def test_codec_canonical_vector(vector: dict[str, Any]) -> None:
    value = _from_typed(vector["value"])
    data = bytes.fromhex(vector["hex"])
    assert codec.encode(value) == data
    assert codec.decode(data) == value


@pytest.mark.parametrize("vector", checked_in()["codec"]["invalid"], ids=lambda v: v["description"])
def test_codec_invalid_vector(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidRecord) as info:
        codec.decode(bytes.fromhex(vector["hex"]))
    assert info.value.code == vector["error"]
