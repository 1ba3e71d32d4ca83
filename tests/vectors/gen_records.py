"""Generate ``records.json``: language-neutral test vectors for docs/RECORD-FORMAT.md, §1-4.

``build()`` returns the vectors as a JSON-ready dict; it is deterministic (Ed25519 signatures
are, keys come from :func:`protocol.testing.seed`, every timestamp is fixed), so the checked-in
file can be compared with a fresh build (``tests/protocol/test_vectors.py`` does). Run this file
to rewrite ``records.json`` next to it; ``scripts/gen-vectors`` calls ``build()`` the same way.

Invalid vectors are built so that, as far as possible, only the rule they name is broken: the
map is encoded by hand and signed by its author, so the signature is valid over the broken
content. Types the canonical encoder refuses to write (nil, bool, float, ext) and deliberately
non-canonical forms are written with ``msgpack`` or by patching bytes, then signed the same way.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

if __name__ == "__main__":  # ``python tests/vectors/gen_records.py``, without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import codec, testing
from protocol.attest import ClaimBody, ClaimConfirmationBody, email_handle
from protocol.record import (
    CONTRIBUTION_TYPES,
    SIGNING_DOMAIN,
    UNSCOPED_KINDS,
    Artifact,
    Body,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    Record,
    RetractionBody,
    sign_record,
)
from protocol.signing import SigningKey
from protocol.sshsig import claim_message, key_fingerprint, sign_proof
from protocol.validation import MAX_CLOCK_SKEW_MS, topic_of

__all__ = ["FORMAT", "NOW_MS", "OUTPUT", "build", "render"]


def _sibling(name: str) -> Any:
    """A generator module beside this one (this file is loaded by path, not as a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_identity = _sibling("gen_identity")

FORMAT = "commons-record-v1"
OUTPUT = Path(__file__).with_name("records.json")
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
# JSON forms


def _plain(value: object) -> Any:
    """A decoded record in JSON: byte strings as lowercase hex, everything else as is."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _typed(value: object) -> Any:
    """A plain value in tagged JSON, unambiguous in any language (see README.md)."""
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bin": value.hex()}
    if isinstance(value, list):
        return {"array": [_typed(item) for item in value]}
    assert isinstance(value, dict)
    ordered = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
    return {"map": [[key, _typed(item)] for key, item in ordered]}


# --------------------------------------------------------------------------------------------
# Hand-built records

_SIGN: Any = object()


def _sorted(value: object) -> object:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]).encode("utf-8"))
        return {key: _sorted(item) for key, item in items}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def pack_loose(value: object) -> bytes:
    """Shortest-form MessagePack with sorted keys, but any type (nil, bool, float, ext)."""
    return msgpack.packb(_sorted(value), use_bin_type=True)


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


# --------------------------------------------------------------------------------------------
# Valid vectors


def _valid_records() -> list[tuple[str, Record, int]]:
    """(description, record, now_ms) of every valid vector."""
    out: list[tuple[str, Record, int]] = []
    ts = TS

    def add(description: str, key: SigningKey, body: Body, project: bytes | None = None) -> Record:
        nonlocal ts
        ts += 1_000
        record = sign_record(key, body=body, ts=ts, project=project)
        out.append((description, record, NOW_MS))
        return record

    genesis = add("project, name only", ALICE, ProjectBody(name="Wikispeed"))
    pid = genesis.id
    add(
        "project with every optional field, multibyte text",
        ALICE,
        ProjectBody(
            name="Fahrradwerkstatt Zürich – Lastenrad",
            description="Ein offenes Lastenrad. 開放ハードウェア. Ünïcödé ✓",
            license="CERN-OHL-S-2.0 OR Apache-2.0",
            links=("https://example.org/cargo", "https://example.org/日本"),
            tags=("hardware", "vélo", "自転車"),
            maintainers=(BOB.public_key, CAROL.public_key),
        ),
    )
    add(
        "project at every upper limit (name 100 bytes, description 4000, license 64, "
        "16 links one of 2000 bytes, 16 tags of 32 bytes, 64 maintainers)",
        ALICE,
        ProjectBody(
            name=text_of(100),
            description=text_of(4000),
            license="L" * 64,
            links=(text_of(2000), *(f"https://example.org/{i}" for i in range(15))),
            tags=tuple("😀" * 7 + "abc" + chr(0x41 + i) for i in range(16)),
            maintainers=tuple(testing.key(f"maintainer-{i}").public_key for i in range(64)),
        ),
    )
    add(
        "project with 1-byte name and empty description (lower limits)",
        BOB,
        ProjectBody(name="x", description="", license="0", links=("/",), tags=("t",)),
    )
    add(
        "project-update setting every field",
        ALICE,
        ProjectUpdateBody(
            set=ProjectFields(
                name="Wikispeed SGT01",
                description="",
                license="MIT",
                links=("https://wikispeed.org",),
                tags=("car", "modular"),
            )
        ),
        pid,
    )
    add(
        "project-update adding maintainers only",
        ALICE,
        ProjectUpdateBody(add_maintainers=(BOB.public_key, CAROL.public_key)),
        pid,
    )
    add(
        "project-update with set, add_maintainers and remove_maintainers",
        ALICE,
        ProjectUpdateBody(
            set=ProjectFields(tags=("car",)),
            add_maintainers=(CAROL.public_key,),
            remove_maintainers=(BOB.public_key,),
        ),
        pid,
    )
    add(
        "project-update with the same key twice in add_maintainers (allowed)",
        ALICE,
        ProjectUpdateBody(add_maintainers=(BOB.public_key, BOB.public_key)),
        pid,
    )
    contrib = add(
        "contribution, required fields only",
        BOB,
        ContributionBody(type="code", title="Chassis CAD"),
        pid,
    )
    add(
        "contribution with every optional field",
        BOB,
        ContributionBody(
            type="fabrication",
            title="Welded the front module ✓",
            description="Two evenings in the shop; 溶接.",
            effort_minutes=240,
            artifacts=(
                Artifact(uri="https://example.org/photo.jpg", digest="sha256:" + "0" * 64),
                Artifact(uri="ipfs://bafy"),
            ),
            coauthors=(ALICE.public_key, CAROL.public_key),
        ),
        pid,
    )
    add(
        "contribution at the limits: effort 1000000, title 200 bytes, 32 coauthors",
        BOB,
        ContributionBody(
            type="other",
            title=text_of(200),
            effort_minutes=1_000_000,
            coauthors=tuple(testing.key(f"coauthor-{i}").public_key for i in range(32)),
        ),
        pid,
    )
    add(
        "contribution with effort_minutes 0 and an empty description",
        BOB,
        ContributionBody(type="review", title="Looked", effort_minutes=0, description=""),
        pid,
    )
    add(
        "contribution with a 31-byte title (fixstr) and 255-byte description (str8)",
        BOB,
        ContributionBody(type="docs", title="t" * 31, description="d" * 255),
        pid,
    )
    add(
        "contribution with a 32-byte title (str8) and 256-byte description (str16)",
        BOB,
        ContributionBody(type="docs", title="t" * 32, description="d" * 256),
        pid,
    )
    for kind in sorted(CONTRIBUTION_TYPES):
        add(f"contribution of type {kind}", CAROL, ContributionBody(type=kind, title=kind), pid)
    add("endorsement, target only", ALICE, EndorsementBody(target=contrib.id), pid)
    add(
        "endorsement with weight 10 and a multibyte comment",
        ALICE,
        EndorsementBody(target=contrib.id, weight=10, comment="Sehr gut — très bien"),
        pid,
    )
    add("endorsement with weight 1", CAROL, EndorsementBody(target=contrib.id, weight=1), pid)
    add("retraction, target only", BOB, RetractionBody(target=contrib.id), pid)
    add(
        "retraction with a 1000-byte reason",
        BOB,
        RetractionBody(target=contrib.id, reason=text_of(1000)),
        pid,
    )
    add("profile, name only", ALICE, ProfileBody(name="Alice"))
    add(
        "profile with about and links",
        BOB,
        ProfileBody(name="Bob 🔧", about=text_of(2000), links=("https://bob.example",)),
    )
    # Characters: newline and tab in multi-line fields, and the characters just outside the
    # refused ranges (U+0020, U+007E, U+00A0, U+200E, U+2027, U+202F, U+2065, U+206A).
    add(
        "contribution whose description holds newlines and a tab (a multi-line field)",
        BOB,
        ContributionBody(
            type="docs", title="Assembly guide", description="Steps:\n\t1. cut\n\t2. weld\n"
        ),
        pid,
    )
    add(
        "profile whose about holds newlines; name with the neighbours of refused characters",
        CAROL,
        ProfileBody(name="~ \u00a0\u200e\u2027\u202f\u2065\u206a", about="Carol\n\nMaker\tWelder"),
    )
    # Attested contributions and claims (sections 4.10, 4.11).
    add(
        "attested contribution on behalf of an email, a forge user and an ORCID",
        ALICE,
        ContributionBody(
            type="code",
            title="Import: fix the brake",
            artifacts=(Artifact(uri="https://git.example/wikispeed#3f2a9c"),),
            on_behalf=(
                email_handle(b"Carol@Example.org"),
                "forge:github.com/dave-k",
                "orcid:0000-0002-1825-0097",
            ),
        ),
        pid,
    )
    claim = add("claim of a forge handle", BOB, ClaimBody(handle="forge:github.com/bob"), pid)
    add("claim-confirmation", ALICE, ClaimConfirmationBody(claim=claim.id), pid)
    # The identity kinds and kinds this library does not know (gen_identity.py).
    for description, record in gen_identity.valid_records(ts, pid):
        out.append((description, record, NOW_MS))
    # Records whose validity depends on the clock or on the size limit.
    out.append(
        (
            "ts 0 (the epoch)",
            sign_record(ALICE, body=ProfileBody(name="Alice"), ts=0),
            NOW_MS,
        )
    )
    out.append(
        (
            "ts exactly 10 minutes ahead of the validating clock",
            sign_record(ALICE, body=ProfileBody(name="Alice"), ts=NOW_MS + MAX_CLOCK_SKEW_MS),
            NOW_MS,
        )
    )
    # SSH-proven claims (sections 4.3, 4.11), added after the others so their ts stay.
    add(
        "attested contribution of a commit signed with an SSH key (ssh_key)",
        ALICE,
        ContributionBody(
            type="code",
            title="Import: signed commit",
            on_behalf=("forge:github.com/bob",),
            ssh_key=key_fingerprint(BOB_SSH.public_key),
        ),
        pid,
    )
    proof = sign_proof(BOB_SSH, claim_message(BOB.public_key, pid, "forge:github.com/bob"))
    add(
        "claim proven by an SSH signature (proof)",
        BOB,
        ClaimBody(handle="forge:github.com/bob", proof=proof),
        pid,
    )
    return out


def _max_size_record() -> Record:
    raw = sized_contribution(codec.MAX_SIZE)
    value = codec.decode(raw)
    assert isinstance(value, dict)
    return Record.from_value(value)


def _valid() -> list[dict[str, Any]]:
    records = _valid_records()
    records.append(
        ("contribution of exactly 65536 bytes (the size limit)", _max_size_record(), NOW_MS)
    )
    return [
        {
            "description": description,
            "kind": record.kind,
            "now_ms": now_ms,
            "hex": record.raw.hex(),
            "id": record.id_hex,
            "signing_input_hex": record.signing_input().hex(),
            "decoded": _plain(record.to_value()),
        }
        for description, record, now_ms in records
    ]


# --------------------------------------------------------------------------------------------
# Invalid vectors


def _sign_small_order() -> bytes:
    """The forgery OpenSSL accepts: identity public key, R = identity, S = 0."""
    identity = bytes([1]) + bytes(31)
    value = base("profile", author=identity)
    return forge(value, sig=identity + bytes(32))


def _sign_s_plus_l() -> bytes:
    value = base("profile")
    sig = ALICE.sign(SIGNING_DOMAIN + codec.encode(value))
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    return forge(value, sig=sig[:32] + s.to_bytes(32, "little"))


def _flipped_sig() -> bytes:
    value = base("profile")
    sig = bytearray(ALICE.sign(SIGNING_DOMAIN + codec.encode(value)))
    sig[10] ^= 0x01
    return forge(value, sig=bytes(sig))


def _nested(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _invalid() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def case(description: str, raw: bytes, error: str, now_ms: int | None = NOW_MS) -> None:
        cases.append(
            {"description": description, "hex": raw.hex(), "error": error, "now_ms": now_ms}
        )

    good = forge(base("profile"))
    title = (b"\xa5title\xabChassis CAD", b"\xa5title")
    endorse = {"target": TARGET_ID, "weight": 1.0}

    # Size and framing of the encoding.
    case("a validly signed record of 65537 bytes", sized_contribution(65_537), "too-large")
    case("empty input", b"", "truncated")
    case("a valid record without its last byte", good[:-1], "truncated")
    case("a map declaring 2**32-1 entries in 5 bytes", bytes.fromhex("dfffffffff"), "truncated")
    case("a valid record followed by one zero byte", good + b"\x00", "trailing-bytes")
    case(
        "description nested 9 levels deep (record, body, 7 arrays)",
        forge(contribution(description=_nested(7)), pack=pack_loose),
        "too-deep",
    )
    # Types MessagePack has and the format forbids.
    case(
        "description nil", forge(contribution(description=None), pack=pack_loose), "forbidden-type"
    )
    case(
        "effort_minutes true (0xc3)",
        forge(contribution(effort_minutes=True), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "effort_minutes false (0xc2)",
        forge(contribution(effort_minutes=False), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "weight as float64 1.0",
        forge(base("endorsement", endorse), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "weight as float32 1.0",
        forge(
            base("endorsement", endorse),
            pack=lambda v: msgpack.packb(_sorted(v), use_bin_type=True, use_single_float=True),
        ),
        "forbidden-type",
    )
    case(
        "an ext value as description",
        forge(contribution(description=msgpack.ExtType(1, b"x")), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "the reserved byte 0xc1 as the title",
        forge(contribution(), patch=(title[0], title[1] + b"\xc1")),
        "forbidden-type",
    )
    # Canonical form.
    case(
        "record keys in insertion order, not sorted",
        forge(base("profile"), pack=pack_unsorted),
        "not-canonical",
    )
    case(
        "v encoded as uint8 (cc 01)",
        forge(base("profile"), patch=(b"\xa1v\x01", b"\xa1v\xcc\x01")),
        "not-canonical",
    )
    case(
        "title encoded as str8 although it fits fixstr",
        forge(contribution(), patch=(title[0], title[1] + b"\xd9\x0bChassis CAD")),
        "not-canonical",
    )
    case(
        "author encoded as bin16",
        forge(base("profile"), patch=(b"\xa6author\xc4\x20", b"\xa6author\xc5\x00\x20")),
        "not-canonical",
    )
    case(
        "body key title written twice (the second in place of type)",
        forge(contribution(), patch=(b"\xa4type", b"\xa5title")),
        "not-canonical",
    )
    case(
        "an integer as a body key",
        forge(contribution(), patch=(b"\xa4type", b"\x01")),
        "not-canonical",
    )
    case(
        "a one-item tags list encoded as array16",
        forge(
            base("project", {"name": "P", "tags": ["t"]}),
            patch=(b"\xa4tags\x91", b"\xa4tags\xdc\x00\x01"),
        ),
        "not-canonical",
    )
    case(
        "ts 5 encoded as uint64",
        forge(base("profile", ts=5), patch=(b"\xa2ts\x05", b"\xa2ts\xcf" + (5).to_bytes(8, "big"))),
        "not-canonical",
    )
    # UTF-8.
    case(
        "title with an overlong encoding of NUL (c0 80)",
        forge(contribution(), patch=(title[0], title[1] + b"\xa2\xc0\x80")),
        "bad-utf8",
    )
    case(
        "title with an encoded surrogate (ed a0 80)",
        forge(contribution(), patch=(title[0], title[1] + b"\xa3\xed\xa0\x80")),
        "bad-utf8",
    )
    # Section 1: the record map.
    case("an array instead of a map", codec.encode([1, 2, 3]), "not-a-map")
    case("v is 2", forge(base("profile", v=2)), "bad-version")
    case("v is 0", forge(base("profile", v=0)), "bad-version")
    case("v is the string 1", forge(base("profile", v="1")), "bad-version")
    # Kind names, and the identity kinds (gen_identity.py).
    for description, raw, error in gen_identity.invalid_records(base, forge, BASE_BODIES):
        case(description, raw, error)
    case("kind as bin", forge(base("profile", kind=b"profile")), "bad-type:kind")
    case("an extra record key", forge(base("profile", extra=1)), "unknown-field:extra")
    case("no sig", forge(base("profile"), sig=None), "missing-field:sig")
    for name in ("v", "kind", "author", "ts", "body"):
        value = base("profile")
        del value[name]
        case(f"no {name}", forge(value), f"missing-field:{name}")
    case("a contribution without project", forge(base(project=None)), "missing-field:project")
    case(
        "a project record with a project key",
        forge(base("project", project=PROJECT_ID)),
        "unexpected-field:project",
    )
    case(
        "a profile record with a project key",
        forge(base("profile", project=PROJECT_ID)),
        "unexpected-field:project",
    )
    case("author of 31 bytes", forge(base("profile", author=bytes(31))), "bad-length:author")
    case("author of 33 bytes", forge(base("profile", author=bytes(33))), "bad-length:author")
    case("author as str", forge(base("profile", author="alice")), "bad-type:author")
    case("project of 33 bytes", forge(base(project=bytes(33))), "bad-length:project")
    case("project as int", forge(base(project=7)), "bad-type:project")
    case("sig of 63 bytes", forge(base("profile"), sig=bytes(63)), "bad-length:sig")
    case("sig of 65 bytes", forge(base("profile"), sig=bytes(65)), "bad-length:sig")
    case("sig as str", forge(base("profile"), sig="signature"), "bad-type:sig")
    case("ts -1", forge(base("profile", ts=-1)), "bad-timestamp")
    case("ts 2**63 (uint64)", forge(base("profile", ts=2**63)), "bad-timestamp")
    case("ts 2**64-1", forge(base("profile", ts=2**64 - 1)), "bad-timestamp")
    case("ts -2**63", forge(base("profile", ts=-(2**63))), "bad-timestamp")
    case("ts as str", forge(base("profile", ts="1735689600000")), "bad-type:ts")
    case(
        "ts 10 minutes and 1 ms ahead of the clock",
        forge(base("profile", ts=NOW_MS + MAX_CLOCK_SKEW_MS + 1)),
        "future-timestamp",
    )
    case("body as an array", forge(base("profile", body=["Alice"])), "bad-type:body")
    # Section 4: bodies, key by key.
    case("an unknown body key", forge(contribution(color="red")), "unknown-field:color")
    case("contribution without title", forge(base(body={"type": "code"})), "missing-field:title")
    case("project without name", forge(base("project", {})), "missing-field:name")
    case(
        "endorsement without target",
        forge(base("endorsement", {"weight": 2})),
        "missing-field:target",
    )
    case("title as int", forge(contribution(title=5)), "bad-type:title")
    case("links as str", forge(base("project", {"name": "P", "links": "x"})), "bad-type:links")
    case(
        "target of 31 bytes", forge(base("endorsement", {"target": bytes(31)})), "bad-length:target"
    )
    case(
        "target of 33 bytes", forge(base("retraction", {"target": bytes(33)})), "bad-length:target"
    )
    case(
        "a maintainer key of 31 bytes",
        forge(base("project", {"name": "P", "maintainers": [bytes(31)]})),
        "bad-length:maintainers",
    )
    case(
        "a coauthor key of 33 bytes",
        forge(contribution(coauthors=[bytes(33)])),
        "bad-length:coauthors",
    )
    case(
        "an add_maintainers key as str",
        forge(base("project-update", {"add_maintainers": ["bob"]})),
        "bad-type:add_maintainers",
    )
    case("project name empty", forge(base("project", {"name": ""})), "field-too-short:name")
    case(
        "license empty",
        forge(base("project", {"name": "P", "license": ""})),
        "field-too-short:license",
    )
    case(
        "an empty tag",
        forge(base("project", {"name": "P", "tags": ["ok", ""]})),
        "field-too-short:tags",
    )
    case(
        "artifact digest empty",
        forge(contribution(artifacts=[{"uri": "u", "digest": ""}])),
        "field-too-short:artifacts.digest",
    )
    for kind, path, limit, body in (
        ("project", "name", 100, lambda s: {"name": s}),
        ("project", "license", 64, lambda s: {"name": "P", "license": s}),
        ("project", "tags", 32, lambda s: {"name": "P", "tags": [s]}),
        ("project", "description", 4000, lambda s: {"name": "P", "description": s}),
        ("project-update", "set.name", 100, lambda s: {"set": {"name": s}}),
        ("project-update", "set.links", 2000, lambda s: {"set": {"links": [s]}}),
        ("contribution", "title", 200, lambda s: {"type": "code", "title": s}),
        (
            "contribution",
            "artifacts.uri",
            2000,
            lambda s: {"type": "code", "title": "t", "artifacts": [{"uri": s}]},
        ),
        ("endorsement", "comment", 1000, lambda s: {"target": TARGET_ID, "comment": s}),
        ("retraction", "reason", 1000, lambda s: {"target": TARGET_ID, "reason": s}),
        ("profile", "about", 2000, lambda s: {"name": "A", "about": s}),
        ("profile", "links", 2000, lambda s: {"name": "A", "links": [s]}),
    ):
        case(
            f"{kind} {path} of {limit + 1} UTF-8 bytes (multibyte characters)",
            forge(base(kind, body(text_of(limit + 1)))),
            f"field-too-long:{path}",
        )
    # Characters a terminal would act on (docs/RECORD-FORMAT.md section 4, "Characters").
    for description, kind, body, error in (
        ("project name with ESC", "project", {"name": "P\x1b[2J"}, "control-char:name"),
        (
            "title with a clear-screen sequence",
            "contribution",
            {"type": "code", "title": "\x1b[2J\x1b[H"},
            "control-char:title",
        ),
        (
            "set.name with NUL",
            "project-update",
            {"set": {"name": "a\x00b"}},
            "control-char:set.name",
        ),
        ("a tag with DEL", "project", {"name": "P", "tags": ["ok", "t\x7f"]}, "control-char:tags"),
        (
            "license with a tab",
            "project",
            {"name": "P", "license": "MIT\tOR"},
            "control-char:license",
        ),
        (
            "artifact digest with the C1 CSI U+009B",
            "contribution",
            {"type": "code", "title": "t", "artifacts": [{"uri": "u", "digest": "sha256:\x9b31m"}]},
            "control-char:artifacts.digest",
        ),
        (
            "project description with ESC (multi-line fields refuse it too)",
            "project",
            {"name": "P", "description": "a\n\x1b]0;title\x07"},
            "control-char:description",
        ),
        (
            "endorsement comment with BEL",
            "endorsement",
            {"target": TARGET_ID, "comment": "ding\x07"},
            "control-char:comment",
        ),
        (
            "title with a newline",
            "contribution",
            {"type": "code", "title": "Chassis\nCAD"},
            "line-break:title",
        ),
        (
            "a link with CR",
            "project",
            {"name": "P", "links": ["https://a.example/\r"]},
            "line-break:links",
        ),
        (
            "contribution description with CR LF",
            "contribution",
            {"type": "code", "title": "t", "description": "one\r\ntwo"},
            "line-break:description",
        ),
        (
            "profile about with U+2028 LINE SEPARATOR",
            "profile",
            {"name": "A", "about": "a\u2028b"},
            "line-break:about",
        ),
        (
            "retraction reason with NEL U+0085",
            "retraction",
            {"target": TARGET_ID, "reason": "a\x85b"},
            "line-break:reason",
        ),
        (
            "profile name with U+202E RIGHT-TO-LEFT OVERRIDE",
            "profile",
            {"name": "\u202eecilA"},
            "bidi-control:name",
        ),
        (
            "artifact uri with U+2066 LEFT-TO-RIGHT ISOLATE",
            "contribution",
            {"type": "code", "title": "t", "artifacts": [{"uri": "https://a.example/\u2066x"}]},
            "bidi-control:artifacts.uri",
        ),
        (
            "set.description with U+2069 POP DIRECTIONAL ISOLATE",
            "project-update",
            {"set": {"description": "a\n\u2069"}},
            "bidi-control:set.description",
        ),
        (
            "project description with U+202A LEFT-TO-RIGHT EMBEDDING",
            "project",
            {"name": "P", "description": "\u202aabc"},
            "bidi-control:description",
        ),
    ):
        case(description, forge(base(kind, body)), error)
    case("links empty", forge(base("project", {"name": "P", "links": []})), "empty-list:links")
    case(
        "maintainers empty",
        forge(base("project", {"name": "P", "maintainers": []})),
        "empty-list:maintainers",
    )
    case("set empty", forge(base("project-update", {"set": {}})), "empty-list:set")
    case("artifacts empty", forge(contribution(artifacts=[])), "empty-list:artifacts")
    case("coauthors empty", forge(contribution(coauthors=[])), "empty-list:coauthors")
    case(
        "17 tags",
        forge(base("project", {"name": "P", "tags": [f"t{i}" for i in range(17)]})),
        "too-many:tags",
    )
    case(
        "65 maintainers",
        forge(base("project", {"name": "P", "maintainers": _keys(65)})),
        "too-many:maintainers",
    )
    case("33 coauthors", forge(contribution(coauthors=_keys(33))), "too-many:coauthors")
    case(
        "33 artifacts",
        forge(contribution(artifacts=[{"uri": f"u{i}"} for i in range(33)])),
        "too-many:artifacts",
    )
    case(
        "the same maintainer twice",
        forge(base("project", {"name": "P", "maintainers": [BOB.public_key] * 2})),
        "duplicate:maintainers",
    )
    case(
        "the same coauthor twice",
        forge(contribution(coauthors=[BOB.public_key, CAROL.public_key, BOB.public_key])),
        "duplicate:coauthors",
    )
    case(
        "the author as a coauthor",
        forge(contribution(coauthors=[BOB.public_key, ALICE.public_key])),
        "coauthor-is-author",
    )
    case("effort_minutes -1", forge(contribution(effort_minutes=-1)), "out-of-range:effort_minutes")
    case(
        "effort_minutes 1000001",
        forge(contribution(effort_minutes=1_000_001)),
        "out-of-range:effort_minutes",
    )
    case(
        "weight 0",
        forge(base("endorsement", {"target": TARGET_ID, "weight": 0})),
        "out-of-range:weight",
    )
    case(
        "weight 11",
        forge(base("endorsement", {"target": TARGET_ID, "weight": 11})),
        "out-of-range:weight",
    )
    case("type coding", forge(contribution(type="coding")), "bad-value:type")
    case("type Code (case matters)", forge(contribution(type="Code")), "bad-value:type")
    case("a project-update with an empty body", forge(base("project-update", {})), "empty-update")
    case(
        "set with maintainers",
        forge(base("project-update", {"set": {"maintainers": [BOB.public_key]}})),
        "unknown-field:set.maintainers",
    )
    case("set as str", forge(base("project-update", {"set": "name"})), "bad-type:set")
    case(
        "an artifact with an unknown key",
        forge(contribution(artifacts=[{"uri": "u", "size": 3}])),
        "unknown-field:artifacts.size",
    )
    case(
        "an artifact without uri",
        forge(contribution(artifacts=[{"digest": "sha256:00"}])),
        "missing-field:artifacts.uri",
    )
    case("an artifact as str", forge(contribution(artifacts=["u"])), "bad-type:artifacts")
    # Section 3: signatures.
    case("signed by bob, author alice", forge(base("profile"), BOB), "bad-signature")
    case("one bit of the signature flipped", _flipped_sig(), "bad-signature")
    case(
        "small-order public key 01 00..00 with R = identity, S = 0 (OpenSSL accepts it)",
        _sign_small_order(),
        "bad-signature",
    )
    case("non-canonical S (S + L)", _sign_s_plus_l(), "bad-signature")
    case(
        "signed without the commons-record-v1 domain prefix",
        forge(base("profile"), domain=b""),
        "bad-signature",
    )
    case(
        "signed over a different ts",
        forge(
            base("profile"),
            sig=ALICE.sign(SIGNING_DOMAIN + codec.encode(base("profile", ts=TS + 1))),
        ),
        "bad-signature",
    )
    case("an all-zero signature", forge(base("profile"), sig=bytes(64)), "bad-signature")
    # Attested contributions and claims (sections 4.10, 4.11).
    handle = email_handle(b"carol@example.org")
    case(
        "on_behalf with an email in clear (handles hash it)",
        forge(contribution(on_behalf=["email:carol@example.org"])),
        "bad-value:on_behalf",
    )
    case(
        "on_behalf with an ORCID whose check digit is wrong",
        forge(contribution(on_behalf=["orcid:0000-0002-1825-0098"])),
        "bad-value:on_behalf",
    )
    case(
        "on_behalf names one handle twice",
        forge(contribution(on_behalf=[handle, handle])),
        "duplicate:on_behalf",
    )
    case(
        "on_behalf with 34 handles",
        forge(contribution(on_behalf=[f"forge:x.org/u{i}" for i in range(34)])),
        "too-many:on_behalf",
    )
    case("on_behalf empty", forge(contribution(on_behalf=[])), "empty-list:on_behalf")
    case(
        "an attested contribution with coauthors",
        forge(contribution(on_behalf=[handle], coauthors=[BOB.public_key])),
        "on-behalf-with-coauthors",
    )
    case(
        "claim of a forge handle with an upper-case host",
        forge(base("claim", {"handle": "forge:GitHub.com/bob"})),
        "bad-value:handle",
    )
    case(
        "claim with a body key it does not allow",
        forge(base("claim", {"handle": "forge:github.com/bob", "note": "x"})),
        "unknown-field:note",
    )
    bob = "forge:github.com/bob"
    good_proof = sign_proof(BOB_SSH, claim_message(ALICE.public_key, PROJECT_ID, bob))
    case(
        "claim proof as text",
        forge(base("claim", {"handle": bob, "proof": "x"})),
        "bad-type:proof",
    )
    case(
        "claim proof one byte short",
        forge(base("claim", {"handle": bob, "proof": good_proof[:-1]})),
        "bad-length:proof",
    )
    case(
        "claim proof made in another SSH signature namespace",
        forge(
            base(
                "claim",
                {"handle": bob, "proof": good_proof.replace(b"commons-claim", b"commons-claix")},
            )
        ),
        "bad-value:proof",
    )
    case(
        "claim proof with a hash other than sha512 or sha256",
        forge(base("claim", {"handle": bob, "proof": good_proof.replace(b"sha512", b"sha384")})),
        "bad-value:proof",
    )
    case(
        "claim proof that signed another handle",
        forge(base("claim", {"handle": "forge:github.com/bobby", "proof": good_proof})),
        "bad-proof",
    )
    case(
        "claim proof that signed for another claimant",
        forge(
            base("claim", {"handle": bob, "proof": good_proof}),
            BOB,
            patch=(ALICE.public_key, BOB.public_key),
        ),
        "bad-proof",
    )
    case(
        "ssh_key on a contribution that is not attested",
        forge(contribution(ssh_key=key_fingerprint(BOB_SSH.public_key))),
        "ssh-key-without-on-behalf",
    )
    case(
        "ssh_key of 31 bytes",
        forge(contribution(on_behalf=[bob], ssh_key=bytes(31))),
        "bad-length:ssh_key",
    )
    case(
        "claim-confirmation of a 31-byte id",
        forge(base("claim-confirmation", {"claim": bytes(31)})),
        "bad-length:claim",
    )
    case(
        "claim without a project",
        forge(base("claim", project=None)),
        "missing-field:project",
    )
    return cases


def _keys(n: int) -> list[bytes]:
    return [testing.key(f"maintainer-{i}").public_key for i in range(n)]


# --------------------------------------------------------------------------------------------
# Topics and plain codec values


def _topics() -> list[dict[str, Any]]:
    """The gossip topic of the first valid record of each kind."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, record, _ in _valid_records():
        if record.kind not in seen:
            seen.add(record.kind)
            out.append(
                {
                    "description": f"a {record.kind} record",
                    "hex": record.raw.hex(),
                    "topic": topic_of(record),
                }
            )
    return out


CANONICAL_VALUES: list[tuple[str, object]] = [
    ("positive fixint 0", 0),
    ("positive fixint 127", 127),
    ("uint8 128", 128),
    ("uint8 255", 255),
    ("uint16 256", 256),
    ("uint16 65535", 65535),
    ("uint32 65536", 65536),
    ("uint32 2**32-1", 2**32 - 1),
    ("uint64 2**32", 2**32),
    ("uint64 2**64-1", 2**64 - 1),
    ("negative fixint -1", -1),
    ("negative fixint -32", -32),
    ("int8 -33", -33),
    ("int8 -128", -128),
    ("int16 -129", -129),
    ("int16 -32768", -32768),
    ("int32 -32769", -32769),
    ("int32 -2**31", -(2**31)),
    ("int64 -2**31-1", -(2**31) - 1),
    ("int64 -2**63", -(2**63)),
    ("fixstr empty", ""),
    ("fixstr 31 bytes", "a" * 31),
    ("str8 32 bytes", "a" * 32),
    ("str8 multibyte é×16 (32 bytes)", "é" * 16),
    ("str16 256 bytes", "a" * 256),
    ("bin8 empty", b""),
    ("bin8 3 bytes", b"\x00\x01\xff"),
    ("bin16 256 bytes", bytes(256)),
    ("fixarray empty", []),
    ("fixarray 15 items", list(range(15))),
    ("array16 16 items", list(range(16))),
    ("fixmap empty", {}),
    ("fixmap keys sorted bytewise: B < a < aa < b", {"b": 1, "aa": 2, "a": 3, "B": 4}),
    ("fixmap keys sorted by UTF-8 bytes: z < é < 日", {"日": 1, "é": 2, "z": 3}),
    ("map16 16 entries", {f"k{i:02d}": i for i in range(16)}),
    ("nesting depth 8", _nested(8)),
]

NON_CANONICAL: list[tuple[str, str, str]] = [
    ("uint8 for 5", "cc05", "not-canonical"),
    ("uint16 for 255", "cd00ff", "not-canonical"),
    ("uint32 for 65535", "ce0000ffff", "not-canonical"),
    ("uint64 for 2**32-1", "cf00000000ffffffff", "not-canonical"),
    ("int8 for -32", "d0e0", "not-canonical"),
    ("int8 for +5", "d005", "not-canonical"),
    ("int16 for -128", "d1ff80", "not-canonical"),
    ("int32 for -32768", "d2ffff8000", "not-canonical"),
    ("int64 for -2**31", "d3ffffffff80000000", "not-canonical"),
    ("str8 for a 3-byte string", "d903616263", "not-canonical"),
    ("str16 for a 1-byte string", "da000161", "not-canonical"),
    ("bin16 for 1 byte", "c5000161", "not-canonical"),
    ("bin32 for 1 byte", "c60000000161", "not-canonical"),
    ("array16 for 1 item", "dc000101", "not-canonical"),
    ("array32 for 1 item", "dd0000000101", "not-canonical"),
    ("map16 for 1 entry", "de0001a16101", "not-canonical"),
    ("map keys out of order", "82a16201a16102", "not-canonical"),
    ("duplicate map key", "82a16101a16102", "not-canonical"),
    ("int map key", "810101", "not-canonical"),
    ("bin map key", "81c4016101", "not-canonical"),
    ("nil", "c0", "forbidden-type"),
    ("false", "c2", "forbidden-type"),
    ("true", "c3", "forbidden-type"),
    ("float32", "ca3f800000", "forbidden-type"),
    ("float64", "cb3ff0000000000000", "forbidden-type"),
    ("fixext1", "d40100", "forbidden-type"),
    ("ext8", "c7010100", "forbidden-type"),
    ("reserved 0xc1", "c1", "forbidden-type"),
    ("overlong UTF-8", "a2c080", "bad-utf8"),
    ("UTF-8 surrogate", "a3eda080", "bad-utf8"),
    ("trailing byte", "0000", "trailing-bytes"),
    ("empty input", "", "truncated"),
    ("array32 declaring 2**32-1 items", "ddffffffff", "truncated"),
    ("str32 declaring 2**32-1 bytes", "dbffffffff", "truncated"),
    ("nesting depth 9", "91" * 8 + "90", "too-deep"),
]


def _codec() -> dict[str, Any]:
    return {
        "canonical": [
            {"description": d, "hex": codec.encode(v).hex(), "value": _typed(v)}
            for d, v in CANONICAL_VALUES
        ],
        "invalid": [{"description": d, "hex": h, "error": e} for d, h, e in NON_CANONICAL],
    }


# --------------------------------------------------------------------------------------------


def build() -> dict[str, Any]:
    """Every vector, as a JSON-ready dict; deterministic."""
    return {
        "format": FORMAT,
        "keys": [
            {
                "name": name,
                "seed": testing.seed(name).hex(),
                "public_key": testing.key(name).public_key.hex(),
                "peer_id": testing.key(name).peer_id,
            }
            for name in KEY_NAMES
        ],
        "valid": _valid(),
        "invalid": _invalid(),
        "topics": _topics(),
        "codec": _codec(),
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    OUTPUT.write_text(render(build()), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
