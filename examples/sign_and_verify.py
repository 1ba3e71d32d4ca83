"""Sign a record, turn it into bytes, and check bytes from someone else.

Run: python examples/sign_and_verify.py [KEY.pem]

With a PEM key file (e.g. a Commons home's identity.key) it signs as that identity; without one
it generates a fresh key. Needs only the protocol library (``pip install commons-ledger``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from protocol import (
    ContributionBody,
    InvalidRecord,
    ProjectBody,
    SigningKey,
    parse_record,
    public_key_from_peer_id,
    seed_from_pem,
    seed_to_pem,
    sign_record,
)


def load_key(argv: list[str]) -> SigningKey:
    """The key in the PEM file named on the command line, or a new one."""
    if len(argv) > 1:
        return SigningKey(seed_from_pem(Path(argv[1]).read_bytes()))
    key = SigningKey.generate()
    # A new identity lives only as long as its seed is kept; this is how to keep it.
    assert SigningKey(seed_from_pem(seed_to_pem(key.seed))).public_key == key.public_key
    return key


def main(argv: list[str]) -> int:
    key = load_key(argv)
    now_ms = time.time_ns() // 1_000_000
    print(f"signing as {key.peer_id}")

    # Authoring: build a body (its rules are checked at once), then sign it with a timestamp.
    project = sign_record(
        key, body=ProjectBody(name="Open Tractor", license="CERN-OHL-S-2.0"), ts=now_ms
    )
    contribution = sign_record(
        key,
        body=ContributionBody(type="design", title="Gearbox drawings", effort_minutes=240),
        ts=now_ms + 1,
        project=project.id,
    )
    # ``raw`` is the canonical bytes: what is gossiped, stored, exported and submitted.
    raw = contribution.raw
    print(f"contribution {contribution.id.hex()} is {len(raw)} bytes")

    # Receiving: bytes from outside become a Record only through parse_record, which checks
    # the form, the clock (no more than 10 minutes ahead of ours) and the signature.
    received = parse_record(raw, now_ms=now_ms)
    assert received.id == contribution.id
    assert public_key_from_peer_id(received.author_peer_id) == key.public_key
    print(f"verified: a {received.kind} by {received.author_peer_id}")

    # One flipped bit anywhere, and the record is refused with a code that names the rule.
    tampered = bytearray(raw)
    tampered[raw.index(b"Gearbox")] ^= 0x20
    try:
        parse_record(bytes(tampered), now_ms=now_ms)
    except InvalidRecord as exc:
        print(f"refused a tampered copy: {exc.code}")
    else:
        raise SystemExit("a tampered record was accepted")

    # A record timestamped far in the future is refused now (and may be accepted later).
    early = sign_record(key, body=ProjectBody(name="Later"), ts=now_ms + 3_600_000)
    try:
        parse_record(early.raw, now_ms=now_ms)
    except InvalidRecord as exc:
        print(f"refused a record from the future: {exc.code}")
    else:
        raise SystemExit("a record from the future was accepted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
