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

import json
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # ``python tests/vectors/gen_records.py``, without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol import codec, testing
from protocol.attest import ClaimBody, ClaimConfirmationBody, email_handle
from protocol.record import (
    CONTRIBUTION_TYPES,
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

# The generators beside this file are plain modules, not a package: this file runs as a script
# and is loaded by path (tests/protocol/test_vectors.py), so its own folder goes on the path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_identity
import gen_invalid
from vector_kit import (
    ALICE,
    BOB,
    BOB_SSH,
    CAROL,
    KEY_NAMES,
    NOW_MS,
    TS,
    nested,
    sized_contribution,
    text_of,
)

__all__ = ["FORMAT", "NOW_MS", "OUTPUT", "build", "render"]


FORMAT = "commons-record-v1"
OUTPUT = Path(__file__).with_name("records.json")


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
    ("nesting depth 8", nested(8)),
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
        "invalid": gen_invalid.invalid(),
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
