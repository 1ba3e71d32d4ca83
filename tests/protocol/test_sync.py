"""The /commons/sync/1 frames: round trips, bounds, and hostile bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import InvalidRecord, RemoteProtocolError
from protocol.sync import (
    MAX_FRAME,
    MAX_RECORDS_PER_FRAME,
    MAX_WANT,
    Ack,
    Bye,
    ErrorFrame,
    Frame,
    FrameReader,
    Hello,
    Neg,
    Push,
    Recs,
    SyncError,
    Want,
    decode_frame,
    encode_frame,
    pack_records,
    shared_scopes,
)
from protocol.validation import parse_record

P1 = "11" * 32
P2 = "22" * 32
P3 = "33" * 32

FRAMES: list[Frame] = [
    Hello(follow_all=True, scopes=("meta", P1)),
    Hello(follow_all=False, scopes=()),
    Neg(messages={0: b"\x61", 7: b"\x61\x00\x01", 8191: b""}),
    Want(ids=(b"\x01" * 32, b"\x02" * 32)),
    Recs(records=(b"\x81\xa1a\x01",)),
    Recs(records=()),
    Push(records=(b"x" * 100, b"y")),
    Ack(new=3),
    Bye(),
    ErrorFrame(code="bad-frame", message="no"),
]


FRAME_TYPES = (Hello, Neg, Want, Recs, Push, Ack, Bye, ErrorFrame)


def read_all(data: bytes, chunks: list[int] | None = None) -> list[Frame]:
    reader = FrameReader()
    out: list[Frame] = []
    pieces = [data] if chunks is None else _split(data, chunks)
    for piece in pieces:
        reader.feed(piece)
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    assert reader.buffered == 0
    return out


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    out.append(data[pos:])
    return out


def test_frames_round_trip_whole_and_byte_by_byte() -> None:
    data = b"".join(encode_frame(f) for f in FRAMES)
    assert read_all(data) == FRAMES
    assert read_all(data, [1] * len(data)) == FRAMES


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=30))
def test_frames_round_trip_in_any_split(sizes: list[int]) -> None:
    data = b"".join(encode_frame(f) for f in FRAMES)
    assert read_all(data, sizes) == FRAMES


def test_reader_reports_what_it_still_needs() -> None:
    data = encode_frame(Ack(new=1))
    reader = FrameReader()
    assert reader.needed() == 4
    reader.feed(data[:2])
    assert reader.needed() == 2
    reader.feed(data[2:5])
    assert reader.needed() == len(data) - 5
    assert reader.next_frame() is None
    reader.feed(data[5:])
    assert reader.next_frame() == Ack(new=1)


def test_oversized_frame_is_refused_before_buffering() -> None:
    reader = FrameReader()
    reader.feed(struct.pack(">I", MAX_FRAME + 1))
    with pytest.raises(SyncError) as info:
        reader.next_frame()
    assert info.value.code == "frame-too-large"


def payload(value: dict[str, codec.Value]) -> bytes:
    return codec.encode(value)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"t": "nope"}, "bad-frame"),
        ({"x": 1}, "bad-frame"),
        ({"t": "hello", "v": 2, "all": 1, "scopes": []}, "bad-version"),
        ({"t": "hello", "v": 1, "all": 2, "scopes": []}, "bad-frame"),
        ({"t": "hello", "v": 1, "all": 1, "scopes": ["META"]}, "bad-frame"),
        ({"t": "hello", "v": 1, "all": 1, "scopes": ["ab" * 31]}, "bad-frame"),
        ({"t": "hello", "v": 1, "all": 1, "scopes": "meta"}, "bad-frame"),
        ({"t": "neg", "m": [b"x"]}, "bad-frame"),
        ({"t": "neg", "m": {"meta": b"\x61"}}, "bad-frame"),
        ({"t": "neg", "m": [[0, "text"]]}, "bad-frame"),
        ({"t": "neg", "m": [[0, b"\x61", 1]]}, "bad-frame"),
        ({"t": "neg", "m": [["meta", b"\x61"]]}, "bad-frame"),
        ({"t": "neg", "m": [[1, b"\x61"], [0, b"\x61"]]}, "bad-frame"),
        ({"t": "neg", "m": [[1, b"\x61"], [1, b"\x61"]]}, "bad-frame"),
        ({"t": "neg", "m": [[8192, b"\x61"]]}, "bad-frame"),
        ({"t": "neg", "m": [[-1, b"\x61"]]}, "bad-frame"),
        ({"t": "neg", "m": [[i, b""] for i in range(8193)]}, "too-many"),
        ({"t": "want", "ids": [b"\x00" * 31]}, "bad-frame"),
        ({"t": "want", "ids": [b"\x00" * 32] * (MAX_WANT + 1)}, "too-many"),
        ({"t": "recs", "r": [1]}, "bad-frame"),
        ({"t": "recs", "r": [b"x", "text"]}, "bad-frame"),
        ({"t": "push", "r": [b"x"] * (MAX_RECORDS_PER_FRAME + 1)}, "too-many"),
        ({"t": "push", "r": "x"}, "bad-frame"),
        ({"t": "ack", "n": -1}, "bad-frame"),
        ({"t": "ack"}, "bad-frame"),
        ({"t": "error", "code": 1, "message": "x"}, "bad-frame"),
    ],
)
def test_malformed_frames_are_refused_with_a_code(value: dict[str, codec.Value], code: str) -> None:
    with pytest.raises(SyncError) as info:
        decode_frame(payload(value))
    assert info.value.code == code


@pytest.mark.parametrize("kind", ["recs", "push"])
def test_a_record_of_the_wrong_size_is_left_to_validation(kind: str) -> None:
    # The frame is delimited by its length and bounded by MAX_FRAME, so an empty or
    # oversized record in it cannot desynchronise the stream: the frame decodes, and each
    # record is judged alone, the bad ones refused by ``parse_record``.
    big = b"\x00" * 65_537
    frame = decode_frame(payload({"t": kind, "r": [b"a", big, b"", b"b"]}))
    assert isinstance(frame, Recs if kind == "recs" else Push)
    assert frame.records == (b"a", big, b"", b"b")
    for bad, code in ((big, "too-large"), (b"", "truncated")):
        with pytest.raises(InvalidRecord) as info:
            parse_record(bad, now_ms=None)
        assert info.value.code == code


def test_non_canonical_or_non_map_payloads_are_refused() -> None:
    for data in (b"", b"\xc0", b"\x93\x01\x02\x03", b"\x81\xa1t\xa3bye\x00", b"\xcc\x01"):
        with pytest.raises(SyncError):
            decode_frame(data)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_give_frames_or_the_protocol_error(data: bytes) -> None:
    reader = FrameReader()
    reader.feed(struct.pack(">I", len(data)) + data)
    try:
        frame = reader.next_frame()
    except RemoteProtocolError:
        return
    assert isinstance(frame, FRAME_TYPES)
    assert decode_frame(encode_frame(frame)[4:]) == frame


@settings(max_examples=200)
@given(st.data())
def test_mutated_frames_give_frames_or_the_protocol_error(data: st.DataObject) -> None:
    frame = data.draw(st.sampled_from(FRAMES))
    raw = bytearray(encode_frame(frame)[4:])
    position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = decode_frame(bytes(raw))
    except RemoteProtocolError:
        return
    assert isinstance(decoded, FRAME_TYPES)


def test_error_messages_from_peers_are_truncated() -> None:
    frame = decode_frame(payload({"t": "error", "code": "x" * 100, "message": "m" * 2000}))
    assert isinstance(frame, ErrorFrame)
    assert len(frame.code) == 64
    assert len(frame.message) == 500


def test_shared_scopes() -> None:
    everything = Hello(follow_all=True, scopes=("meta", P1, P2))
    some = Hello(follow_all=False, scopes=("meta", P2, P3))
    other = Hello(follow_all=False, scopes=("meta", P1))
    # A follow-all node reconciles everything a follow-list peer names, and vice versa.
    assert shared_scopes(everything, some) == sorted(["meta", P2, P3])
    assert shared_scopes(some, everything) == sorted(["meta", P2, P3])
    # Two follow-all nodes reconcile the union.
    assert shared_scopes(everything, Hello(follow_all=True, scopes=(P3,))) == sorted(
        ["meta", P1, P2, P3]
    )
    # Two follow lists reconcile their intersection, and meta always.
    assert shared_scopes(some, other) == ["meta"]
    assert shared_scopes((False, ()), Hello(follow_all=False, scopes=())) == ["meta"]


def test_pack_records_respects_the_frame_budget() -> None:
    raws = [b"r" * 60_000] * 40
    taken, n = pack_records(raws)
    assert n == len(taken)
    assert 1 <= n < 40
    assert len(encode_frame(Push(records=tuple(taken)))) <= MAX_FRAME + 4
    # A single record always fits, so progress is guaranteed.
    assert pack_records([b"r" * 65_536], limit=10)[1] == 1
    many, count = pack_records([b"x"] * (MAX_RECORDS_PER_FRAME + 10))
    assert count == MAX_RECORDS_PER_FRAME
    assert len(many) == count


def test_encode_refuses_a_frame_over_the_limit() -> None:
    with pytest.raises(SyncError):
        encode_frame(Push(records=tuple([b"r" * 65_000] * 20)))
