"""Hostile records for the validation tests: valid baselines and ways to break one rule.

Each hostile record is a hand-written map, encoded with ``protocol.codec.encode`` (or, for
types the canonical encoder refuses to write, with ``msgpack``, or by patching bytes) and
signed by its author over exactly those bytes. So in each test only the rule in question is
broken: a validator that skipped it would accept the record, signature and all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from protocol import codec, testing
from protocol.errors import InvalidRecord
from protocol.record import SIGNING_DOMAIN, Record
from protocol.signing import SigningKey
from protocol.validation import is_known_code, parse_record

ALICE = testing.key("alice")
BOB = testing.key("bob")
CAROL = testing.key("carol")
NOW = testing.EPOCH_MS + 86_400_000
TS = NOW - 60_000
PROJECT = hashlib.sha256(b"project").digest()
TARGET = hashlib.sha256(b"target").digest()
ED25519_L = 2**252 + 27742317777372353535851937790883648493
IDENTITY_POINT = bytes([1]) + bytes(31)

BODIES: dict[str, dict[str, object]] = {
    "project": {"name": "Wikispeed"},
    "project-update": {"set": {"name": "Wikispeed 2"}},
    "contribution": {"type": "code", "title": "Chassis CAD"},
    "endorsement": {"target": TARGET},
    "retraction": {"target": TARGET},
    "profile": {"name": "Alice"},
}
_SIGN: Any = object()


def record(kind: str = "contribution", body: dict[str, object] | None = None, /, **fields: Any):
    """A valid unsigned record map by alice; ``fields`` replace its keys (``None`` removes)."""
    value: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "author": ALICE.public_key,
        "ts": TS,
        "body": dict(BODIES[kind] if body is None else body),
    }
    if kind not in ("project", "profile"):
        value["project"] = PROJECT
    for name, item in fields.items():
        if item is None:
            del value[name]
        else:
            value[name] = item
    return value


def contribution(**body: object) -> dict[str, Any]:
    return record("contribution", {"type": "code", "title": "Chassis CAD", **body})


def loose_order(value: object) -> object:
    """``value`` with every map's keys in canonical (UTF-8 bytewise) order."""
    if isinstance(value, dict):
        return {k: loose_order(value[k]) for k in sorted(value, key=lambda k: k.encode())}
    if isinstance(value, list):
        return [loose_order(item) for item in value]
    return value


def loose(value: object) -> bytes:
    """Shortest-form MessagePack with sorted keys, allowing any type (nil, bool, float, ext)."""
    return msgpack.packb(loose_order(value), use_bin_type=True)


def sign(
    value: dict[str, Any],
    key: SigningKey = ALICE,
    *,
    sig: Any = _SIGN,
    pack: Callable[[Any], bytes] = codec.encode,
    patch: tuple[bytes, bytes] | None = None,
    domain: bytes = SIGNING_DOMAIN,
) -> bytes:
    """Encode ``value`` (patched), signed by ``key`` over ``domain`` + the unsigned encoding."""

    def enc(v: dict[str, Any]) -> bytes:
        data = pack(v)
        if patch is not None:
            assert data.count(patch[0]) == 1
            data = data.replace(*patch)
        return data

    unsigned = {k: v for k, v in value.items() if k != "sig"}
    if sig is None:
        return enc(unsigned)
    if sig is _SIGN:
        sig = key.sign(domain + enc(unsigned))
    return enc({**unsigned, "sig": sig})


def refused(raw: bytes, now_ms: int | None = NOW) -> str:
    with pytest.raises(InvalidRecord) as info:
        parse_record(raw, now_ms=now_ms)
    assert is_known_code(info.value.code), info.value.code
    return info.value.code


def accepted(raw: bytes, now_ms: int | None = NOW) -> Record:
    result = parse_record(raw, now_ms=now_ms)
    assert_faithful(result, raw)
    return result


def assert_faithful(result: Record, raw: bytes) -> None:
    """The record is exactly the bytes: re-encoding it and its signed part reproduce them."""
    assert result.raw == raw
    assert codec.encode(result.to_value()) == raw
    assert result.signing_input() == SIGNING_DOMAIN + codec.encode(result.unsigned_value())
    assert result.id == hashlib.sha256(raw).digest()


def text_of(n: int) -> str:
    """Exactly ``n`` UTF-8 bytes, mostly 4-byte characters, so characters != bytes."""
    return "😀" * (n // 4) + "é" * ((n % 4) // 2) + "a" * (n % 2)
