"""A table of defective records, each breaking exactly one rule of docs/RECORD-FORMAT.md.

``own_cases(now_ms)`` builds them here from a valid base record with ``msgpack`` (for what the
canonical codec refuses to write: nil, bools, floats, ext, non-shortest forms, unsorted or
duplicate keys) or :func:`protocol.codec.encode`, signed with :class:`SigningKey` over the
broken content wherever the rule allows, so that a node which skipped the rule would be
caught even though it checks signatures. ``vector_cases()`` adds every invalid record of
``tests/vectors/records.json`` (when the file is there) except the one whose timestamp is only
"in the future" relative to the vectors' own clock.

Each case names the error code that :func:`protocol.validation.parse_record` (or, for
``wrong-topic``, :func:`protocol.validation.validate_message`) must raise, the gossip topic it
is delivered on, and whether it can travel each way: a valid record on the wrong topic is only
defective as gossip, and a bundle cannot carry an empty or an over-long record as it is (its
framing refuses a zero length, and refuses an over-long record unread, by its index, with
``record-too-large``). A sync ``recs`` or ``push`` frame carries any of them: each record in a
well-formed frame is judged on its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgpack

from protocol import codec
from protocol.errors import InvalidRecord
from protocol.record import SIGNING_DOMAIN, Record
from protocol.signing import SigningKey
from protocol.testing import RecordFactory, key
from protocol.validation import META_TOPIC, project_topic, validate_message

__all__ = ["Hostile", "all_cases", "own_cases", "setup_records", "vector_cases"]

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "records.json"
#: The test vectors' project (alice's "Wikispeed" genesis, the first valid vector): records of
#: the vectors refer to it, so a victim node is given it first and subscribes to its topic.
ALICE = key("alice")
MALLORY = key("mallory")
BOB = key("bob")


@dataclass(frozen=True)
class Hostile:
    name: str
    raw: bytes
    code: str  # the full error code, e.g. "bad-length:author"
    topic: str = META_TOPIC
    gossip: bool = True
    bundle: bool = True  # can be framed in a bundle and read back (1..65,536 bytes)
    api: bool = True  # a defective record as a POST body (False: valid apart from its topic)

    @property
    def id(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def reason(self) -> str:
        """The metrics label: the code up to its field path."""
        return self.code.split(":", 1)[0]


# --------------------------------------------------------------------------------------------
# Encoding helpers: canonical order, but any type and any form.


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=lambda k: k.encode())}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def loose(value: Any) -> bytes:
    """MessagePack with keys in canonical order and the shortest forms, but any value type."""
    return msgpack.packb(_sorted(value), use_bin_type=True)


def sign_loose(value: dict[str, Any], signer: SigningKey) -> bytes:
    """Encode ``value`` with a signature by ``signer`` over its (loose) unsigned encoding."""
    unsigned = {k: v for k, v in value.items() if k != "sig"}
    sig = signer.sign(SIGNING_DOMAIN + loose(unsigned))
    return loose({**unsigned, "sig": sig})


def patch(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, f"{old!r} occurs {raw.count(old)} times"
    return raw.replace(old, new)


def _fixmap(pairs: list[tuple[str, Any]]) -> bytes:
    """A map written entry by entry, so that keys may repeat or come in any order."""
    assert len(pairs) < 16
    return bytes((0x80 | len(pairs),)) + b"".join(loose(k) + loose(v) for k, v in pairs)


# --------------------------------------------------------------------------------------------
# The records


def setup_records() -> list[Record]:
    """Valid records a victim holds first: the projects the hostile records refer to."""
    factory = RecordFactory(now_ms=1_735_689_600_000)
    return [
        factory.project(ALICE, name="Reliability"),
        factory.project(BOB, name="Other"),
    ]


def _project() -> Record:
    return setup_records()[0]


def _base(now_ms: int, **body: Any) -> dict[str, Any]:
    """A valid contribution by alice in the setup project, with ``body`` overrides."""
    value: dict[str, Any] = {
        "v": 1,
        "kind": "contribution",
        "author": ALICE.public_key,
        "ts": now_ms - 60_000,
        "project": _project().id,
        "body": {"type": "code", "title": "Title", "effort_minutes": 5, **body},
    }
    return value


def own_cases(now_ms: int) -> list[Hostile]:
    """The hand-made table; ``now_ms`` is the victim's clock (for ``future-timestamp``)."""
    p = _project()
    topic = project_topic(p.id)
    base = _base(now_ms)
    good = sign_loose(base, ALICE)
    cases: list[Hostile] = []

    def add(name: str, raw: bytes, code: str, **kw: Any) -> None:
        cases.append(Hostile(name, raw, code, topic=kw.pop("topic", topic), **kw))

    def body(**fields: Any) -> dict[str, Any]:
        value = _base(now_ms)
        value["body"] = {**value["body"], **fields}
        return value

    def without(value: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in keys}

    # ---- canonical MessagePack (section 2)
    add(
        "uint16 for 5",
        patch(good, b"effort_minutes\x05", b"effort_minutes\xcd\x00\x05"),
        "not-canonical",
    )
    add("int64 for ts", patch(good, b"\xa2ts\xcf", b"\xa2ts\xd3"), "not-canonical")
    add("str8 for a short title", patch(good, b"\xa5Title", b"\xd9\x05Title"), "not-canonical")
    add(
        "bin16 for the author",
        patch(good, b"\xc4\x20" + ALICE.public_key, b"\xc5\x00\x20" + ALICE.public_key),
        "not-canonical",
    )
    unsorted = msgpack.packb({"v": 1, **without(base, "v"), "sig": bytes(64)}, use_bin_type=True)
    add("record keys unsorted", unsorted, "not-canonical")
    dup_body = _fixmap([("title", "Title"), ("title", "Again"), ("type", "code")])
    add(
        "a body key twice",
        patch(loose(body() | {"sig": bytes(64)}), loose(_sorted(body()["body"])), dup_body),
        "not-canonical",
    )
    add(
        "an int map key",
        patch(
            loose(body(effort_minutes=7) | {"sig": bytes(64)}),
            b"\xaeeffort_minutes\x07",
            b"\x07\x07",
        ),
        "not-canonical",
    )
    add("float effort", sign_loose(body(effort_minutes=5.0), ALICE), "forbidden-type")
    add("nil description", sign_loose(body(description=None), ALICE), "forbidden-type")
    add("bool effort", sign_loose(body(effort_minutes=True), ALICE), "forbidden-type")
    add("ext title", sign_loose(body(title=msgpack.ExtType(1, b"x")), ALICE), "forbidden-type")
    add("reserved byte 0xc1", patch(good, b"\xa5Title", b"\xc1"), "forbidden-type")
    add("trailing byte", good + b"\x00", "trailing-bytes")
    add("truncated", good[:-1], "truncated")
    add("empty", b"", "truncated", bundle=False, api=False)
    add("invalid UTF-8", patch(good, b"\xa5Title", b"\xa5Tit\xc0\x80"), "bad-utf8")
    nested: Any = "deep"
    for _ in range(7):
        nested = [nested]
    add("nesting 9 deep", sign_loose(body(description=nested), ALICE), "too-deep")
    add("not a map", loose([1, "contribution"]), "not-a-map")

    # ---- record structure (section 1)
    add("v is 2", sign_loose(base | {"v": 2}, ALICE), "bad-version")
    add("kind that is not a kind name", sign_loose(base | {"kind": "Vote!"}, ALICE), "unknown-kind")
    add("unknown record key", sign_loose(base | {"extra": 1}, ALICE), "unknown-field:extra")
    add("unknown body key", sign_loose(body(color="red"), ALICE), "unknown-field:color")
    add("no sig", loose(base), "missing-field:sig")
    add("no project", sign_loose(without(base, "project"), ALICE), "missing-field:project")
    genesis = {
        "v": 1,
        "kind": "project",
        "author": ALICE.public_key,
        "ts": now_ms - 1000,
        "body": {"name": "Stray"},
    }
    add(
        "project key on a project",
        sign_loose(genesis | {"project": p.id}, ALICE),
        "unexpected-field:project",
        topic=META_TOPIC,
    )
    add(
        "author of 31 bytes",
        sign_loose(base | {"author": ALICE.public_key[:31]}, ALICE),
        "bad-length:author",
    )
    add("author as text", sign_loose(base | {"author": ALICE.peer_id}, ALICE), "bad-type:author")
    add(
        "project of 33 bytes",
        sign_loose(base | {"project": p.id + b"\x00"}, ALICE),
        "bad-length:project",
    )
    add("sig of 63 bytes", loose(base | {"sig": ALICE.sign(b"x")[:63]}), "bad-length:sig")
    add("ts -1", sign_loose(base | {"ts": -1}, ALICE), "bad-timestamp")
    add("ts as text", sign_loose(base | {"ts": "now"}, ALICE), "bad-type:ts")
    add("ts a day ahead", sign_loose(base | {"ts": now_ms + 86_400_000}, ALICE), "future-timestamp")
    big = [{"uri": "u" * 2000, "digest": "d" * 200} for _ in range(30)]
    add(
        "validly signed, 66 KB",
        sign_loose(body(artifacts=big), ALICE),
        "too-large",
        bundle=False,
    )

    # ---- the kinds' fields (section 4)
    add(
        "title of 201 bytes", sign_loose(body(title="é" * 100 + "x"), ALICE), "field-too-long:title"
    )
    add(
        "description of 4001 bytes",
        sign_loose(body(description="d" * 4001), ALICE),
        "field-too-long:description",
    )
    add("empty title", sign_loose(body(title=""), ALICE), "field-too-short:title")
    add("title as int", sign_loose(body(title=7), ALICE), "bad-type:title")
    add(
        "a clear-screen sequence in the title",
        sign_loose(body(title="\x1b[2J\x1b[HOwned"), ALICE),
        "control-char:title",
    )
    add("a newline in the title", sign_loose(body(title="Forged\nline"), ALICE), "line-break:title")
    add(
        "a right-to-left override in the description",
        sign_loose(body(description="fine\n\u202eenif"), ALICE),
        "bidi-control:description",
    )
    add("type coding", sign_loose(body(type="coding"), ALICE), "bad-value:type")
    add(
        "effort 1000001",
        sign_loose(body(effort_minutes=1_000_001), ALICE),
        "out-of-range:effort_minutes",
    )
    add("empty artifacts", sign_loose(body(artifacts=[]), ALICE), "empty-list:artifacts")
    add(
        "33 coauthors",
        sign_loose(body(coauthors=[key(f"c{i}").public_key for i in range(33)]), ALICE),
        "too-many:coauthors",
    )
    add(
        "a coauthor twice",
        sign_loose(body(coauthors=[BOB.public_key] * 2), ALICE),
        "duplicate:coauthors",
    )
    add(
        "the author as coauthor",
        sign_loose(body(coauthors=[ALICE.public_key]), ALICE),
        "coauthor-is-author",
    )
    endorse = base | {"kind": "endorsement", "body": {"target": bytes(32), "weight": 11}}
    add("weight 11", sign_loose(endorse, ALICE), "out-of-range:weight")
    add(
        "target of 31 bytes",
        sign_loose(endorse | {"body": {"target": bytes(31)}}, ALICE),
        "bad-length:target",
    )
    update = base | {"kind": "project-update", "body": {}}
    add("empty update", sign_loose(update, ALICE), "empty-update", topic=META_TOPIC)

    # ---- signatures (section 3)
    add("author alice, signed by mallory", sign_loose(base, MALLORY), "bad-signature")
    small_order = b"\x01" + bytes(31)
    add(
        "small-order key, R identity, S 0",
        loose(base | {"author": small_order, "sig": small_order + bytes(32)}),
        "bad-signature",
    )
    other = sign_loose(body(title="Other"), ALICE)
    add(
        "a signature copied from another record",
        loose(base | {"sig": msgpack.unpackb(other)["sig"]}),
        "bad-signature",
    )
    flipped = bytearray(msgpack.unpackb(good)["sig"])
    flipped[5] ^= 0x20
    add("one bit of the signature flipped", loose(base | {"sig": bytes(flipped)}), "bad-signature")
    add(
        "signed without the domain prefix",
        loose(base | {"sig": ALICE.sign(loose(base))}),
        "bad-signature",
    )
    add(
        "the signature moved into the body",
        sign_loose(body(sig=msgpack.unpackb(good)["sig"]), ALICE),
        "unknown-field:sig",
    )

    # ---- gossip topics (section 6): valid records on the wrong topic
    valid_contribution = sign_loose(_base(now_ms, title="On the wrong topic"), ALICE)
    profile = sign_loose(
        {
            "v": 1,
            "kind": "profile",
            "author": ALICE.public_key,
            "ts": now_ms - 1000,
            "body": {"name": "Alice"},
        },
        ALICE,
    )
    other_project = setup_records()[1]
    for name, raw, where in (
        ("a contribution on the meta topic", valid_contribution, META_TOPIC),
        ("a profile on a project topic", profile, topic),
        (
            "a contribution on another project's topic",
            valid_contribution,
            project_topic(other_project.id),
        ),
    ):
        add(name, raw, "wrong-topic", topic=where, bundle=False, api=False)
    return cases


def vector_cases() -> list[Hostile]:
    """Every invalid record of tests/vectors/records.json, with its code ([] without it).

    Each goes by gossip on the topic it would travel on when that is the topic of a project a
    victim holds (``setup_records``, ``vector_setup_records``), else on the meta topic: a node
    never sees messages on topics it does not subscribe to. A vector whose verdict on that
    topic would be ``wrong-topic`` instead of its own code is not sent by gossip.
    """
    try:
        vectors = json.loads(VECTORS.read_text())
    except (OSError, ValueError):
        return []
    known = {project_topic(r.id) for r in setup_records()}
    known |= {project_topic(hashlib.sha256(raw).digest()) for raw in vector_setup_records()}
    out = []
    for vector in vectors.get("invalid", []):
        if vector["error"] == "future-timestamp":
            continue  # ahead of the vectors' clock only; own_cases has one ahead of any clock
        raw = bytes.fromhex(vector["hex"])
        fits = 0 < len(raw) <= codec.MAX_SIZE
        topic = _topic_guess(raw)
        if topic not in known:
            topic = META_TOPIC
        try:
            validate_message(topic, raw, now_ms=int(vector["now_ms"]))
            gossip_code = "ok"
        except InvalidRecord as exc:
            gossip_code = exc.code
        out.append(
            Hostile(
                f"vector: {vector['description']}",
                raw,
                vector["error"],
                topic=topic,
                gossip=gossip_code == vector["error"],
                bundle=fits,
                api=bool(raw),
            )
        )
    return out


def _topic_guess(raw: bytes) -> str:
    """The topic a defective record would travel on, as far as it can be read."""
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return META_TOPIC
    if not isinstance(value, dict):
        return META_TOPIC
    project = value.get("project")
    if (
        value.get("kind") in ("contribution", "endorsement", "retraction")
        and isinstance(project, bytes)
        and len(project) == 32
    ):
        return project_topic(project)
    return META_TOPIC


def vector_setup_records() -> list[bytes]:
    """The vectors' valid project genesis records (their invalid records refer to them)."""
    try:
        vectors = json.loads(VECTORS.read_text())
    except (OSError, ValueError):
        return []
    return [bytes.fromhex(v["hex"]) for v in vectors.get("valid", []) if v["kind"] == "project"]


def all_cases(now_ms: int, *, vectors: bool = True) -> list[Hostile]:
    """The own table, then the vectors', without byte-identical repeats."""
    seen: set[bytes] = set()
    out = []
    for case in own_cases(now_ms) + (vector_cases() if vectors else []):
        if case.raw in seen:
            continue
        seen.add(case.raw)
        out.append(case)
    return out


def with_topic(case: Hostile, topic: str) -> Hostile:
    return replace(case, topic=topic)
