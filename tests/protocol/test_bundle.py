"""Bundle files (docs/RECORD-FORMAT.md §6): framing, chunking, and damage at every position.

The reader is sans-IO, so it is tested as h11 tests its parser: fed the whole input at once,
byte by byte, and in Hypothesis-chosen splits, which must all give the same records; and for
any input whatsoever it returns records or raises ``BundleError``, nothing else.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.bundle import (
    HEADER,
    BundleReader,
    BundleWriter,
    encode_bundle,
    encode_varint,
    iter_bundle,
)
from protocol.errors import BundleError, LocalProtocolError
from protocol.record import MAX_RECORD_SIZE
from protocol.testing import RecordFactory
from protocol.validation import parse_record

FUZZ = settings(max_examples=150, deadline=None)


def sample_records() -> list[bytes]:
    f = RecordFactory()
    genesis = f.project("alice", name="Wikispeed", description="x" * 300)  # a 2-byte varint
    c = f.contribution("bob", genesis, title="Chassis", minutes=30)
    return [
        genesis.raw,
        c.raw,
        f.endorsement("alice", c, weight=2).raw,
        f.profile("carol", name="Carol").raw,
    ]


RECORDS = sample_records()
BUNDLE = encode_bundle(RECORDS)


def read_in_chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    reader = BundleReader()
    out: list[bytes] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        out += reader.feed(data[previous:cut])
        previous = cut
    reader.close()
    return out


def boundaries(records: list[bytes]) -> list[int]:
    """The offset just after the header and after each framed record."""
    ends = [len(HEADER)]
    for raw in records:
        ends.append(ends[-1] + len(encode_varint(len(raw))) + len(raw))
    return ends


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], BundleError | None]:
    """Feed ``chunks`` and close: the records returned, and the error that stopped it if any."""
    reader = BundleReader()
    records: list[bytes] = []
    try:
        for chunk in chunks:
            records += reader.feed(chunk)
        reader.close()
    except BundleError as exc:
        assert reader.broken
        return records, exc
    return records, None


def failure(data: bytes) -> tuple[list[bytes], BundleError]:
    """Feed ``data`` whole; the records returned before the error, and the error."""
    records, error = feed_all([data])
    assert error is not None
    return records, error


# --------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        (65536, "808004"),
        (2**21 - 1, "ffff7f"),
        (2**64, "80808080808080808002"),
    ],
)
def test_varint_is_unsigned_leb128(n: int, expected: str) -> None:
    assert encode_varint(n) == bytes.fromhex(expected)


def test_varint_is_unsigned() -> None:
    with pytest.raises(LocalProtocolError):
        encode_varint(-1)


def test_writer_frames_records() -> None:
    assert HEADER == b"commons-bundle-v1\n"
    assert len(HEADER) == 18
    assert BundleWriter.header() == HEADER
    assert BundleWriter.frame(b"\x80") == b"\x01\x80"
    assert BundleWriter.frame(bytes(300))[:2] == bytes.fromhex("ac02")
    assert BundleWriter.frame(bytes(MAX_RECORD_SIZE))[:3] == bytes.fromhex("808004")
    for bad in (b"", bytes(MAX_RECORD_SIZE + 1)):
        with pytest.raises(LocalProtocolError) as info:
            BundleWriter.frame(bad)
        assert info.value.code == "too-large"
    assert encode_bundle([]) == HEADER
    assert b"".join([HEADER, *map(BundleWriter.frame, RECORDS)]) == BUNDLE


# --------------------------------------------------------------------------------------------
# Reading


def test_round_trip_whole_and_byte_by_byte() -> None:
    assert read_in_chunks(BUNDLE, []) == RECORDS
    assert read_in_chunks(BUNDLE, list(range(len(BUNDLE)))) == RECORDS
    assert list(iter_bundle([BUNDLE])) == RECORDS
    assert list(iter_bundle(BUNDLE[i : i + 7] for i in range(0, len(BUNDLE), 7))) == RECORDS
    for raw in read_in_chunks(BUNDLE, []):
        parse_record(raw, now_ms=None)


def test_reader_reports_progress() -> None:
    reader = BundleReader()
    assert reader.records_read == 0
    assert reader.offset == 0
    assert reader.feed(BUNDLE[:10]) == []
    assert reader.offset == 0  # the header is not consumed until it is complete
    ends = boundaries(RECORDS)
    assert reader.feed(BUNDLE[10 : ends[2] + 1]) == RECORDS[:2]
    assert reader.records_read == 2
    assert reader.offset == ends[2]
    assert reader.feed(BUNDLE[ends[2] + 1 :]) == RECORDS[2:]
    assert reader.offset == len(BUNDLE)
    assert not reader.broken
    reader.close()


def test_empty_bundle_and_empty_chunks() -> None:
    assert read_in_chunks(HEADER, []) == []
    reader = BundleReader()
    assert reader.feed(b"") == []
    assert reader.feed(HEADER) == []
    assert reader.feed(b"") == []
    reader.close()


def test_largest_record_is_read() -> None:
    raw = bytes(range(256)) * (MAX_RECORD_SIZE // 256)
    assert len(raw) == MAX_RECORD_SIZE
    data = encode_bundle([raw, b"x"])
    assert read_in_chunks(data, []) == [raw, b"x"]
    assert read_in_chunks(data, list(range(0, len(data), 4096))) == [raw, b"x"]


@FUZZ
@given(st.lists(st.integers(0, len(BUNDLE)), max_size=12))
def test_any_split_gives_the_same_records(cuts: list[int]) -> None:
    assert read_in_chunks(BUNDLE, cuts) == RECORDS


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    st.lists(st.integers(0, 2000), max_size=8),
)
def test_any_records_round_trip_in_any_split(records: list[bytes], cuts: list[int]) -> None:
    data = encode_bundle(records)
    assert read_in_chunks(data, [c for c in cuts if c <= len(data)]) == records


# --------------------------------------------------------------------------------------------
# Damage


def test_a_bundle_cut_at_every_position() -> None:
    ends = boundaries(RECORDS)
    for cut in range(len(BUNDLE)):
        reader = BundleReader()
        got = reader.feed(BUNDLE[:cut])
        complete = [i for i, end in enumerate(ends[1:]) if end <= cut]
        assert got == RECORDS[: len(complete)], cut
        if cut in ends:
            reader.close()  # a cut between records is a shorter, valid bundle
            continue
        with pytest.raises(BundleError) as info:
            reader.close()
        error = info.value
        if cut < len(HEADER):
            assert (error.code, error.offset, error.index) == ("bad-header", 0, 0)
        else:
            assert error.code == "truncated", cut
            assert error.index == len(complete)
            assert error.offset == ends[len(complete)]
        assert f"record {error.index}" in error.message


def test_a_bundle_cut_short_through_iter_bundle() -> None:
    ends = boundaries(RECORDS)
    cut = ends[3] - 5
    seen: list[bytes] = []

    def consume() -> None:
        for raw in iter_bundle([BUNDLE[:cut]]):
            seen.append(raw)

    with pytest.raises(BundleError) as info:
        consume()
    assert seen == RECORDS[:2]  # yielded before the error was raised
    assert (info.value.code, info.value.index, info.value.offset) == ("truncated", 2, ends[2])
    with pytest.raises(BundleError, match="bad-header"):
        list(iter_bundle([]))


@pytest.mark.parametrize(
    "data",
    [
        b"commons-bundle-v2\n",
        b"commons-bundle-v1\r\n",
        b"Commons-bundle-v1\n",
        b"\x00",
        b"{}",
        RECORDS[0],  # a bare record is not a bundle
    ],
)
def test_bad_header(data: bytes) -> None:
    records, error = failure(data + encode_bundle(RECORDS)[len(HEADER) :])
    assert records == []
    assert (error.code, error.offset, error.index) == ("bad-header", 0, 0)


def test_bad_header_is_noticed_at_its_first_wrong_byte() -> None:
    reader = BundleReader()
    assert reader.feed(b"commons-") == []
    with pytest.raises(BundleError, match="bad-header"):
        reader.feed(b"ledger")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00", "bad-length"),  # a zero length
        (b"\x80\x00", "bad-length"),  # 0 in two bytes: not minimal
        (b"\x81\x00", "bad-length"),  # 1 in two bytes
        (b"\xff\x80\x00", "bad-length"),  # 127 in three bytes
        (encode_varint(MAX_RECORD_SIZE + 1) + bytes(8), "bad-length"),
        (encode_varint(2**21 - 1), "bad-length"),
        (b"\x80\x80\x80\x01", "too-large"),  # four varint bytes
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "too-large"),
    ],
)
def test_bad_lengths(frame: bytes, code: str) -> None:
    ends = boundaries(RECORDS[:2])
    data = encode_bundle(RECORDS[:2]) + frame
    # Whole: the good records come back first, the error on the next call.
    reader = BundleReader()
    assert reader.feed(data) == RECORDS[:2]
    assert reader.broken
    with pytest.raises(BundleError) as info:
        reader.feed(b"more")
    error = info.value
    assert (error.code, error.offset, error.index) == (code, ends[2], 2)
    with pytest.raises(BundleError) as again:
        reader.close()
    assert again.value is error  # an errored reader stays errored
    # Byte by byte: the same records, then the same error.
    got, late = feed_all([data[i : i + 1] for i in range(len(data))])
    assert got == RECORDS[:2]
    assert late is not None
    assert (late.code, late.offset, late.index) == (code, ends[2], 2)


def test_damage_right_after_the_header() -> None:
    records, error = failure(HEADER + b"\x00")
    assert records == []
    assert (error.code, error.offset, error.index) == ("bad-length", len(HEADER), 0)


def test_a_declared_length_beyond_the_end_is_truncation() -> None:
    data = encode_bundle(RECORDS[:1]) + encode_varint(MAX_RECORD_SIZE) + b"abc"
    reader = BundleReader()
    assert reader.feed(data) == RECORDS[:1]
    with pytest.raises(BundleError) as info:
        reader.close()
    assert info.value.code == "truncated"
    assert info.value.index == 1


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_raise_only_bundle_errors(data: bytes) -> None:
    for prefix in (b"", HEADER):
        whole = prefix + data
        half = len(whole) // 2
        records, error = feed_all([whole[:half], whole[half:]])
        if error is None:
            assert encode_bundle(records) == whole
        else:
            assert error.code in {"bad-header", "bad-length", "too-large", "truncated"}
            if error.code != "bad-header":
                # Everything before the damage came back, and nothing after it.
                assert encode_bundle(records) == whole[: error.offset]


@st.composite
def damaged_bundles(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    data = bytearray(BUNDLE)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
            break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=5))
    return bytes(data), cuts


@FUZZ
@given(damaged_bundles())
def test_damaged_bundles_give_the_same_result_in_any_split(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case

    def run(split: list[int]) -> tuple[list[bytes], tuple[str, int, int] | None]:
        bounds = [0, *sorted(split), len(data)]
        got, error = feed_all([data[a:b] for a, b in itertools.pairwise(bounds)])
        return got, None if error is None else (error.code, error.offset, error.index)

    whole = run([])
    assert run(cuts) == whole
    assert run(list(range(len(data)))) == whole
