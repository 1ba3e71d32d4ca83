"""Claims proven by an SSH signature (protocol.sshsig, protocol.attest; RECORD-FORMAT 4.11, 5.10).

The parser is checked against hostile bytes (Hypothesis) and against OpenSSH's own
``ssh-keygen -Y`` in both directions when it is installed; the fold rule by rule and against a
direct model of the dispute rule, in any order.
"""

from __future__ import annotations

import base64
import hashlib
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, sshsig
from protocol.attest import ClaimBody, email_handle
from protocol.errors import InvalidRecord
from protocol.ledger import ProjectView
from protocol.record import Record, sign_record
from protocol.signing import peer_id
from protocol.sshsig import (
    GIT_NAMESPACE,
    HASHES,
    NAMESPACE,
    PROOF_SIZE,
    claim_message,
    fingerprint_text,
    git_signature,
    key_fingerprint,
    parse_armored,
    parse_fingerprint_text,
    parse_proof,
    parse_signature,
    sign_proof,
)
from protocol.testing import RecordFactory, key
from protocol.validation import is_known_code, parse_record

CAROL_MAIL = email_handle(b"carol@example.org")
DAVE_GH = "forge:github.com/dave"
PID = bytes(range(32))
SSH_KEYGEN = shutil.which("ssh-keygen")


def _armor(blob: bytes) -> str:
    return (
        "-----BEGIN SSH SIGNATURE-----\n"
        + base64.b64encode(blob).decode()
        + ("\n-----END SSH SIGNATURE-----\n")
    )


def _peer(name: str) -> str:
    return peer_id(key(name).public_key)


# ---- the SSH signature format


def test_a_proof_round_trips_and_verifies_only_its_message() -> None:
    message = claim_message(key("carol").public_key, PID, CAROL_MAIL)
    for hash_name in (b"sha512", b"sha256"):
        blob = sign_proof(key("carol-ssh"), message, hash_name)
        assert len(blob) == PROOF_SIZE
        proof = parse_proof(blob)
        assert proof.public_key == key("carol-ssh").public_key
        assert proof.fingerprint == key_fingerprint(key("carol-ssh").public_key)
        assert proof.verifies(message)
        assert not proof.verifies(claim_message(key("mallory").public_key, PID, CAROL_MAIL))
        assert not proof.verifies(claim_message(key("carol").public_key, bytes(32), CAROL_MAIL))
        assert not proof.verifies(claim_message(key("carol").public_key, PID, DAVE_GH))
        assert parse_armored(_armor(blob)) == blob


@pytest.mark.parametrize(
    ("mutate", "code", "why"),
    [
        (lambda b: b"SSHSIH" + b[6:], "bad-value:proof", "SSHSIG"),
        (lambda b: b[:9] + b"\x02" + b[10:], "bad-value:proof", "version 2"),
        (lambda b: b.replace(b"ssh-ed25519", b"ssh-ed25518", 1), "bad-value:proof", "key type"),
        (
            lambda b: b.replace(b"commons-claim", b"git\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
            "bad-value:proof",
            "namespace",
        ),
        (lambda b: b.replace(b"sha512", b"sha1\x00\x00"), "bad-value:proof", "hash"),
        (lambda b: b[:-1], "bad-length:proof", "183"),
        (lambda b: b + b"\x00", "bad-length:proof", "183"),
        (lambda b: b[:10] + b"\xff\xff\xff\xff" + b[14:], "bad-value:proof", "past the end"),
    ],
)
def test_malformed_proofs_are_refused_with_a_reason(mutate, code, why) -> None:  # type: ignore[no-untyped-def]
    good = sign_proof(key("carol-ssh"), b"message")
    with pytest.raises(InvalidRecord) as info:
        parse_proof(mutate(good))
    assert info.value.code == code
    assert why in info.value.message


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_is_refused_or_fails_verification(data: st.DataObject) -> None:
    message = b"the message"
    good = bytearray(sign_proof(key("carol-ssh"), message))
    at = data.draw(st.integers(0, len(good) - 1))
    good[at] ^= data.draw(st.integers(1, 255))
    damaged = bytes(good)
    code = None
    try:
        proof = parse_proof(damaged)
    except InvalidRecord as exc:
        code = exc.code
    if code is not None:
        assert is_known_code(code)
        return
    # Parsed: only the key, the hash name's choice or the signature changed, and then the
    # signature does not verify (with the other hash it would be a different signed text).
    assert not proof.verifies(message)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([NAMESPACE, GIT_NAMESPACE]))
def test_the_layout_and_the_reader_accept_the_same_blobs(
    data: st.DataObject, namespace: bytes
) -> None:
    """``parse_signature`` compares the fixed layout first; the part-by-part reader must
    decide the same for any damage (here both are run on every blob)."""
    blob = bytearray(
        sign_proof(key("carol-ssh"), b"m", data.draw(st.sampled_from(list(HASHES))), namespace)
    )
    for _ in range(data.draw(st.integers(0, 2))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    outcomes = []
    for parse in (parse_signature, sshsig._read_signature):
        try:
            outcomes.append(parse(bytes(blob), namespace))
        except InvalidRecord as exc:
            outcomes.append(exc.code)
    assert outcomes[0] == outcomes[1]


@given(st.binary(max_size=400))
def test_random_bytes_are_refused_without_a_traceback(blob: bytes) -> None:
    with pytest.raises(InvalidRecord) as info:
        parse_proof(blob)
    assert is_known_code(info.value.code)


def test_armor_and_fingerprint_text() -> None:
    for text in ("", "hello", "-----BEGIN SSH SIGNATURE-----\n!!\n-----END SSH SIGNATURE-----"):
        with pytest.raises(InvalidRecord):
            parse_armored(text)
    with pytest.raises(InvalidRecord):
        parse_armored("x" * 5000)
    fp = key_fingerprint(key("carol-ssh").public_key)
    assert parse_fingerprint_text(fingerprint_text(fp)) == fp
    assert parse_fingerprint_text("  " + fingerprint_text(fp) + "\n") == fp
    for other in ("", "ABCDEF0123456789", "SHA256:short", fingerprint_text(fp)[:-1] + "B"):
        assert parse_fingerprint_text(other) is None


@pytest.mark.skipif(SSH_KEYGEN is None, reason="ssh-keygen is not installed")
def test_openssh_agrees_in_both_directions(tmp_path: Path) -> None:
    assert SSH_KEYGEN is not None
    keyfile = tmp_path / "id"
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "t", "-f", str(keyfile)], check=True
    )
    message = claim_message(key("carol").public_key, PID, CAROL_MAIL)
    signed = subprocess.run(
        [SSH_KEYGEN, "-Y", "sign", "-f", str(keyfile), "-n", "commons-claim"],
        input=message,
        capture_output=True,
        check=True,
    )
    proof = parse_proof(parse_armored(signed.stdout.decode()))
    assert proof.verifies(message)
    listed = subprocess.run(
        [SSH_KEYGEN, "-l", "-f", f"{keyfile}.pub"], capture_output=True, check=True, text=True
    ).stdout.split()[1]
    assert fingerprint_text(proof.fingerprint) == listed
    # And OpenSSH verifies what this library signs.
    (tmp_path / "sig").write_text(_armor(sign_proof(key("carol-ssh"), message)))
    checked = subprocess.run(
        [SSH_KEYGEN, "-Y", "check-novalidate", "-n", "commons-claim", "-s", str(tmp_path / "sig")],
        input=message,
        capture_output=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_record_whose_proof_does_not_verify_is_refused() -> None:
    f = RecordFactory()
    good = f.claim("carol", PID, CAROL_MAIL, ssh="carol-ssh")
    assert parse_record(good.raw, now_ms=None).body == good.body
    # The same proof under another claimant's key: well-formed, but not that key's proof.
    body = ClaimBody(handle=CAROL_MAIL, proof=good.body.proof)  # type: ignore[union-attr]
    stolen = sign_record(key("mallory"), body=body, ts=good.ts, project=PID)
    with pytest.raises(InvalidRecord) as info:
        parse_record(stolen.raw, now_ms=None)
    assert info.value.code == "bad-proof"
    # A key recorded on a contribution that is not attested is refused.
    value = codec.decode(f.attested("alice", PID, (CAROL_MAIL,), signed_by="x").raw)
    assert isinstance(value, dict)
    assert isinstance(value["body"], dict)
    del value["body"]["on_behalf"]
    with pytest.raises(InvalidRecord) as info:
        Record.from_value(value)
    assert info.value.code == "ssh-key-without-on-behalf"


# ---- the fold


def setup() -> tuple[RecordFactory, Record, list[Record]]:
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    c1 = f.attested("alice", p, (CAROL_MAIL,), minutes=60, signed_by="carol-ssh")
    c2 = f.attested("alice", p, (DAVE_GH, CAROL_MAIL), minutes=30, signed_by="dave-ssh")
    return f, p, [p, c1, c2, f.endorsement("bob", c1, weight=2), f.endorsement("bob", c2)]


def test_a_proven_claim_counts_without_a_confirmation() -> None:
    f, p, records = setup()
    claim = f.claim("carol", p, CAROL_MAIL, ssh="carol-ssh")
    view = ProjectView.build(p, [*records, claim])
    assert view.claims.resolved == {CAROL_MAIL: key("carol").public_key}
    assert view.claims.proven == {claim.id}
    assert view.claims.status(claim.id) == "proven"
    assert _peer("carol") in {s.to_json()["contributor"] for s in view.shares()}
    # Retracting the claim gives the credit back to the handle.
    withdrawn = ProjectView.build(p, [*records, claim, f.retraction("carol", claim)])
    assert withdrawn.claims.resolved == {}
    assert withdrawn.claims.status(claim.id) == "withdrawn"


def test_proofs_that_prove_nothing() -> None:
    f, p, records = setup()
    cases = {
        # A key nobody recorded.
        "unrecorded": f.claim("carol", p, CAROL_MAIL, ssh="other-ssh"),
        # The key of a commit whose first handle (its signer) is someone else's.
        "co-author": f.claim("carol", p, CAROL_MAIL, ssh="dave-ssh"),
    }
    for name, claim in cases.items():
        view = ProjectView.build(p, [*records, claim])
        assert view.claims.resolved == {}, name
        assert view.claims.status(claim.id) == "pending", name
    # A key a non-maintainer recorded, or the claimant recorded for themselves.
    by_outsider = f.attested("mallory", p, (DAVE_GH,), signed_by="m-ssh")
    claim = f.claim("mallory", p, DAVE_GH, ssh="m-ssh")
    assert ProjectView.build(p, [*records, by_outsider, claim]).claims.resolved == {}
    by_self = f.attested("bob", p, (DAVE_GH,), signed_by="b-ssh")
    claim = f.claim("bob", p, DAVE_GH, ssh="b-ssh")
    assert ProjectView.build(p, [*records, by_self, claim]).claims.resolved == {}
    # ... but alice's record of bob's key proves bob's claim.
    by_alice = f.attested("alice", p, (DAVE_GH,), signed_by="b-ssh")
    assert ProjectView.build(p, [*records, by_alice, claim]).claims.resolved == {
        DAVE_GH: key("bob").public_key
    }
    # A retracted contribution, or a maintainer removed since, records nothing.
    claim = f.claim("carol", p, CAROL_MAIL, ssh="carol-ssh")
    retracted = f.retraction("alice", records[1])
    assert ProjectView.build(p, [*records, claim, retracted]).claims.resolved == {}
    moved = f.update("bob", p, add=("erin",), remove=("alice",))
    assert ProjectView.build(p, [*records, claim, moved]).claims.resolved == {}


def test_a_confirmation_outranks_a_proof() -> None:
    f, p, records = setup()
    proven = f.claim("carol", p, CAROL_MAIL, ssh="carol-ssh")
    other = f.claim("mallory", p, CAROL_MAIL)
    confirmation = f.confirm("bob", other)
    view = ProjectView.build(p, [*records, proven, other, confirmation])
    assert view.claims.resolved == {CAROL_MAIL: key("mallory").public_key}
    assert view.claims.status(proven.id) == "overruled"
    assert view.claims.status(other.id) == "confirmed"
    # Withdrawing the confirmation brings the proof back.
    back = ProjectView.build(
        p, [*records, proven, other, confirmation, f.retraction("bob", confirmation)]
    )
    assert back.claims.resolved == {CAROL_MAIL: key("carol").public_key}
    assert back.claims.status(other.id) == "pending"
    # A confirmation of the prover's own claim agrees with the proof.
    agreed = ProjectView.build(p, [*records, proven, f.confirm("bob", proven)])
    assert agreed.claims.status(proven.id) == "confirmed"


def test_two_proofs_of_one_handle_are_a_dispute_a_confirmation_settles() -> None:
    f, p, records = setup()
    second = f.attested("alice", p, (CAROL_MAIL,), title="Another", signed_by="twin-ssh")
    carol = f.claim("carol", p, CAROL_MAIL, ssh="carol-ssh")
    twin = f.claim("twin", p, CAROL_MAIL, ssh="twin-ssh")
    view = ProjectView.build(p, [*records, second, carol, twin])
    assert view.claims.resolved == {}
    assert set(view.claims.disputed[CAROL_MAIL]) == {
        key("carol").public_key,
        key("twin").public_key,
    }
    assert {view.claims.status(carol.id), view.claims.status(twin.id)} == {"disputed"}
    settled = ProjectView.build(p, [*records, second, carol, twin, f.confirm("bob", carol)])
    assert settled.claims.resolved == {CAROL_MAIL: key("carol").public_key}
    assert settled.claims.status(twin.id) == "overruled"


PEOPLE = ["carol", "dave", "erin"]
HANDLES = [CAROL_MAIL, DAVE_GH]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Record, list[Record], dict[str, set[str]]]:
    """Signed commits of each handle by some people's SSH keys; claims with or without a
    proof by any key, confirmed or not; and the holders the dispute rule must give, from a
    direct model: confirmed claimants if any, else claimants whose proof's key is recorded."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [p]
    recorded: dict[str, set[str]] = {h: set() for h in HANDLES}
    for handle in HANDLES:
        for signer in draw(st.lists(st.sampled_from(PEOPLE), max_size=2, unique=True)):
            records.append(f.attested("alice", p, (handle,), signed_by=f"{signer}-ssh"))
            recorded[handle].add(signer)
    confirmed: dict[str, set[str]] = {}
    proven: dict[str, set[str]] = {}
    for _ in range(draw(st.integers(0, 6))):
        who, handle = draw(st.sampled_from(PEOPLE)), draw(st.sampled_from(HANDLES))
        ssh = draw(st.one_of(st.none(), st.sampled_from(PEOPLE)))
        claim = f.claim(who, p, handle, ssh=None if ssh is None else f"{ssh}-ssh")
        records.append(claim)
        if ssh in recorded[handle]:
            proven.setdefault(handle, set()).add(who)
        if draw(st.booleans()):
            records.append(f.confirm("bob", claim))
            confirmed.setdefault(handle, set()).add(who)
    return p, records, {**proven, **confirmed}


@settings(max_examples=80, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_the_dispute_rule_against_a_model_in_any_order(
    scenario: tuple[Record, list[Record], dict[str, set[str]]], rnd: random.Random
) -> None:
    p, records, holders = scenario
    view = ProjectView.build(p, records)
    assert {h: _peer(next(iter(w))) for h, w in holders.items() if len(w) == 1} == {
        h: peer_id(k) for h, k in view.claims.resolved.items()
    }
    assert {h: sorted(map(_peer, w)) for h, w in holders.items() if len(w) > 1} == {
        h: sorted(map(peer_id, ks)) for h, ks in view.claims.disputed.items()
    }
    shuffled = records[:]
    rnd.shuffle(shuffled)
    again = ProjectView.build(p, shuffled)
    assert [s.to_json() for s in again.shares()] == [s.to_json() for s in view.shares()]
    assert {c: again.claims.status(c) for c in again.claims.claims} == {
        c: view.claims.status(c) for c in view.claims.claims
    }


def test_a_commit_signature_is_no_claim_proof_and_no_proof_a_commit_signature() -> None:
    """The namespace is part of what the key signs, and each parser admits only its own."""
    message = claim_message(key("carol").public_key, PID, CAROL_MAIL)
    commit = sign_proof(key("carol-ssh"), message, namespace=GIT_NAMESPACE)
    proof = sign_proof(key("carol-ssh"), message)
    with pytest.raises(InvalidRecord) as info:
        parse_proof(commit)
    assert info.value.code == "bad-length:proof"
    # Even padded to a proof's length, the namespace is refused, and it could not verify.
    with pytest.raises(InvalidRecord, match="namespace"):
        parse_signature(
            commit.replace(b"\x00\x00\x00\x03git", b"\x00\x00\x00\x0dcommons-clain"), NAMESPACE
        )
    assert parse_signature(commit, GIT_NAMESPACE).verifies(message)
    assert git_signature(_armor(commit).encode()) is None  # one line of 232 characters
    wrapped = base64.b64encode(commit)
    armored = _git_armor(commit)
    parsed = git_signature(armored)
    assert parsed is not None
    assert parsed.verifies(message)
    assert parsed.verifies_digest(hashlib.sha512(message).digest())
    # A claim proof armored as git armors a signature is not a commit's signature.
    assert git_signature(armored.replace(wrapped[70:140], base64.b64encode(proof)[70:140])) is None
    assert git_signature(_git_armor(proof)) is None
    for other in (b"", armored + b"x", armored.replace(b"\n", b"\r\n"), b"x" * 5000):
        assert git_signature(other) is None


def _git_armor(blob: bytes) -> bytes:
    """``blob`` armored as ``ssh-keygen -Y sign`` writes it: base64 in lines of 70."""
    text = base64.b64encode(blob)
    lines = [text[at : at + 70] for at in range(0, len(text), 70)]
    return b"\n".join([b"-----BEGIN SSH SIGNATURE-----", *lines, b"-----END SSH SIGNATURE-----\n"])
