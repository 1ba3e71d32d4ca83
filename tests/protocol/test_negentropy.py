"""Negentropy v1 (protocol/negentropy.py): encodings, fingerprints, reconciliation, robustness."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, NegentropyError
from protocol.negentropy import (
    BUCKETS,
    ERROR_CODES,
    ID_LIST_THRESHOLD,
    INFINITY,
    MAX_MESSAGE_SIZE,
    MAX_TIMESTAMP,
    MAX_VARINT,
    MIN_FRAME_SIZE_LIMIT,
    PROTOCOL_VERSION,
    Item,
    Negentropy,
    Storage,
    decode_bound,
    decode_varint,
    encode_bound,
    encode_varint,
    fingerprint,
    minimal_bound,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "negentropy.json"
GENERATOR = ROOT / "scripts" / "gen-negentropy-vectors"
BASE = 1_700_000_000


def make_items(label: str, count: int, spread: int = 1_000_000) -> list[Item]:
    """Deterministic items from a SHA-256 counter."""
    out = []
    for i in range(count):
        id_ = hashlib.sha256(f"{label}:{i}".encode()).digest()
        out.append((BASE + int.from_bytes(id_[:4], "big") % spread, id_))
    return out


def run(
    ours: list[Item], theirs: list[Item], limit_ours: int = 0, limit_theirs: int = 0
) -> tuple[Negentropy, Negentropy, list[bytes]]:
    """Reconcile to completion; return both sessions and every message exchanged."""
    client = Negentropy(Storage(ours), frame_size_limit=limit_ours)
    server = Negentropy(Storage(theirs), frame_size_limit=limit_theirs)
    messages = []
    message: bytes | None = client.initiate()
    while message is not None:
        messages.append(message)
        reply = server.reconcile(message)
        assert reply is not None
        messages.append(reply)
        message = client.reconcile(reply)
    return client, server, messages


def check_difference(client: Negentropy, ours: list[Item], theirs: list[Item]) -> None:
    mine, peer = {id_ for _, id_ in ours}, {id_ for _, id_ in theirs}
    assert sorted(client.have) == sorted(mine - peer)
    assert sorted(client.need) == sorted(peer - mine)


def round_bound(n: int) -> int:
    """The most round trips a reconciliation of sets of at most n items may take (no frame
    limit): ceil(log16(n)) + 2."""
    return math.ceil(math.log(max(n, 1), BUCKETS)) + 2


# --- varints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8100"),
        (200, "8148"),
        (16383, "ff7f"),
        (16384, "818000"),
        (MAX_VARINT, "81ffffffffffffffff7f"),
    ],
)
def test_varint_known_encodings(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@given(st.integers(min_value=0, max_value=MAX_VARINT), st.binary(max_size=4))
def test_varint_round_trip(value: int, tail: bytes) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded + tail) == (value, len(encoded))
    assert decode_varint(b"\x05" + encoded, 1) == (value, len(encoded) + 1)


@pytest.mark.parametrize(
    ("encoded", "code"),
    [
        ("", "truncated"),
        ("81", "truncated"),
        ("ffff", "truncated"),
        ("8001", "bad-varint"),
        ("82ffffffffffffffff7f", "varint-overflow"),  # 2**65 - 1
        ("81" * 10 + "01", "varint-overflow"),  # eleven digits
    ],
)
def test_varint_errors(encoded: str, code: str) -> None:
    with pytest.raises(NegentropyError) as info:
        decode_varint(bytes.fromhex(encoded))
    assert info.value.code == code


@pytest.mark.parametrize("value", [-1, MAX_VARINT + 1])
def test_varint_encode_rejects_out_of_range(value: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_varint(value)


# --- bounds ----------------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=MAX_TIMESTAMP),
    st.integers(min_value=0, max_value=MAX_TIMESTAMP),
    st.binary(max_size=32),
)
def test_bound_round_trip(a: int, b: int, prefix: bytes) -> None:
    previous, timestamp = min(a, b), max(a, b)
    encoded = encode_bound(timestamp, prefix, previous)
    assert decode_bound(encoded, 0, previous) == (timestamp, prefix, len(encoded))
    infinite = encode_bound(INFINITY, prefix, timestamp)
    assert infinite[0] == 0
    assert decode_bound(infinite, 0, timestamp) == (INFINITY, prefix, len(infinite))


def test_bound_encoding_details() -> None:
    assert encode_bound(5, b"", 0).hex() == "0600"  # 1 + offset, empty prefix
    assert encode_bound(7, b"\xab", 5).hex() == "0301ab"
    assert encode_bound(INFINITY, b"", 12345).hex() == "0000"
    # A timestamp that would run past infinity saturates to it, as in the reference.
    assert decode_bound(bytes.fromhex("0300"), 0, MAX_TIMESTAMP)[0] == INFINITY
    assert decode_bound(bytes.fromhex("0100"), 0, INFINITY)[0] == INFINITY


def test_bound_errors() -> None:
    with pytest.raises(NegentropyError) as info:
        decode_bound(bytes.fromhex("0121") + bytes(33), 0, 0)
    assert info.value.code == "bad-bound"
    with pytest.raises(NegentropyError) as info:
        decode_bound(bytes.fromhex("0103aabb"), 0, 0)
    assert info.value.code == "truncated"
    with pytest.raises(LocalProtocolError):
        encode_bound(1, bytes(33), 0)
    with pytest.raises(LocalProtocolError):
        encode_bound(1, b"", 2)  # below the previous bound


# --- fingerprints and storage ----------------------------------------------------------------


def test_fingerprint_of_known_input_matches_hand_computation() -> None:
    ids = [bytes([i]) * 32 for i in (1, 2, 255)]
    # Independent computation: 256-bit little-endian sum mod 2**256, 32 bytes LE, then the
    # count as a varint (3 -> 0x03), SHA-256, first 16 bytes.
    total = sum(int.from_bytes(id_, "little") for id_ in ids) % 2**256
    expected = hashlib.sha256(total.to_bytes(32, "little") + b"\x03").digest()[:16]
    assert fingerprint(ids) == expected
    storage = Storage([(10 + i, id_) for i, id_ in enumerate(ids)])
    assert storage.fingerprint(0, 3) == expected
    # The sum wraps: 0xff..ff + 0x01 00..00 (little endian 1) == 0 mod 2**256.
    wrap = [b"\xff" * 32, b"\x01" + bytes(31)]
    assert fingerprint(wrap) == hashlib.sha256(bytes(32) + b"\x02").digest()[:16]
    # 200 ids: the count needs a two-byte varint (0x81 0x48).
    many = [hashlib.sha256(bytes([i])).digest() for i in range(200)]
    total = sum(int.from_bytes(id_, "little") for id_ in many) % 2**256
    expected = hashlib.sha256(total.to_bytes(32, "little") + b"\x81\x48").digest()[:16]
    assert fingerprint(many) == expected
    assert fingerprint([]) == hashlib.sha256(bytes(32) + b"\x00").digest()[:16]


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=300), st.data())
def test_storage_fingerprint_of_any_range_matches_scratch(count: int, data: Any) -> None:
    storage = Storage(make_items("fp", count, spread=50))
    lower = data.draw(st.integers(min_value=0, max_value=count))
    upper = data.draw(st.integers(min_value=lower, max_value=count))
    assert storage.fingerprint(lower, upper) == fingerprint(storage.ids(lower, upper))


def test_storage_sorts_deduplicates_and_searches() -> None:
    a, b, c = (bytes([x]) * 32 for x in (3, 1, 2))
    storage = Storage([(5, a), (5, b), (1, c), (5, a), (2**64 - 2, c)])
    assert list(storage) == [(1, c), (5, b), (5, a), (2**64 - 2, c)]
    assert len(storage) == 4
    assert storage.item(1) == (5, b)
    assert storage.ids(1, 3) == [b, a]
    assert storage.ids() == [c, b, a, c]
    assert (5, a) in storage
    assert (6, a) not in storage
    assert ("x", a) not in storage
    assert (5, b"short") not in storage
    assert (5,) not in storage
    assert storage.lower_bound(5) == 1
    assert storage.lower_bound(5, b"\x02") == 2
    assert storage.lower_bound(5, b"\x03" * 32) == 2
    assert storage.lower_bound(INFINITY) == 4
    assert storage.lower_bound(0, b"", 2, 3) == 2
    assert repr(storage) == "Storage(<4 items>)"
    bytes_like: list[Any] = [(1, bytearray(a)), (1, memoryview(a))]
    assert Storage(bytes_like).ids() == [a]
    with pytest.raises(AttributeError):
        storage._keys = []
    with pytest.raises(LocalProtocolError):
        storage.fingerprint(3, 2)
    with pytest.raises(LocalProtocolError):
        storage.fingerprint(0, 5)


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 7, MAX_TIMESTAMP]),
            st.binary(min_size=1, max_size=2).map(lambda b: b.ljust(32, b"\x00")),
        ),
        max_size=60,
    ),
    st.sampled_from([0, 7, 8, INFINITY]),
    st.binary(max_size=33),
)
def test_compact_storage_matches_a_sorted_list_model(
    items: list[Item], timestamp: int, prefix: bytes
) -> None:
    # The compact buffers must behave exactly as the sorted, de-duplicated list of pairs they
    # replace, whether the input came in any order with repeats or ascending as a stream with
    # neighbouring twins (a store's held and refused pairs merged).
    model = sorted(set(items))
    for storage in (Storage(items), Storage(iter(sorted(items)))):
        assert list(storage) == model
        assert len(storage) == len(model)
        assert storage.joined_ids() == b"".join(id_ for _, id_ in model)
        assert storage.ids(1, -1) == [id_ for _, id_ in model][1:-1]
        if model:
            assert storage.item(-1) == model[-1]
        prefix = prefix[:32]
        key = timestamp.to_bytes(8, "big") + prefix.ljust(32, b"\x00")
        expected = sum(1 for t, i in model if t.to_bytes(8, "big") + i < key)
        assert storage.lower_bound(timestamp, prefix) == expected
        for index in range(1, len(model)):
            bound = storage.separator(index)
            assert bound == minimal_bound(model[index - 1], model[index])
        assert all(
            storage.fingerprint(0, n) == fingerprint(storage.ids(0, n))
            for n in range(len(model) + 1)
        )


@pytest.mark.parametrize(
    "item",
    [
        (-1, bytes(32)),
        (INFINITY, bytes(32)),
        (True, bytes(32)),
        (1.0, bytes(32)),
        (1, bytes(31)),
        (1, "00" * 32),
        (1,),
        None,
    ],
)
def test_storage_rejects_bad_items(item: Any) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Storage([item])
    assert info.value.code == "bad-item"


@given(
    st.integers(min_value=0, max_value=3),
    st.binary(min_size=32, max_size=32),
    st.integers(min_value=0, max_value=3),
    st.binary(min_size=32, max_size=32),
)
def test_minimal_bound_separates_and_is_shortest(ta: int, ia: bytes, tb: int, ib: bytes) -> None:
    previous, current = sorted([(ta, ia), (tb, ib)])
    if previous == current:
        return
    timestamp, prefix = minimal_bound(previous, current)
    padded = prefix.ljust(32, b"\x00")
    assert previous < (timestamp, padded) <= current
    if prefix:  # one byte fewer would not separate them
        assert (timestamp, prefix[:-1].ljust(32, b"\x00")) <= previous
        assert previous[0] == current[0]


# --- reconciliation --------------------------------------------------------------------------


@st.composite
def set_shapes(draw: Any) -> tuple[int, int, int, int, int, bool]:
    """(seed, shared, only ours, only theirs, timestamp spread, crowded): two sets of shared
    items plus items only on either side, with timestamps spread widely or down to a single
    one, and optionally all differences crowded onto one timestamp."""
    seed = draw(st.integers(min_value=0, max_value=2**32))
    shape = draw(st.sampled_from(["small-diff", "any", "identical", "disjoint", "one-sided"]))
    common = draw(st.integers(min_value=0, max_value=3000))
    if shape == "small-diff":
        only_a, only_b = draw(st.integers(0, 20)), draw(st.integers(0, 20))
    elif shape == "identical":
        only_a = only_b = 0
    elif shape == "disjoint":
        common, only_a, only_b = 0, draw(st.integers(0, 1500)), draw(st.integers(0, 1500))
    elif shape == "one-sided":
        only_a, only_b = draw(st.sampled_from([(0, 300), (300, 0), (0, 3000), (3000, 0)]))
    else:
        only_a, only_b = draw(st.integers(0, 1500)), draw(st.integers(0, 1500))
    spread = draw(st.sampled_from([1, 7, 1000, 10**9]))
    return seed, common, only_a, only_b, spread, draw(st.booleans())


def build_pair(shape: tuple[int, int, int, int, int, bool]) -> tuple[list[Item], list[Item]]:
    seed, common, only_a, only_b, spread, crowded = shape
    shared = make_items(f"{seed}/c", common, spread)
    a = make_items(f"{seed}/a", only_a, spread)
    b = make_items(f"{seed}/b", only_b, spread)
    if crowded:
        a = [(BASE + spread // 2, id_) for _, id_ in a]
        b = [(BASE + spread // 2, id_) for _, id_ in b]
    return shared + a, shared + b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(set_shapes(), st.sampled_from([0, 0, MIN_FRAME_SIZE_LIMIT, 60_000]))
def test_reconciles_to_exactly_the_symmetric_difference(
    shape: tuple[int, int, int, int, int, bool], limit: int
) -> None:
    ours, theirs = build_pair(shape)
    n = max(len(set(ours)), len(set(theirs)))
    event(f"largest set: {'<32' if n < 32 else '<512' if n < 512 else '>=512'}")
    client, server, messages = run(ours, theirs, limit, limit)
    check_difference(client, ours, theirs)
    assert len(client.have) == len(set(client.have))
    assert len(client.need) == len(set(client.need))
    assert client.is_done
    # A round is one initiator message and the responder's reply to it.
    assert client.rounds == server.rounds == len(messages) // 2
    if limit:
        assert all(len(message) <= limit for message in messages)
    else:
        assert client.rounds <= round_bound(n)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ([], []),
        (make_items("x", 100), make_items("x", 100)),
        (make_items("x", 100), make_items("y", 100)),
        (make_items("x", 1000)[:600], make_items("x", 1000)),  # subset
        (make_items("x", 1000), make_items("x", 1000)[:600]),  # superset
        ([], make_items("y", 5000)),
        (make_items("y", 5000), []),
    ],
    ids=["empty", "identical", "disjoint", "subset", "superset", "ours-empty", "theirs-empty"],
)
@pytest.mark.parametrize("limit", [0, 4096])
def test_reconcile_shapes(ours: list[Item], theirs: list[Item], limit: int) -> None:
    client, _, messages = run(ours, theirs, limit, limit)
    check_difference(client, ours, theirs)
    if limit:
        assert max(map(len, messages)) <= limit


def test_mixed_frame_limits_either_way() -> None:
    ours = make_items("m", 4000)[:3000]
    theirs = make_items("m", 4000)[1000:]
    for limits in [(4096, 0), (0, 4096), (60_000, 500_000)]:
        client, _, _ = run(ours, theirs, *limits)
        check_difference(client, ours, theirs)


def test_identical_sets_take_one_round_and_the_reply_is_the_version_byte() -> None:
    items = make_items("same", 2000)
    client, server, messages = run(items, items)
    assert client.rounds == 1
    assert messages[1] == bytes([PROTOCOL_VERSION])
    assert client.have == []
    assert client.need == []
    assert server.bytes_received == client.bytes_sent == len(messages[0])
    assert server.bytes_sent == client.bytes_received == 1


def test_small_sets_are_sent_as_id_lists() -> None:
    items = make_items("s", ID_LIST_THRESHOLD - 1)
    message = Negentropy(Storage(items)).initiate()
    # version, bound at infinity (00 00), mode IdList, count, then the ids in order
    assert message[:5] == bytes([PROTOCOL_VERSION, 0, 0, 2, ID_LIST_THRESHOLD - 1])
    assert message[5:] == b"".join(Storage(items).ids())
    bigger = Negentropy(Storage(make_items("s", ID_LIST_THRESHOLD))).initiate()
    assert bigger.count(b"\x01") >= BUCKETS  # sixteen fingerprint ranges now


@pytest.mark.parametrize(("d", "max_bytes"), [(1, 2 * 1024), (10, 16 * 1024)], ids=["d=1", "d=10"])
def test_100k_items_small_difference(d: int, max_bytes: int) -> None:
    pool = make_items("big", 100_000 + d)
    shared, extra = pool[:100_000], pool[100_000:]
    ours, theirs = shared + extra[: d // 2], shared + extra[d // 2 :]  # d items differ
    client, _, messages = run(ours, theirs)
    check_difference(client, ours, theirs)
    assert len(client.have) + len(client.need) == d
    assert client.rounds <= 3
    assert client.bytes_sent + client.bytes_received == sum(map(len, messages)) <= max_bytes


def test_drain_hands_over_ids_once() -> None:
    ours, theirs = make_items("d", 50), make_items("e", 40)
    client = Negentropy(Storage(ours))
    server = Negentropy(Storage(theirs))
    reply = server.reconcile(client.initiate())
    assert reply is not None
    assert client.reconcile(reply) is None
    have, need = client.drain()
    assert sorted(have) == sorted(id_ for _, id_ in ours)
    assert sorted(need) == sorted(id_ for _, id_ in theirs)
    assert client.drain() == ([], [])
    assert len(client.have) == 50
    assert len(client.need) == 40
    assert server.have == []
    assert server.need == []
    assert client.is_initiator
    assert not client.is_responder
    assert server.is_responder
    assert not server.is_initiator
    assert not server.is_done


# --- version negotiation ---------------------------------------------------------------------


def test_responder_answers_other_versions_with_its_own() -> None:
    server = Negentropy(Storage(make_items("v", 3)))
    assert server.reconcile(bytes.fromhex("62aabbccdd")) == b"\x61"
    assert server.reconcile(b"\x60") == b"\x61"
    # ... and carries on with the version it speaks.
    assert server.reconcile(bytes.fromhex("6100000200"))[:4] == bytes.fromhex("61000002")  # type: ignore[index]


def test_initiator_rejects_other_versions() -> None:
    client = Negentropy(Storage([]))
    client.initiate()
    with pytest.raises(NegentropyError) as info:
        client.reconcile(b"\x62")
    assert info.value.code == "unsupported-version"


# --- malformed input -------------------------------------------------------------------------

MALFORMED = [
    ("", "truncated"),
    ("00", "bad-version"),
    ("ff", "bad-version"),
    ("610000", "truncated"),  # bound without a mode
    ("61000003", "bad-mode"),
    ("6100008001", "bad-varint"),
    ("6100ffffffffffffffffffff7f", "varint-overflow"),
    ("61002100", "bad-bound"),
    ("610002aa", "truncated"),  # id prefix cut short
    ("61000001" + "00" * 15, "truncated"),  # fingerprint cut short
    ("61000002" + "02" + "00" * 63, "truncated"),  # id list cut short
    ("61000002ffffffffffffffff7f", "truncated"),  # absurd id count: no allocation
    ("610501100001010500", "bad-order"),
    ("6100000000" + "0003", "bad-mode"),  # checked after infinity too
]


@pytest.mark.parametrize("role", ["initiator", "responder"])
@pytest.mark.parametrize(("hex_message", "code"), MALFORMED)
def test_malformed_messages(role: str, hex_message: str, code: str) -> None:
    assert code in ERROR_CODES
    session = Negentropy(Storage(make_items("mal", 40)))
    if role == "initiator":
        session.initiate()
    with pytest.raises(NegentropyError) as info:
        session.reconcile(bytes.fromhex(hex_message))
    assert info.value.code == code
    assert session.error is info.value
    # Once errored, a session stays errored.
    with pytest.raises(LocalProtocolError) as again:
        session.reconcile(bytes.fromhex("6100000200"))
    assert again.value.code == "errored"
    with pytest.raises(LocalProtocolError):
        session.initiate()


def test_oversized_message_is_refused_before_parsing() -> None:
    session = Negentropy(Storage([]))
    with pytest.raises(NegentropyError) as info:
        session.reconcile(b"\x61" + bytes(MAX_MESSAGE_SIZE))
    assert info.value.code == "too-large"


def test_rest_of_a_message_is_validated_after_the_frame_fills() -> None:
    # A responder with many items answers an empty id list and a later range; the frame fills
    # on the first, yet the malformed tail is still detected.
    server = Negentropy(Storage(make_items("f", 500)), frame_size_limit=MIN_FRAME_SIZE_LIMIT)
    first = bytes.fromhex("61") + encode_bound(BASE + 999_999, b"", 0) + b"\x02\x00"
    reply = server.reconcile(first + bytes.fromhex("0000") + b"\x00")
    assert reply is not None
    assert len(reply) <= MIN_FRAME_SIZE_LIMIT
    with pytest.raises(NegentropyError) as info:
        Negentropy(Storage(make_items("f", 500)), frame_size_limit=4096).reconcile(
            first + bytes.fromhex("000009")
        )
    assert info.value.code == "bad-mode"


def _valid_messages() -> list[bytes]:
    ours, theirs = make_items("z", 700)[:600], make_items("z", 700)[100:]
    _, _, messages = run(ours, theirs)
    _, _, limited = run(ours[:200], theirs, 4096, 4096)
    return messages + limited


VALID_MESSAGES = _valid_messages()


FUZZ_STORAGE = Storage(make_items("z", 700)[:300])


def _feed(message: bytes) -> None:
    """Hand ``message`` to a fresh responder and a fresh initiator: each must either answer or
    raise NegentropyError, and never anything else."""
    codes = []
    for initiator in (False, True):
        session = Negentropy(FUZZ_STORAGE, frame_size_limit=4096 if initiator else 0)
        if initiator:
            session.initiate()
        try:
            session.reconcile(message)
        except NegentropyError as exc:
            codes.append(exc.code)
    assert set(codes) <= ERROR_CODES


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _feed(data)
    _feed(b"\x61" + data)


@settings(max_examples=300)
@given(st.sampled_from(VALID_MESSAGES), st.data())
def test_fuzz_mutated_valid_messages(message: bytes, data: Any) -> None:
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice"]))
    if kind == "truncate":
        mutated = message[: data.draw(st.integers(0, len(message)))]
    elif kind == "flip":
        flipped = bytearray(message)
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(message) - 1))
            flipped[at] ^= 1 << data.draw(st.integers(0, 7))
        mutated = bytes(flipped)
    else:
        at = data.draw(st.integers(0, len(message)))
        mutated = message[:at] + data.draw(st.binary(max_size=12)) + message[at:]
    _feed(mutated)


def test_truncations_of_valid_messages() -> None:
    # Every cut within the first 300 bytes (all the range kinds start there), then a stride.
    for message in VALID_MESSAGES[:4]:
        for cut in [*range(min(len(message), 300)), *range(300, len(message), 101)]:
            _feed(message[:cut])


# --- caller errors ---------------------------------------------------------------------------


def test_misuse_raises_local_protocol_error() -> None:
    storage = Storage(make_items("u", 5))
    session = Negentropy(storage)
    session.initiate()
    with pytest.raises(LocalProtocolError) as info:
        session.initiate()
    assert info.value.code == "already-initiated"

    responder = Negentropy(storage)
    responder.reconcile(bytes.fromhex("6100000200"))
    with pytest.raises(LocalProtocolError) as info:
        responder.initiate()
    assert info.value.code == "responder"
    with pytest.raises(LocalProtocolError):
        responder.reconcile("61")  # type: ignore[arg-type]

    done = Negentropy(Storage([]))
    done.initiate()
    assert done.reconcile(b"\x61") is None
    with pytest.raises(LocalProtocolError) as info:
        done.reconcile(b"\x61")
    assert info.value.code == "done"


@pytest.mark.parametrize("limit", [-1, 1, 4095, MAX_MESSAGE_SIZE + 1, 5000.0, True])
def test_bad_frame_size_limits(limit: Any) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Negentropy(Storage([]), frame_size_limit=limit)
    assert info.value.code == "bad-frame-size-limit"


def test_storage_must_be_a_storage() -> None:
    with pytest.raises(LocalProtocolError):
        Negentropy([(1, bytes(32))])  # type: ignore[arg-type]


def test_accepts_bytearray_and_memoryview_messages() -> None:
    server = Negentropy(Storage(make_items("b", 3)))
    one = server.reconcile(bytearray.fromhex("6100000200"))
    two = server.reconcile(memoryview(bytes.fromhex("6100000200")))
    assert one == two


# --- vectors ---------------------------------------------------------------------------------


def _load_generator() -> Any:
    loader = importlib.machinery.SourceFileLoader("gen_negentropy_vectors", str(GENERATOR))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_vectors_file_is_up_to_date() -> None:
    assert _load_generator().render() == VECTORS.read_text(), (
        "tests/vectors/negentropy.json is stale: run scripts/gen-negentropy-vectors"
    )


def _parse_items(rows: list[list[Any]]) -> list[Item]:
    return [(ts, bytes.fromhex(id_hex)) for ts, id_hex in rows]


@pytest.mark.parametrize(
    "scenario", json.loads(VECTORS.read_text())["scenarios"], ids=lambda s: s["name"]
)
def test_vector_transcripts_replay(scenario: dict[str, Any]) -> None:
    common = _parse_items(scenario["common_items"])
    limit = scenario["frame_size_limit"]
    client = Negentropy(
        Storage(common + _parse_items(scenario["initiator_only_items"])), frame_size_limit=limit
    )
    server = Negentropy(
        Storage(common + _parse_items(scenario["responder_only_items"])), frame_size_limit=limit
    )
    transcript = [bytes.fromhex(m) for m in scenario["transcript"]]
    assert client.initiate() == transcript[0]
    for i in range(0, len(transcript), 2):
        assert server.reconcile(transcript[i]) == transcript[i + 1]
        expected = transcript[i + 2] if i + 2 < len(transcript) else None
        assert client.reconcile(transcript[i + 1]) == expected
    assert sorted(id_.hex() for id_ in client.have) == scenario["have"]
    assert sorted(id_.hex() for id_ in client.need) == scenario["need"]


@pytest.mark.parametrize(
    "vector", json.loads(VECTORS.read_text())["responder_vectors"], ids=lambda v: v["name"]
)
def test_vector_responder_replies(vector: dict[str, Any]) -> None:
    session = Negentropy(Storage(_parse_items(vector["items"])))
    query = bytes.fromhex(vector["query"])
    if "error" in vector:
        with pytest.raises(NegentropyError) as info:
            session.reconcile(query)
        assert info.value.code == vector["error"]
    else:
        assert session.reconcile(query) == bytes.fromhex(vector["reply"])


def test_an_id_the_peer_lists_in_the_wrong_range_is_only_its_claim() -> None:
    """Id lists carry no timestamps: an id we hold, listed by the peer in a range it does not
    belong to, comes out in ``need`` (fetched, then a duplicate); ``have`` stays exact."""
    ours = [(BASE + i, hashlib.sha256(b"%d" % i).digest()) for i in range(10)]
    ids = [i for _, i in ours]
    client = Negentropy(Storage(ours))
    client.initiate()
    lower_ids = [*ids[:4], ids[8]]  # ids[4] left out; ids[8] belongs to the upper range
    reply = (
        bytes((PROTOCOL_VERSION,))
        + encode_bound(BASE + 5, b"", 0)
        + encode_varint(2)
        + encode_varint(len(lower_ids))
        + b"".join(lower_ids)
        + encode_bound(INFINITY, b"", BASE + 5)
        + encode_varint(2)
        + encode_varint(5)
        + b"".join(ids[5:])
    )
    client.reconcile(reply)
    have, need = client.drain()
    assert have == [ids[4]]
    assert need == [ids[8]]
