"""The record classes (docs/RECORD-FORMAT.md §1, 3, 4) and the test factories.

Records built by the library must sign, encode and parse back equal; a class must refuse to be
built with content that breaks a rule, so an invalid ``Record`` cannot exist. The hostile-bytes
side of the same rules is in ``test_validation.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from protocol import codec
from protocol.attest import ClaimBody, ClaimConfirmationBody
from protocol.errors import InvalidRecord, RemoteProtocolError
from protocol.identity_records import DeviceLinkBody, DeviceRevokeBody, join_body
from protocol.record import (
    CONTRIBUTION_TYPES,
    KINDS,
    MAX_RECORD_SIZE,
    SIGNING_DOMAIN,
    UNSCOPED_KINDS,
    Artifact,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    Record,
    RetractionBody,
    decode_trusted,
    id_hex,
    parse_id_prefix,
    record_id,
    resolve_prefix,
    sign_record,
    signing_input,
)
from protocol.signing import verify
from protocol.testing import EPOCH_MS, RecordFactory, key
from protocol.validation import parse_record

ALICE = key("alice")
BOB = key("bob")
CAROL = key("carol")
TS = EPOCH_MS + 5_000
PROJECT = hashlib.sha256(b"a project").digest()
TARGET = hashlib.sha256(b"a contribution").digest()


def code_of(excinfo: pytest.ExceptionInfo[InvalidRecord]) -> str:
    return excinfo.value.code


def every_kind() -> list[Record]:
    """One fully populated record of each kind, plus minimal ones."""
    return [
        sign_record(ALICE, body=ProjectBody(name="Wikispeed"), ts=TS),
        sign_record(
            ALICE,
            body=ProjectBody(
                name="Lastenrad Zürich",
                description="Ein offenes Lastenrad — 開放ハードウェア",
                license="CERN-OHL-S-2.0",
                links=("https://example.org", "https://example.org/日本"),
                tags=("hardware", "vélo"),
                maintainers=(BOB.public_key, CAROL.public_key),
            ),
            ts=TS,
        ),
        sign_record(
            ALICE,
            body=ProjectUpdateBody(
                set=ProjectFields(
                    name="New name",
                    description="",
                    license="MIT",
                    links=("https://a.example",),
                    tags=("t",),
                ),
                add_maintainers=(CAROL.public_key,),
                remove_maintainers=(BOB.public_key,),
            ),
            ts=TS,
            project=PROJECT,
        ),
        sign_record(
            ALICE, body=ProjectUpdateBody(add_maintainers=(BOB.public_key,)), ts=TS, project=PROJECT
        ),
        sign_record(BOB, body=ContributionBody(type="code", title="CAD"), ts=TS, project=PROJECT),
        sign_record(
            BOB,
            body=ContributionBody(
                type="fabrication",
                title="Welded the frame ✓",
                description="Two evenings; 溶接",
                effort_minutes=0,
                artifacts=(
                    Artifact(uri="https://x.example/p.jpg", digest="sha256:00"),
                    Artifact(uri="u"),
                ),
                coauthors=(ALICE.public_key, CAROL.public_key),
            ),
            ts=TS,
            project=PROJECT,
        ),
        sign_record(ALICE, body=EndorsementBody(target=TARGET), ts=TS, project=PROJECT),
        sign_record(
            ALICE,
            body=EndorsementBody(target=TARGET, weight=10, comment="très bien"),
            ts=TS,
            project=PROJECT,
        ),
        sign_record(BOB, body=RetractionBody(target=TARGET), ts=TS, project=PROJECT),
        sign_record(
            BOB, body=RetractionBody(target=TARGET, reason="duplicate"), ts=TS, project=PROJECT
        ),
        sign_record(CAROL, body=ProfileBody(name="Carol"), ts=TS),
        sign_record(
            CAROL,
            body=ProfileBody(name="Carol 🔧", about="", links=("https://carol.example",)),
            ts=TS,
        ),
        sign_record(
            ALICE,
            body=ContributionBody(
                type="code", title="Imported", on_behalf=("forge:codeberg.org/carol",)
            ),
            ts=TS,
            project=PROJECT,
        ),
        sign_record(
            CAROL, body=ClaimBody(handle="forge:codeberg.org/carol"), ts=TS, project=PROJECT
        ),
        sign_record(ALICE, body=ClaimConfirmationBody(claim=TARGET), ts=TS, project=PROJECT),
        sign_record(
            ALICE, body=DeviceLinkBody(person=ALICE.public_key, ticket=CAROL.public_key), ts=TS
        ),
        sign_record(BOB, body=join_body(ALICE.public_key, BOB.public_key, CAROL), ts=TS),
        sign_record(
            ALICE,
            body=DeviceRevokeBody(person=ALICE.public_key, device=BOB.public_key, cut=0),
            ts=TS,
        ),
        sign_record(
            BOB,
            body=DeviceRevokeBody(
                person=ALICE.public_key,
                device=BOB.public_key,
                cut=TS,
                keep=(CAROL.public_key,),
                reason="lost on the train\nlast seen Monday",
            ),
            ts=TS,
        ),
    ]


RECORDS = every_kind()


def test_every_kind_is_covered() -> None:
    assert (
        {r.kind for r in RECORDS}
        == KINDS
        == {
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
        }
    )


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.kind}-{r.id_hex[:8]}")
def test_sign_encode_parse_round_trip(record: Record) -> None:
    assert parse_record(record.raw, now_ms=record.ts) == record
    assert parse_record(record.raw, now_ms=None) == record
    assert decode_trusted(record.raw) == record
    assert record.id == hashlib.sha256(record.raw).digest() == record_id(record.raw)
    assert record.id_hex == id_hex(record.id) == record.id.hex()
    assert record.raw == codec.encode(record.to_value())
    assert len(record.raw) <= MAX_RECORD_SIZE


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r.kind}-{r.id_hex[:8]}")
def test_signature_is_over_the_domain_and_the_record_without_sig(record: Record) -> None:
    value = codec.decode(record.raw)
    assert isinstance(value, dict)
    sig = value.pop("sig")
    assert sig == record.sig
    expected_input = b"commons-record-v1\x00" + codec.encode(value)
    assert record.signing_input() == expected_input
    assert signing_input(record.unsigned_value()) == expected_input
    # Decoded records get the same signed bytes as records built here.
    assert decode_trusted(record.raw).signing_input() == expected_input
    assert SIGNING_DOMAIN == b"commons-record-v1\x00"
    assert verify(record.author, expected_input, record.sig)
    assert value["v"] == 1
    assert ("project" in value) == (record.kind not in UNSCOPED_KINDS)


def test_record_fields_and_derived_values() -> None:
    record = RECORDS[5]
    assert record.kind == "contribution"
    assert record.author == BOB.public_key
    assert record.author_peer_id == BOB.peer_id
    assert record.project == PROJECT
    body = record.body
    assert isinstance(body, ContributionBody)
    assert body.minutes == 0
    assert ContributionBody(type="code", title="t").minutes == 0
    assert ContributionBody(type="code", title="t", effort_minutes=90).minutes == 90
    assert EndorsementBody(target=TARGET).effective_weight == 1
    assert EndorsementBody(target=TARGET, weight=7).effective_weight == 7
    assert ProjectFields(name="n", tags=("a",)).given() == {"name": "n", "tags": ("a",)}
    assert ProjectFields(description="").given() == {"description": ""}


def test_records_are_frozen_and_compare_by_content() -> None:
    record = RECORDS[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.ts = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.body.name = "x"  # type: ignore[misc, union-attr]
    twin = sign_record(ALICE, body=ProjectBody(name="Wikispeed"), ts=TS)
    assert twin == record
    assert twin.id == record.id
    assert sign_record(ALICE, body=ProjectBody(name="Wikispeed"), ts=TS + 1) != record


def test_optional_fields_are_omitted_never_nil() -> None:
    record = sign_record(BOB, body=ContributionBody(type="code", title="t"), ts=TS, project=PROJECT)
    body = codec.decode(record.raw)["body"]  # type: ignore[index, call-overload]
    assert body == {"title": "t", "type": "code"}
    # Present-but-empty and zero are kept: only None means absent.
    record = sign_record(
        BOB,
        body=ContributionBody(type="code", title="t", description="", effort_minutes=0),
        ts=TS,
        project=PROJECT,
    )
    body = codec.decode(record.raw)["body"]  # type: ignore[index, call-overload]
    assert body == {"title": "t", "type": "code", "description": "", "effort_minutes": 0}


# --------------------------------------------------------------------------------------------
# Building an invalid record is impossible


def text_of(n: int) -> str:
    """A string of exactly ``n`` UTF-8 bytes, mostly 4-byte characters."""
    return "😀" * (n // 4) + "é" * ((n % 4) // 2) + "a" * (n % 2)


@pytest.mark.parametrize(
    ("build", "code"),
    [
        (lambda: ProjectBody(name=""), "field-too-short:name"),
        (lambda: ProjectBody(name=text_of(101)), "field-too-long:name"),
        (lambda: ProjectBody(name=5), "bad-type:name"),
        (lambda: ProjectBody(name="\udcff"), "bad-utf8"),  # surrogate-escaped input
        (lambda: ProjectBody(name="p", links=["https://x"]), "bad-type:links"),  # tuples only
        (lambda: ProjectBody(name="p", links=()), "empty-list:links"),
        (lambda: ProjectBody(name="p", tags=("",)), "field-too-short:tags"),
        (lambda: ProjectBody(name="p", maintainers=(b"k",)), "bad-length:maintainers"),
        (lambda: ProjectBody(name="p", maintainers=("k" * 32,)), "bad-type:maintainers"),
        (lambda: ProjectFields(), "empty-list:set"),
        (lambda: ProjectFields(license="x" * 65), "field-too-long:set.license"),
        (lambda: ProjectUpdateBody(), "empty-update"),
        (lambda: ProjectUpdateBody(set={"name": "x"}), "bad-type:set"),
        (lambda: ProjectUpdateBody(remove_maintainers=()), "empty-list:remove_maintainers"),
        (lambda: ContributionBody(type=1, title="t"), "bad-type:type"),
        (lambda: ContributionBody(type="coding", title="t"), "bad-value:type"),
        (lambda: ContributionBody(type="code", title="t", artifacts=("u",)), "bad-type:artifacts"),
        (
            lambda: ContributionBody(type="code", title="t", effort_minutes=True),
            "bad-type:effort_minutes",
        ),
        (
            lambda: ContributionBody(type="code", title="t", effort_minutes=1.5),
            "bad-type:effort_minutes",
        ),
        (
            lambda: ContributionBody(type="code", title="t", effort_minutes=-1),
            "out-of-range:effort_minutes",
        ),
        (lambda: Artifact(uri=""), "field-too-short:artifacts.uri"),
        (lambda: Artifact(uri="u", digest="d" * 201), "field-too-long:artifacts.digest"),
        (lambda: EndorsementBody(target=TARGET[:31]), "bad-length:target"),
        (lambda: EndorsementBody(target=TARGET.hex()), "bad-type:target"),
        (lambda: EndorsementBody(target=TARGET, weight=0), "out-of-range:weight"),
        (lambda: RetractionBody(target=TARGET, reason=text_of(1001)), "field-too-long:reason"),
        (lambda: ProfileBody(name="p", about=text_of(2001)), "field-too-long:about"),
    ],
)
def test_bodies_check_their_rules_when_built(build, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRecord) as info:
        build()
    assert code_of(info) == code


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"body": {"name": "p"}}, "bad-type:body"),
        ({"body": None}, "bad-type:body"),
        ({"author": ALICE.public_key[:31]}, "bad-length:author"),
        ({"author": ALICE.public_key.hex()}, "bad-type:author"),
        ({"ts": True}, "bad-type:ts"),
        ({"ts": "1"}, "bad-type:ts"),
        ({"ts": -1}, "bad-timestamp"),
        ({"ts": 2**63}, "bad-timestamp"),
        ({"project": PROJECT}, "unexpected-field:project"),
        ({"sig": "s" * 64}, "bad-type:sig"),
        ({"sig": bytes(63)}, "bad-length:sig"),
    ],
)
def test_record_checks_its_rules_when_built(fields: dict[str, object], code: str) -> None:
    kwargs: dict[str, object] = {
        "author": ALICE.public_key,
        "ts": TS,
        "body": ProfileBody(name="Alice"),
        "sig": bytes(64),
        **fields,
    }
    with pytest.raises(InvalidRecord) as info:
        Record(**kwargs)  # type: ignore[arg-type]
    assert code_of(info) == code


def test_scoped_kinds_need_a_project_of_32_bytes() -> None:
    body = ContributionBody(type="code", title="t")
    with pytest.raises(InvalidRecord) as info:
        sign_record(ALICE, body=body, ts=TS)
    assert code_of(info) == "missing-field:project"
    with pytest.raises(InvalidRecord) as info:
        sign_record(ALICE, body=body, ts=TS, project=PROJECT[:16])
    assert code_of(info) == "bad-length:project"
    with pytest.raises(InvalidRecord) as info:
        sign_record(ALICE, body=ProjectBody(name="p"), ts=TS, project=PROJECT)
    assert code_of(info) == "unexpected-field:project"


def test_the_author_cannot_be_a_coauthor() -> None:
    body = ContributionBody(type="code", title="t", coauthors=(BOB.public_key, ALICE.public_key))
    with pytest.raises(InvalidRecord) as info:
        sign_record(ALICE, body=body, ts=TS, project=PROJECT)
    assert code_of(info) == "coauthor-is-author"
    # The same body is fine for another author.
    assert sign_record(CAROL, body=body, ts=TS, project=PROJECT).body == body


def test_a_record_over_the_size_limit_cannot_be_built() -> None:
    # Every field within its own limit, the whole over 65,536 bytes.
    artifacts = tuple(Artifact(uri=text_of(2000), digest=text_of(200)) for _ in range(32))
    body = ContributionBody(type="code", title="t", artifacts=artifacts)
    with pytest.raises(InvalidRecord) as info:
        sign_record(ALICE, body=body, ts=TS, project=PROJECT)
    assert code_of(info) == "too-large"


def test_decode_trusted_skips_only_the_signature() -> None:
    record = RECORDS[0]
    forged = codec.encode({**record.to_value(), "sig": bytes(64)})
    assert decode_trusted(forged).sig == bytes(64)
    with pytest.raises(InvalidRecord) as info:
        decode_trusted(record.raw + b"\x00")
    assert code_of(info) == "trailing-bytes"


def test_every_contribution_type_is_accepted() -> None:
    assert len(CONTRIBUTION_TYPES) == 11
    for kind in sorted(CONTRIBUTION_TYPES):
        record = sign_record(
            BOB, body=ContributionBody(type=kind, title=kind), ts=TS, project=PROJECT
        )
        assert parse_record(record.raw, now_ms=TS) == record


# --------------------------------------------------------------------------------------------
# Text forms of ids


def test_parse_id_prefix() -> None:
    assert parse_id_prefix("  DEADBEEF ") == "deadbeef"
    assert parse_id_prefix("ab" * 32) == "ab" * 32
    for bad in ("", "deadbee", "ab" * 32 + "a", "deadbeeg", "dead beef", "0xdeadbeef"):
        with pytest.raises(RemoteProtocolError) as info:
            parse_id_prefix(bad)
        assert info.value.code == "bad-id"


def test_resolve_prefix() -> None:
    ids = [bytes.fromhex("aaaaaaaa11" + "00" * 27), bytes.fromhex("aaaaaaaa22" + "00" * 27)]
    assert resolve_prefix("aaaaaaaa1", ids) == ids[0]
    assert resolve_prefix(ids[1].hex(), ids) == ids[1]
    assert resolve_prefix("AAAAAAAA22", iter(ids)) == ids[1]
    # The same id twice is still one id.
    assert resolve_prefix("aaaaaaaa11", [ids[0], ids[0]]) == ids[0]
    cases = [("bbbbbbbb", "unknown-id"), ("aaaaaaaa", "ambiguous-id"), ("aaaa", "bad-id")]
    for text, code in cases:
        with pytest.raises(RemoteProtocolError) as info:
            resolve_prefix(text, ids)
        assert info.value.code == code
    with pytest.raises(RemoteProtocolError, match="type more"):
        resolve_prefix("aaaaaaaa", ids)


# --------------------------------------------------------------------------------------------
# protocol.testing


def test_factory_builds_a_whole_project_with_increasing_timestamps() -> None:
    f = RecordFactory()
    genesis = f.project("alice", name="Wikispeed", maintainers=("bob",), license="MIT")
    update = f.update(
        "alice", genesis, add=("carol",), remove=("bob",), name="Wikispeed 2", tags=("car",)
    )
    plain_update = f.update("alice", genesis.id, add=("bob",))
    contribution = f.contribution(
        "bob",
        genesis,
        title="Chassis",
        type="design",
        minutes=120,
        coauthors=("carol",),
        artifacts=("https://x.example/a",),
        description="CAD files",
    )
    endorsement = f.endorsement("alice", contribution, weight=3, comment="good")
    retraction = f.retraction("bob", contribution, reason="oops")
    profile = f.profile("alice", name="Alice", about="Hi")
    records = [genesis, update, plain_update, contribution, endorsement, retraction, profile]
    assert [r.ts for r in records] == [EPOCH_MS + i for i in range(1, 8)]
    for record in records:
        assert parse_record(record.raw, now_ms=EPOCH_MS) == record
    assert genesis.body == ProjectBody(
        name="Wikispeed", maintainers=(BOB.public_key,), license="MIT"
    )
    assert update.project == plain_update.project == genesis.id
    assert update.body == ProjectUpdateBody(
        set=ProjectFields(name="Wikispeed 2", tags=("car",)),
        add_maintainers=(CAROL.public_key,),
        remove_maintainers=(BOB.public_key,),
    )
    assert plain_update.body == ProjectUpdateBody(add_maintainers=(BOB.public_key,))
    assert contribution.body == ContributionBody(
        type="design",
        title="Chassis",
        description="CAD files",
        effort_minutes=120,
        artifacts=(Artifact(uri="https://x.example/a"),),
        coauthors=(CAROL.public_key,),
    )
    assert endorsement.body == EndorsementBody(target=contribution.id, weight=3, comment="good")
    assert endorsement.project == retraction.project == genesis.id
    assert retraction.body == RetractionBody(target=contribution.id, reason="oops")
    assert profile.body == ProfileBody(name="Alice", about="Hi")
    assert profile.project is None


def test_factory_keys_timestamps_and_defaults() -> None:
    f = RecordFactory(now_ms=1_000, step_ms=10)
    assert f.key("alice") is f.key("alice")
    assert f.key(ALICE) is ALICE
    assert f.pub("alice") == ALICE.public_key == f.pub(ALICE)
    genesis = f.project(BOB)
    assert genesis.author == BOB.public_key
    assert genesis.body == ProjectBody(name="Project")
    assert genesis.ts == 1_010
    explicit = f.contribution("carol", genesis, ts=5)
    assert explicit.ts == 5
    assert f.now_ms == 1_010  # an explicit ts does not advance the clock
    minimal = f.contribution("carol", genesis)
    assert minimal.body == ContributionBody(type="code", title="A contribution")
    assert minimal.ts == 1_020
    assert f.endorsement("alice", minimal).body == EndorsementBody(target=minimal.id)
    assert f.retraction("carol", minimal).body == RetractionBody(target=minimal.id)
    assert f.profile("bob", name="Bob", ts=7).ts == 7


def test_factory_many_contributions_are_distinct() -> None:
    f = RecordFactory()
    genesis = f.project("alice")
    many = list(f.many_contributions("bob", genesis, 5))
    assert len({r.id for r in many}) == 5
    assert [r.body.title for r in many] == [f"Contribution {i}" for i in range(5)]  # type: ignore[union-attr]
    assert all(r.project == genesis.id for r in many)


def test_test_keys_are_deterministic() -> None:
    assert key("alice").public_key == key("alice").public_key
    assert key("alice").public_key != key("bob").public_key
