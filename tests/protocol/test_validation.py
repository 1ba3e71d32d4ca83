"""parse_record against hostile bytes: every rule of docs/RECORD-FORMAT.md §1-4, one at a time.

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
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from protocol import codec, testing
from protocol.errors import InvalidRecord, LocalProtocolError
from protocol.record import SIGNING_DOMAIN, Record
from protocol.signing import SigningKey
from protocol.validation import (
    ERROR_CODES,
    MAX_CLOCK_SKEW_MS,
    META_SCOPE,
    META_TOPIC,
    is_known_code,
    parse_record,
    project_topic,
    scope_of,
    topic_of,
    validate_message,
    verify_signature,
)

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


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_the_baseline_of_every_kind_is_valid(kind: str) -> None:
    raw = sign(record(kind))
    assert accepted(raw).kind == kind
    # ... which is what makes every refusal below about its one broken rule.


# --------------------------------------------------------------------------------------------
# Section 2: the encoding


def test_encoding_level_refusals() -> None:
    good = sign(record("profile"))
    assert refused(b"") == "truncated"
    for cut in range(len(good)):
        assert refused(good[:cut]) == "truncated"
    assert refused(good + b"\x00") == "trailing-bytes"
    assert refused(good + good) == "trailing-bytes"
    assert refused(codec.encode([1, 2])) == "not-a-map"
    assert refused(codec.encode("record")) == "not-a-map"
    assert refused(codec.encode(7)) == "not-a-map"
    assert refused(bytes.fromhex("dfffffffff")) == "truncated"


def nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_nesting_depth() -> None:
    # Record map (1), body (2), then arrays: 6 more reach depth 8, 7 more depth 9.
    assert refused(sign(contribution(description=nested(6)), pack=loose)) == "bad-type:description"
    assert refused(sign(contribution(description=nested(7)), pack=loose)) == "too-deep"


TITLE = b"\xa5title\xabChassis CAD"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (sign(contribution(effort_minutes=True), pack=loose), "bool true where an int belongs"),
        (sign(contribution(effort_minutes=False), pack=loose), "bool false"),
        (sign(contribution(description=None), pack=loose), "nil for an absent field"),
        (sign(record("endorsement", {"target": TARGET, "weight": 2.0}), pack=loose), "float64"),
        (
            sign(
                record("endorsement", {"target": TARGET, "weight": 2.0}),
                pack=lambda v: msgpack.packb(
                    loose_order(v), use_bin_type=True, use_single_float=True
                ),
            ),
            "float32",
        ),
        (sign(contribution(description=msgpack.ExtType(5, b"abc")), pack=loose), "ext"),
        (sign(contribution(description=msgpack.Timestamp(1, 0)), pack=loose), "timestamp"),
        (sign(contribution(), patch=(TITLE, b"\xa5title\xc1")), "reserved byte 0xc1"),
        (sign(contribution(), patch=(TITLE, b"\xa5title\xc0")), "nil title"),
        (sign(record("profile"), patch=(b"\xa1v\x01", b"\xa1v\xc3")), "v true"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_forbidden_types(raw: bytes, why: str) -> None:
    assert refused(raw) == "forbidden-type", why


def test_booleans_are_refused_by_encode_too() -> None:
    # The canonical encoder cannot even write them, which is why the tests above use msgpack.
    assert loose(True) == b"\xc3"
    with pytest.raises(LocalProtocolError, match="unencodable"):
        codec.encode(contribution(effort_minutes=True))


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (sign(record("profile"), pack=lambda v: msgpack.packb(v, use_bin_type=True)), "unsorted"),
        (sign(record("profile"), patch=(b"\xa1v\x01", b"\xa1v\xcc\x01")), "v as uint8"),
        (sign(record("profile", ts=5), patch=(b"\xa2ts\x05", b"\xa2ts\xd1\x00\x05")), "int16"),
        (sign(contribution(), patch=(TITLE, b"\xa5title\xd9\x0bChassis CAD")), "str8"),
        (
            sign(record("profile"), patch=(b"\xa6author\xc4\x20", b"\xa6author\xc5\x00\x20")),
            "bin16 author",
        ),
        (sign(contribution(), patch=(b"\xa4type", b"\xa5title")), "duplicate body key"),
        (sign(contribution(), patch=(b"\xa4type", b"\x01")), "int body key"),
        (
            sign(
                record("project", {"name": "P", "tags": ["t"]}),
                patch=(b"\xa4tags\x91", b"\xa4tags\xdc\x00\x01"),
            ),
            "array16",
        ),
        (
            sign(record("profile"), patch=(b"\x81\xa4name", b"\xde\x00\x01\xa4name")),
            "map16 body",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_non_canonical_encodings(raw: bytes, why: str) -> None:
    assert refused(raw) == "not-canonical", why


@pytest.mark.parametrize(
    "bad",
    [b"\xc0\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xe0\x80\x80", b"\xff", b"\xf4\x90\x80\x80"],
)
def test_invalid_utf8_in_a_field(bad: bytes) -> None:
    raw = sign(contribution(), patch=(TITLE, b"\xa5title" + bytes([0xA0 | len(bad)]) + bad))
    assert refused(raw) == "bad-utf8"


def test_size_limit() -> None:
    # Each artifact within its limits, the whole past 65,536 bytes.
    artifacts = [{"uri": "u" * 2000, "digest": "d" * 200}] * 30
    raw = sign(contribution(artifacts=artifacts))
    assert len(raw) > codec.MAX_SIZE
    assert refused(raw) == "too-large"
    # Trim the description until the record is exactly at the limit: accepted.
    base_len = len(sign(contribution(artifacts=artifacts[:29], description="")))
    fill = codec.MAX_SIZE - base_len - 2  # a str16 header is 2 bytes longer than fixstr
    exact = sign(contribution(artifacts=artifacts[:29], description="x" * fill))
    assert len(exact) == codec.MAX_SIZE
    accepted(exact)
    over = sign(contribution(artifacts=artifacts[:29], description="x" * (fill + 1)))
    assert len(over) == codec.MAX_SIZE + 1
    assert refused(over) == "too-large"


# --------------------------------------------------------------------------------------------
# Section 1: the record map


@pytest.mark.parametrize("name", ["v", "kind", "author", "ts", "body"])
def test_missing_record_keys(name: str) -> None:
    assert refused(sign(record("profile", **{name: None}))) == f"missing-field:{name}"


def test_record_keys() -> None:
    assert refused(sign(record("profile"), sig=None)) == "missing-field:sig"
    assert refused(sign(record(project=None))) == "missing-field:project"
    assert refused(sign(record("profile", extra=1))) == "unknown-field:extra"
    assert refused(sign(record("profile", id=bytes(32)))) == "unknown-field:id"
    assert refused(sign(record("profile", V=1))) == "unknown-field:V"
    for kind in ("project", "profile"):
        assert refused(sign(record(kind, project=PROJECT))) == "unexpected-field:project"
    for kind in ("project-update", "contribution", "endorsement", "retraction"):
        assert refused(sign(record(kind, project=None))) == "missing-field:project"


@pytest.mark.parametrize("v", [0, 2, -1, 256, "1", b"\x01", [1]])
def test_version(v: object) -> None:
    assert refused(sign(record("profile", v=v))) == "bad-version"


def test_kind() -> None:
    # A well-formed kind name this library does not know is kept, opaque (section 7).
    vote = accepted(sign(record("profile", kind="vote")))
    assert (vote.kind, vote.project) == ("vote", None)
    assert refused(sign(record("profile", kind="Vote"))) == "unknown-kind"
    assert refused(sign(record("profile", kind="-vote"))) == "unknown-kind"
    assert refused(sign(record("profile", kind="v" * 33))) == "unknown-kind"
    assert refused(sign(record("profile", kind="Profile"))) == "unknown-kind"
    assert refused(sign(record("profile", kind=""))) == "unknown-kind"
    assert refused(sign(record("profile", kind=b"profile"))) == "bad-type:kind"
    assert refused(sign(record("profile", kind=1))) == "bad-type:kind"
    # A body is judged by the kind the record claims: {"name": "Alice"} is a valid project.
    assert accepted(sign(record("profile", kind="project"))).kind == "project"
    assert refused(sign(record("profile", {"name": "x", "about": "y"}, kind="project"))) == (
        "unknown-field:about"
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"author": bytes(31)}, "bad-length:author"),
        ({"author": bytes(33)}, "bad-length:author"),
        ({"author": b""}, "bad-length:author"),
        ({"author": ALICE.public_key.hex()}, "bad-type:author"),
        ({"author": 5}, "bad-type:author"),
        ({"sig": bytes(63)}, "bad-length:sig"),
        ({"sig": bytes(65)}, "bad-length:sig"),
        ({"sig": b""}, "bad-length:sig"),
        ({"sig": "00" * 64}, "bad-type:sig"),
        ({"body": ["Alice"]}, "bad-type:body"),
        ({"body": "Alice"}, "bad-type:body"),
        ({"ts": "1735689600000"}, "bad-type:ts"),
        ({"ts": b"\x00"}, "bad-type:ts"),
    ],
)
def test_record_field_types_and_lengths(fields: dict[str, Any], code: str) -> None:
    value = record("profile", **{k: v for k, v in fields.items() if k != "sig"})
    raw = sign(value, sig=fields["sig"]) if "sig" in fields else sign(value)
    assert refused(raw) == code


@pytest.mark.parametrize(
    ("project", "code"),
    [
        (bytes(31), "bad-length:project"),
        (bytes(33), "bad-length:project"),
        ("p", "bad-type:project"),
    ],
)
def test_project_key_type_and_length(project: object, code: str) -> None:
    assert refused(sign(record(project=project))) == code


@pytest.mark.parametrize(
    "ts",
    [-1, -(2**63), 2**63, 2**63 + 1, 2**64 - 1],
)
def test_timestamp_range(ts: int) -> None:
    # 2**63 .. 2**64-1 decode as uint64 and are refused by the range rule, not by the codec.
    assert refused(sign(record("profile", ts=ts)), now_ms=None) == "bad-timestamp"


def test_timestamp_limits_and_the_clock() -> None:
    accepted(sign(record("profile", ts=0)))
    last = sign(record("profile", ts=2**63 - 1))
    accepted(last, now_ms=None)  # no clock: only the range applies
    assert refused(last) == "future-timestamp"
    at_limit = sign(record("profile", ts=NOW + MAX_CLOCK_SKEW_MS))
    accepted(at_limit)
    beyond = sign(record("profile", ts=NOW + MAX_CLOCK_SKEW_MS + 1))
    assert refused(beyond) == "future-timestamp"
    accepted(beyond, now_ms=NOW + 1)  # refused now, accepted later
    assert MAX_CLOCK_SKEW_MS == 600_000
    # Records from the past are fine, however old.
    accepted(sign(record("profile", ts=1)), now_ms=2**62)


# --------------------------------------------------------------------------------------------
# Section 4: bodies


def test_body_keys() -> None:
    assert refused(sign(contribution(color="red"))) == "unknown-field:color"
    assert refused(sign(record("contribution", {"title": "t"}))) == "missing-field:type"
    assert refused(sign(record("contribution", {"type": "code"}))) == "missing-field:title"
    assert refused(sign(record("project", {}))) == "missing-field:name"
    assert refused(sign(record("profile", {"about": "x"}))) == "missing-field:name"
    assert refused(sign(record("endorsement", {"weight": 1}))) == "missing-field:target"
    assert refused(sign(record("retraction", {}))) == "missing-field:target"
    assert refused(sign(record("retraction", {"target": TARGET, "weight": 1}))) == (
        "unknown-field:weight"
    )
    assert refused(sign(record("profile", {"name": "a", "maintainers": []}))) == (
        "unknown-field:maintainers"
    )
    assert refused(sign(record("project", {"name": "p", "about": "x"}))) == "unknown-field:about"


#: (kind, field path, lowest, highest, body holding the text s)
TEXT_FIELDS: list[tuple[str, str, int, int, Callable[[str], dict[str, object]]]] = [
    ("project", "name", 1, 100, lambda s: {"name": s}),
    ("project", "description", 0, 4000, lambda s: {"name": "p", "description": s}),
    ("project", "license", 1, 64, lambda s: {"name": "p", "license": s}),
    ("project", "links", 1, 2000, lambda s: {"name": "p", "links": ["l", s]}),
    ("project", "tags", 1, 32, lambda s: {"name": "p", "tags": [s]}),
    ("project-update", "set.name", 1, 100, lambda s: {"set": {"name": s}}),
    ("project-update", "set.description", 0, 4000, lambda s: {"set": {"description": s}}),
    ("project-update", "set.license", 1, 64, lambda s: {"set": {"license": s}}),
    ("project-update", "set.links", 1, 2000, lambda s: {"set": {"links": [s]}}),
    ("project-update", "set.tags", 1, 32, lambda s: {"set": {"tags": [s, "t"]}}),
    ("contribution", "title", 1, 200, lambda s: {"type": "code", "title": s}),
    (
        "contribution",
        "description",
        0,
        4000,
        lambda s: {"type": "code", "title": "t", "description": s},
    ),
    (
        "contribution",
        "artifacts.uri",
        1,
        2000,
        lambda s: {"type": "code", "title": "t", "artifacts": [{"uri": s}]},
    ),
    (
        "contribution",
        "artifacts.digest",
        1,
        200,
        lambda s: {
            "type": "code",
            "title": "t",
            "artifacts": [{"uri": "u"}, {"uri": "u", "digest": s}],
        },
    ),
    ("endorsement", "comment", 0, 1000, lambda s: {"target": TARGET, "comment": s}),
    ("retraction", "reason", 0, 1000, lambda s: {"target": TARGET, "reason": s}),
    ("profile", "name", 1, 100, lambda s: {"name": s}),
    ("profile", "about", 0, 2000, lambda s: {"name": "a", "about": s}),
    ("profile", "links", 1, 2000, lambda s: {"name": "a", "links": [s]}),
]


@pytest.mark.parametrize(
    ("kind", "path", "lo", "hi", "body"), TEXT_FIELDS, ids=[f"{k}:{p}" for k, p, *_ in TEXT_FIELDS]
)
def test_text_limits_in_utf8_bytes(
    kind: str, path: str, lo: int, hi: int, body: Callable[[str], dict[str, object]]
) -> None:
    at_limit = text_of(hi)
    assert len(at_limit) < hi or hi < 4  # multibyte: a character count would be wrong
    accepted(sign(record(kind, body(at_limit))))
    assert refused(sign(record(kind, body(text_of(hi + 1))))) == f"field-too-long:{path}"
    # hi ASCII characters are fine too; hi characters of 2 bytes are not.
    accepted(sign(record(kind, body("a" * hi))))
    assert refused(sign(record(kind, body("é" * hi)))) == f"field-too-long:{path}"
    if lo == 1:
        assert refused(sign(record(kind, body("")))) == f"field-too-short:{path}"
        accepted(sign(record(kind, body("x"))))
    else:
        accepted(sign(record(kind, body(""))))
    assert refused(sign(record(kind, body(b"bytes")))) == f"bad-type:{path}"  # type: ignore[arg-type]
    assert refused(sign(record(kind, body(7)))) == f"bad-type:{path}"  # type: ignore[arg-type]


def keys(n: int) -> list[bytes]:
    return [testing.key(f"k{i}").public_key for i in range(n)]


#: (kind, list path, most items, body holding the list)
LIST_FIELDS: list[
    tuple[str, str, int, Callable[[list[Any]], dict[str, object]], Callable[[int], list[Any]]]
] = [
    (
        "project",
        "links",
        16,
        lambda xs: {"name": "p", "links": xs},
        lambda n: [f"l{i}" for i in range(n)],
    ),
    (
        "project",
        "tags",
        16,
        lambda xs: {"name": "p", "tags": xs},
        lambda n: [f"t{i}" for i in range(n)],
    ),
    ("project", "maintainers", 64, lambda xs: {"name": "p", "maintainers": xs}, keys),
    ("project-update", "set.links", 16, lambda xs: {"set": {"links": xs}}, lambda n: ["l"] * n),
    ("project-update", "set.tags", 16, lambda xs: {"set": {"tags": xs}}, lambda n: ["t"] * n),
    ("project-update", "add_maintainers", 64, lambda xs: {"add_maintainers": xs}, keys),
    ("project-update", "remove_maintainers", 64, lambda xs: {"remove_maintainers": xs}, keys),
    (
        "contribution",
        "artifacts",
        32,
        lambda xs: {"type": "code", "title": "t", "artifacts": xs},
        lambda n: [{"uri": f"u{i}"} for i in range(n)],
    ),
    (
        "contribution",
        "coauthors",
        32,
        lambda xs: {"type": "code", "title": "t", "coauthors": xs},
        keys,
    ),
    ("profile", "links", 16, lambda xs: {"name": "a", "links": xs}, lambda n: ["l"] * n),
]


@pytest.mark.parametrize(
    ("kind", "path", "hi", "body", "items"),
    LIST_FIELDS,
    ids=[f"{k}:{p}" for k, p, *_ in LIST_FIELDS],
)
def test_list_limits(
    kind: str,
    path: str,
    hi: int,
    body: Callable[[list[Any]], dict[str, object]],
    items: Callable[[int], list[Any]],
) -> None:
    assert refused(sign(record(kind, body([])))) == f"empty-list:{path}"
    accepted(sign(record(kind, body(items(1)))))
    accepted(sign(record(kind, body(items(hi)))))
    assert refused(sign(record(kind, body(items(hi + 1))))) == f"too-many:{path}"
    assert refused(sign(record(kind, body("not a list")))) == f"bad-type:{path}"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "path", "body"),
    [
        ("project", "maintainers", lambda k: {"name": "p", "maintainers": [k]}),
        ("project-update", "add_maintainers", lambda k: {"add_maintainers": [k]}),
        ("project-update", "remove_maintainers", lambda k: {"remove_maintainers": [k]}),
        ("contribution", "coauthors", lambda k: {"type": "code", "title": "t", "coauthors": [k]}),
    ],
)
def test_key_lists_hold_32_byte_keys(
    kind: str, path: str, body: Callable[[object], dict[str, object]]
) -> None:
    for bad in (bytes(31), bytes(33), b""):
        assert refused(sign(record(kind, body(bad)))) == f"bad-length:{path}"
    assert refused(sign(record(kind, body("k" * 32)))) == f"bad-type:{path}"
    assert refused(sign(record(kind, body(1)))) == f"bad-type:{path}"


def test_duplicates_and_the_author_as_coauthor() -> None:
    dup = [BOB.public_key, CAROL.public_key, BOB.public_key]
    assert refused(sign(record("project", {"name": "p", "maintainers": dup}))) == (
        "duplicate:maintainers"
    )
    assert refused(sign(contribution(coauthors=dup))) == "duplicate:coauthors"
    assert refused(sign(contribution(coauthors=[ALICE.public_key]))) == "coauthor-is-author"
    assert refused(sign(contribution(coauthors=[BOB.public_key, ALICE.public_key]))) == (
        "coauthor-is-author"
    )
    # The author as a maintainer of their own project is redundant, not invalid.
    accepted(sign(record("project", {"name": "p", "maintainers": [ALICE.public_key]})))
    # The format does not forbid duplicates in project-update key lists.
    accepted(sign(record("project-update", {"add_maintainers": [BOB.public_key] * 2})))


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("effort_minutes", [0, 1, 999_999, 1_000_000], [-1, -(2**63), 1_000_001, 2**64 - 1]),
        ("weight", [1, 5, 10], [0, -1, 11, 255]),
    ],
)
def test_integer_ranges(field: str, good: list[int], bad: list[int]) -> None:
    def value(n: object) -> dict[str, Any]:
        if field == "weight":
            return record("endorsement", {"target": TARGET, "weight": n})
        return contribution(effort_minutes=n)

    for n in good:
        accepted(sign(value(n)))
    for n in bad:
        assert refused(sign(value(n))) == f"out-of-range:{field}"
    assert refused(sign(value("5"))) == f"bad-type:{field}"
    assert refused(sign(value(b"\x05"))) == f"bad-type:{field}"


@pytest.mark.parametrize("kind", ["coding", "Code", "code ", "", "CODE", "doc"])
def test_contribution_type_outside_the_list(kind: str) -> None:
    assert refused(sign(contribution(type=kind))) == "bad-value:type"


def test_contribution_type_of_the_wrong_type() -> None:
    assert refused(sign(contribution(type=b"code"))) == "bad-type:type"


def test_target_ids() -> None:
    for kind in ("endorsement", "retraction"):
        for bad in (bytes(31), bytes(33), b""):
            assert refused(sign(record(kind, {"target": bad}))) == "bad-length:target"
        assert refused(sign(record(kind, {"target": TARGET.hex()}))) == "bad-type:target"


def test_project_update_bodies() -> None:
    assert refused(sign(record("project-update", {}))) == "empty-update"
    assert refused(sign(record("project-update", {"set": {}}))) == "empty-list:set"
    assert refused(sign(record("project-update", {"set": "name"}))) == "bad-type:set"
    assert refused(sign(record("project-update", {"set": ["name"]}))) == "bad-type:set"
    maint = {"set": {"maintainers": [BOB.public_key]}}
    assert refused(sign(record("project-update", maint))) == "unknown-field:set.maintainers"
    assert refused(sign(record("project-update", {"set": {"nom": "x"}}))) == "unknown-field:set.nom"
    assert refused(sign(record("project-update", {"remove": [BOB.public_key]}))) == (
        "unknown-field:remove"
    )


def test_artifacts() -> None:
    assert refused(sign(contribution(artifacts=[{"uri": "u", "size": 1}]))) == (
        "unknown-field:artifacts.size"
    )
    assert refused(sign(contribution(artifacts=[{"digest": "d"}]))) == "missing-field:artifacts.uri"
    assert refused(sign(contribution(artifacts=[{}]))) == "missing-field:artifacts.uri"
    assert refused(sign(contribution(artifacts=["u"]))) == "bad-type:artifacts"
    assert refused(sign(contribution(artifacts=[{"uri": "u"}, 1]))) == "bad-type:artifacts"
    assert refused(sign(contribution(artifacts={"uri": "u"}))) == "bad-type:artifacts"


# --------------------------------------------------------------------------------------------
# Section 3: signatures


def test_signature_by_another_key() -> None:
    assert refused(sign(record("profile"), BOB)) == "bad-signature"


@pytest.mark.parametrize("bit", [0, 7, 255, 256, 300, 511])
def test_signature_with_a_flipped_bit(bit: int) -> None:
    value = record("profile")
    sig = bytearray(ALICE.sign(SIGNING_DOMAIN + codec.encode(value)))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert refused(sign(value, sig=bytes(sig))) == "bad-signature"


def test_content_changed_after_signing() -> None:
    value = record("profile")
    sig = ALICE.sign(SIGNING_DOMAIN + codec.encode(value))
    assert refused(sign(record("profile", ts=TS + 1), sig=sig)) == "bad-signature"
    assert refused(sign(record("profile", {"name": "Alicf"}), sig=sig)) == "bad-signature"


def test_signature_without_the_domain_prefix() -> None:
    assert refused(sign(record("profile"), domain=b"")) == "bad-signature"
    assert refused(sign(record("profile"), domain=b"commons-record-v1")) == "bad-signature"
    assert refused(sign(record("profile"), domain=b"commons-record-v2\x00")) == "bad-signature"
    # The signature covers the map *without* sig; a signature over the map with a
    # placeholder sig does not verify either.
    value = record("profile")
    over_all = ALICE.sign(SIGNING_DOMAIN + codec.encode({**value, "sig": bytes(64)}))
    assert refused(sign(value, sig=over_all)) == "bad-signature"


def test_small_order_key_forgery() -> None:
    """Identity key, R = identity, S = 0: OpenSSL accepts it for any message; we must not."""
    forged_sig = IDENTITY_POINT + bytes(32)
    value = record("profile", author=IDENTITY_POINT)
    raw = sign(value, sig=forged_sig)
    signing_input = SIGNING_DOMAIN + codec.encode(value)
    # The `cryptography` package alone would have let the forgery in:
    Ed25519PublicKey.from_public_bytes(IDENTITY_POINT).verify(forged_sig, signing_input)
    assert refused(raw) == "bad-signature"
    # And with an all-zero S and zero R too.
    assert refused(sign(value, sig=bytes(64))) == "bad-signature"


def test_non_canonical_s() -> None:
    value = record("profile")
    sig = ALICE.sign(SIGNING_DOMAIN + codec.encode(value))
    accepted(sign(value, sig=sig))
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert refused(sign(value, sig=malleated)) == "bad-signature"


def test_verify_sig_false_skips_only_the_signature() -> None:
    raw = sign(record("profile"), BOB)
    assert parse_record(raw, now_ms=NOW, verify_sig=False).author == ALICE.public_key
    with pytest.raises(InvalidRecord, match="bad-signature"):
        verify_signature(parse_record(raw, now_ms=NOW, verify_sig=False))
    with pytest.raises(InvalidRecord, match="future-timestamp"):
        parse_record(sign(record("profile", ts=NOW * 2), BOB), now_ms=NOW, verify_sig=False)


def test_a_verdict_reached_elsewhere_decides_alone() -> None:
    """``verdict`` is the answer of ``verify`` run in another process: it is used as it is."""
    good = parse_record(sign(record("profile")), now_ms=NOW, verify_sig=False)
    forged = parse_record(sign(record("profile"), BOB), now_ms=NOW, verify_sig=False)
    verify_signature(good, verdict=True)
    verify_signature(forged, verdict=True)  # whoever answered True is trusted
    with pytest.raises(InvalidRecord, match="bad-signature"):
        verify_signature(good, verdict=False)
    verify_signature(good)
    with pytest.raises(InvalidRecord, match="bad-signature"):
        verify_signature(forged)


def test_checks_run_before_the_signature() -> None:
    # A record that breaks a rule *and* has a bad signature reports the rule: the cheap checks
    # come first, so garbage costs no signature verification.
    assert refused(sign(contribution(title=""), BOB)) == "field-too-short:title"
    assert refused(sign(record("profile", ts=NOW * 2), BOB)) == "future-timestamp"


def test_parse_record_accepts_bytes_like_input() -> None:
    raw = sign(record("profile"))
    assert parse_record(bytearray(raw), now_ms=NOW) == parse_record(memoryview(raw), now_ms=NOW)
    assert refused(bytes(codec.MAX_SIZE + 1)) == "too-large"


# --------------------------------------------------------------------------------------------
# Error codes and gossip topics


def test_every_code_is_documented() -> None:
    import protocol.validation as validation

    doc = validation.__doc__ or ""
    for code in ERROR_CODES:
        assert f"``{code}``" in doc
    for code in ("bad-type:title", "too-many:set.links", "unknown-field:artifacts.size"):
        assert is_known_code(code)
    for code in ("bad-thing", "oops:title", "wrong-topic:x", ""):
        assert not is_known_code(code)


def test_topics_and_scopes() -> None:
    f = testing.RecordFactory()
    genesis = f.project("alice")
    update = f.update("alice", genesis, name="n")
    contribution_record = f.contribution("bob", genesis)
    endorsement = f.endorsement("alice", contribution_record)
    retraction = f.retraction("bob", contribution_record)
    profile = f.profile("carol", name="Carol")
    project_topic_name = f"/commons/1/p/{genesis.id.hex()}"
    assert project_topic(genesis.id) == project_topic_name
    for r in (genesis, update, profile):
        assert topic_of(r) == META_TOPIC == "/commons/1/meta"
        assert scope_of(r) == META_SCOPE
    for r in (contribution_record, endorsement, retraction):
        assert topic_of(r) == project_topic_name
        assert scope_of(r) == genesis.id.hex()
    now = f.now_ms
    for r in (genesis, update, contribution_record, endorsement, retraction, profile):
        assert validate_message(topic_of(r), r.raw, now_ms=now) == r
        other = META_TOPIC if topic_of(r) != META_TOPIC else project_topic_name
        with pytest.raises(InvalidRecord) as info:
            validate_message(other, r.raw, now_ms=now)
        assert info.value.code == "wrong-topic"
    with pytest.raises(InvalidRecord, match="wrong-topic"):
        validate_message(project_topic(bytes(32)), contribution_record.raw, now_ms=now)


def test_gossip_checks_the_topic_before_the_signature() -> None:
    raw = sign(record("profile"), BOB)
    with pytest.raises(InvalidRecord, match="wrong-topic"):
        validate_message(project_topic(PROJECT), raw, now_ms=NOW)
    with pytest.raises(InvalidRecord, match="bad-signature"):
        validate_message(META_TOPIC, raw, now_ms=NOW)
    with pytest.raises(InvalidRecord, match="future-timestamp"):
        validate_message(META_TOPIC, sign(record("profile", ts=NOW * 2)), now_ms=NOW)


# --------------------------------------------------------------------------------------------
# Fuzzing: any bytes give a Record or InvalidRecord, nothing else

SEEDS = [sign(record(kind)) for kind in sorted(BODIES)] + [
    sign(
        contribution(
            description="é",
            effort_minutes=5,
            artifacts=[{"uri": "u", "digest": "d"}],
            coauthors=[BOB.public_key],
        )
    ),
    sign(record("project", {"name": "p", "tags": ["a", "b"], "maintainers": [BOB.public_key]})),
    sign(
        record("project-update", {"set": {"links": ["l"]}, "remove_maintainers": [BOB.public_key]})
    ),
]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_any(raw: bytes) -> None:
    try:
        result: Record | str = parse_record(raw, now_ms=NOW)
    except InvalidRecord as exc:
        result = exc.code
    if isinstance(result, str):
        assert is_known_code(result), result
        return
    assert isinstance(result, Record)
    assert_faithful(result, raw)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes(raw: bytes) -> None:
    check_any(raw)


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace", "swap"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if not data:
            data += draw(st.binary(min_size=1, max_size=4))
        elif op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "replace":
            data[at] = draw(
                st.sampled_from([0x00, 0x7F, 0x80, 0xA0, 0xC0, 0xC3, 0xCC, 0xD9, 0xDC, 0xDE, 0xFF])
            )
        else:
            other = draw(st.integers(0, len(data) - 1))
            data[at], data[other] = data[other], data[at]
    return bytes(data)


@FUZZ
@given(mutated_records())
def test_mutated_records(raw: bytes) -> None:
    check_any(raw)


values = st.recursive(
    st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def structured_records(draw: st.DrawFn) -> bytes:
    """Maps shaped like records, with some fields replaced by arbitrary values."""
    kind = draw(st.sampled_from(sorted(BODIES)))
    value = record(kind)
    for name in draw(
        st.lists(
            st.sampled_from(["v", "kind", "author", "ts", "project", "body", "extra"]), max_size=2
        )
    ):
        value[name] = draw(values)
    body = dict(value["body"]) if isinstance(value["body"], dict) else {}
    for name in draw(
        st.lists(
            st.sampled_from(
                [
                    "name",
                    "title",
                    "type",
                    "set",
                    "target",
                    "weight",
                    "artifacts",
                    "coauthors",
                    "links",
                    "tags",
                ]
            ),
            max_size=2,
        )
    ):
        body[name] = draw(values)
    value["body"] = body
    try:
        return sign(value)
    except LocalProtocolError:  # nested deeper than encode writes
        reject()


@FUZZ
@given(structured_records())
def test_structured_records(raw: bytes) -> None:
    check_any(raw)
