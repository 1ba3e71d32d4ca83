"""parse_record against hostile bytes: signatures (docs/RECORD-FORMAT.md §3), error codes,
gossip topics, and fuzzing (any bytes give a Record or InvalidRecord, nothing else).

The rules of §1, 2 and 4 are in test_validation.py; the hostile records of both come from
``validation_records``.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from validation_records import (
    ALICE,
    BOB,
    BODIES,
    ED25519_L,
    IDENTITY_POINT,
    NOW,
    PROJECT,
    TS,
    accepted,
    assert_faithful,
    contribution,
    record,
    refused,
    sign,
)

from protocol import codec, testing
from protocol.errors import InvalidRecord, LocalProtocolError
from protocol.record import SIGNING_DOMAIN, Record
from protocol.validation import (
    ERROR_CODES,
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
