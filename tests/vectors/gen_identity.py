"""The vectors of ``records.json`` for the identity kinds and for kinds a node does not know
(docs/IDENTITY.md, docs/RECORD-FORMAT.md sections 4.7-4.9 and 7); ``gen_records.py`` adds
them to its valid and invalid lists. Deterministic like it: test keys, fixed timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from protocol import testing
from protocol.identity_records import (
    DeviceLinkBody,
    DeviceRevokeBody,
    UnknownBody,
    join_body,
    join_proof_input,
)
from protocol.record import Body, Record, sign_record

__all__ = ["invalid_records", "valid_records"]

ALICE = testing.key("alice")
BOB = testing.key("bob")
CAROL = testing.key("carol")
TARGET_ID = bytes.fromhex("b2" * 32)


def valid_records(ts: int, project: bytes) -> list[tuple[str, Record]]:
    """Carol's person is her recovery key; bob's key is the link ticket; alice joins with
    bob's proof. Timestamps follow ``ts``, a second apart."""
    person = CAROL.public_key
    out: list[tuple[str, Record]] = []

    def add(description: str, key: Any, body: Body, pid: bytes | None = None) -> None:
        at = ts + 1_000 * (len(out) + 1)
        out.append((description, sign_record(key, body=body, ts=at, project=pid)))

    add("device-link", CAROL, DeviceLinkBody(person=person, ticket=BOB.public_key))
    add("device-join with the ticket's proof", ALICE, join_body(person, ALICE.public_key, BOB))
    add(
        "device-revoke, cut 0",
        CAROL,
        DeviceRevokeBody(person=person, device=ALICE.public_key, cut=0),
    )
    at = ts + 1_000 * (len(out) + 1)
    revoke = DeviceRevokeBody(
        person=person,
        device=ALICE.public_key,
        cut=at,
        keep=(BOB.public_key,),
        reason="lost on the train\nlast seen Monday",
    )
    add("device-revoke with keep and reason, cut equal to its ts", ALICE, revoke)
    # Kinds this library does not know are kept, with or without a project key (section 7).
    add("unknown kind vote, no project", ALICE, UnknownBody(name="vote", value={"x": 1}))
    add(
        "unknown kind with a project key and a nested body",
        BOB,
        UnknownBody(name="poll-2", value={"options": ["a", "b"], "target": TARGET_ID}),
        project,
    )
    return out


def invalid_records(
    base: Callable[..., dict[str, object]],
    forge: Callable[[dict[str, object]], bytes],
    bodies: dict[str, dict[str, object]],
) -> Iterator[tuple[str, bytes, str]]:
    """(description, bytes, error) of the refusals the identity kinds add, and of kinds
    that are not kind names; ``base``, ``forge`` and ``bodies`` are gen_records' own."""
    yield "kind Vote (not a kind name)", forge(base("profile", kind="Vote")), "unknown-kind"
    yield "kind 33 letters long", forge(base("profile", kind="v" * 33)), "unknown-kind"
    yield (
        "unknown kind whose body is not a map",
        forge(base("profile", kind="vote", body=[1])),
        "bad-type:body",
    )
    join = {"person": CAROL.public_key, "ticket": BOB.public_key}

    def joined(proof: bytes) -> bytes:
        return forge(base("device-link", {**join, "proof": proof}, kind="device-join"))

    stranger = CAROL.sign(join_proof_input(CAROL.public_key, ALICE.public_key))
    yield "device-join whose proof another key signed", joined(stranger), "bad-proof"
    other = BOB.sign(join_proof_input(CAROL.public_key, BOB.public_key))
    yield "device-join whose proof names another device", joined(other), "bad-proof"
    yield (
        "device-join without proof",
        forge(base("device-link", join, kind="device-join")),
        "missing-field:proof",
    )
    yield "device-join with a 63-byte proof", joined(bytes(63)), "bad-length:proof"
    revoke = bodies["device-revoke"]
    ts = base("device-revoke")["ts"]
    assert isinstance(ts, int)
    yield (
        "device-revoke whose cut is after its ts",
        forge(base("device-revoke", {**revoke, "cut": ts + 1})),
        "cut-after-record",
    )
    yield (
        "device-revoke with a negative cut",
        forge(base("device-revoke", {**revoke, "cut": -1})),
        "out-of-range:cut",
    )
    twice = [BOB.public_key, BOB.public_key]
    yield (
        "device-revoke keeping one key twice",
        forge(base("device-revoke", {**revoke, "keep": twice})),
        "duplicate:keep",
    )
    yield (
        "device-link with a project key",
        forge(base("device-link", project=bytes.fromhex("a1" * 32))),
        "unexpected-field:project",
    )
    yield (
        "device-link with an unknown field",
        forge(base("device-link", {**bodies["device-link"], "name": "laptop"})),
        "unknown-field:name",
    )
