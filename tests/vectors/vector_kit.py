"""The shared parts of the record vector generators: keys, fixed times, hand-built records.

Hand-built records are maps encoded by hand (``pack_loose`` and ``pack_unsorted`` write what the
canonical encoder refuses to) and signed by their author over exactly those bytes, so that an
invalid vector breaks only the rule it names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from protocol import codec, testing
from protocol.record import (
    SIGNING_DOMAIN,
    UNSCOPED_KINDS,
)
from protocol.signing import SigningKey

#: The validating clock of every vector: one hour after the factories' epoch.
NOW_MS = testing.EPOCH_MS + 3_600_000
#: The group order of Ed25519, for the non-canonical ``S + L`` signature.
ED25519_L = 2**252 + 27742317777372353535851937790883648493

KEY_NAMES = ("alice", "bob", "carol")
ALICE = testing.key("alice")
BOB = testing.key("bob")
CAROL = testing.key("carol")
#: The Ed25519 SSH key bob signs his commits with (its seed made like the test keys').
BOB_SSH = testing.key("bob-ssh")
#: An arbitrary project id and record id: validity of one record never depends on others.
PROJECT_ID = bytes.fromhex("a1" * 32)
TARGET_ID = bytes.fromhex("b2" * 32)
TS = testing.EPOCH_MS + 1_000


def text_of(n: int) -> str:
    """A string of exactly ``n`` UTF-8 bytes, mostly multibyte characters."""
    return "😀" * (n // 4) + "é" * ((n % 4) // 2) + "a" * (n % 2)


# --------------------------------------------------------------------------------------------
# Hand-built records

_SIGN: Any = object()


def sorted_keys(value: object) -> object:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-8"))
        return {key: sorted_keys(item) for key, item in items}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def pack_loose(value: object) -> bytes:
    """Shortest-form MessagePack with sorted keys, but any type (nil, bool, float, ext)."""
    return msgpack.packb(sorted_keys(value), use_bin_type=True)


def pack_unsorted(value: object) -> bytes:
    """MessagePack with map keys in insertion order."""
    return msgpack.packb(value, use_bin_type=True)


def forge(
    value: dict[str, object],
    key: SigningKey = ALICE,
    *,
    sig: Any = _SIGN,
    pack: Callable[[object], bytes] = codec.encode,
    patch: tuple[bytes, bytes] | None = None,
    domain: bytes = SIGNING_DOMAIN,
) -> bytes:
    """Encode a record map with ``pack``, optionally ``patch`` its bytes, sign it with ``key``.

    The signature is over ``domain`` and the encoding of the map without ``sig`` (patched the
    same way). ``sig=None`` leaves ``sig`` out; bytes put those bytes in instead.
    """

    def enc(v: dict[str, object]) -> bytes:
        data = pack(v)
        if patch is not None:
            assert data.count(patch[0]) == 1, patch
            data = data.replace(*patch)
        return data

    unsigned = {k: v for k, v in value.items() if k != "sig"}
    if sig is None:
        return enc(unsigned)
    if sig is _SIGN:
        sig = key.sign(domain + enc(unsigned))
    return enc({**unsigned, "sig": sig})


BASE_BODIES: dict[str, dict[str, object]] = {
    "project": {"name": "Wikispeed"},
    "project-update": {"set": {"name": "Wikispeed SGT01"}},
    "contribution": {"type": "code", "title": "Chassis CAD"},
    "endorsement": {"target": TARGET_ID},
    "retraction": {"target": TARGET_ID},
    "profile": {"name": "Alice"},
    "claim": {"handle": "forge:github.com/alice"},
    "claim-confirmation": {"claim": TARGET_ID},
    "device-link": {"person": CAROL.public_key, "ticket": BOB.public_key},
    "device-revoke": {"person": CAROL.public_key, "device": BOB.public_key, "cut": TS},
}


def base(
    kind: str = "contribution", body: dict[str, object] | None = None, /, **fields: object
) -> dict[str, object]:
    """A valid unsigned record map of ``kind`` by alice, with ``fields`` replaced.

    A field given as ``None`` is removed.
    """
    value: dict[str, object] = {
        "v": 1,
        "kind": kind,
        "author": ALICE.public_key,
        "ts": TS,
        "body": dict(BASE_BODIES[kind] if body is None else body),
    }
    if kind not in UNSCOPED_KINDS:
        value["project"] = PROJECT_ID
    for name, item in fields.items():
        if item is None:
            value.pop(name, None)
        else:
            value[name] = item
    return value


def contribution(**body: object) -> dict[str, object]:
    """An unsigned contribution map whose body is the base body plus ``body``."""
    return base("contribution", {"type": "code", "title": "Chassis CAD", **body})


def sized_contribution(size: int, key: SigningKey = ALICE) -> bytes:
    """A validly signed contribution of exactly ``size`` encoded bytes (about 60-70 KB)."""
    artifact = {"uri": "u" * 2000, "digest": "d" * 200}
    artifacts = [artifact] * 29
    raw = forge(contribution(artifacts=artifacts, description=""), key)
    grow = size - len(raw)
    # Growing the empty description (a 1-byte fixstr header) to 256..4000 bytes of text adds
    # those bytes and 2 more for its str16 header.
    assert 256 + 2 <= grow <= 4000 + 2, grow
    raw = forge(contribution(artifacts=artifacts, description="x" * (grow - 2)), key)
    assert len(raw) == size, len(raw)
    return raw


def keys(n: int) -> list[bytes]:
    return [testing.key(f"maintainer-{i}").public_key for i in range(n)]


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value
