"""parse_record against hostile bytes: docs/RECORD-FORMAT.md §1, 2 and 4, a rule at a time.

The hostile records come from ``validation_records``: each breaks exactly one rule and is signed
by its author over exactly its bytes, so a validator that skipped the rule would accept it.
The signature rules (§3), error codes, topics and fuzzing are in test_validation_signatures.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from validation_records import (
    ALICE,
    BOB,
    BODIES,
    CAROL,
    NOW,
    PROJECT,
    TARGET,
    accepted,
    contribution,
    loose,
    loose_order,
    record,
    refused,
    sign,
    text_of,
)

from protocol import codec, testing
from protocol.errors import LocalProtocolError
from protocol.validation import (
    MAX_CLOCK_SKEW_MS,
)


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
