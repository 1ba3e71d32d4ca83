"""Bundle files (docs/RECORD-FORMAT.md §6): framing, chunking, and damage at every position.

The reader is sans-IO, so it is tested as h11 tests its parser: fed the whole input at once,
byte by byte, and in Hypothesis-chosen splits, which must all give the same records; and for
any input whatsoever it returns records or raises ``BundleError``, nothing else. A record
whose length is well-formed but too large is passed over without being kept, in constant
memory however it is split, and the records after it are read.
"""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.bundle import (
    HEADER,
    BundleReader,
    BundleWriter,
    Entry,
    OversizedRecord,
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


def read_in_chunks(data: bytes, cuts: list[int]) -> list[Entry]:
    reader = BundleReader()
    out: list[Entry] = []
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


def feed_all(chunks: list[bytes]) -> tuple[list[Entry], BundleError | None]:
    """Feed ``chunks`` and close: the records returned, and the error that stopped it if any."""
    reader = BundleReader()
    records: list[Entry] = []
    try:
        for chunk in chunks:
            records += reader.feed(chunk)
        reader.close()
    except BundleError as exc:
        assert reader.broken
        return records, exc
    return records, None


def failure(data: bytes) -> tuple[list[Entry], BundleError]:
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
        (b"\x80\x80\x80\x80\x00", "bad-length"),  # 0 in five bytes
        (b"\x81\x80\x80\x80\x80\x00", "bad-length"),  # 1 in six bytes
        (encode_varint(2**63), "too-large"),  # ten varint bytes
        (b"\x80" * 9 + b"\x01", "too-large"),
        (b"\xff" * 20, "too-large"),
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


# --------------------------------------------------------------------------------------------
# Oversized records: refused one by one, passed over unread

BIG = MAX_RECORD_SIZE + 1


def oversized_frame(length: int) -> bytes:
    """A well-formed prefix declaring ``length`` bytes, then that many bytes that look like
    framed records: a reader that looked inside would find records that are not there."""
    body = BUNDLE[len(HEADER) :]
    return encode_varint(length) + (body * (length // len(body) + 1))[:length]


def with_oversized(at: int, length: int = BIG) -> tuple[bytes, list[Entry]]:
    """RECORDS with an oversized record inserted at index ``at``; the entries to expect."""
    start = boundaries(RECORDS[:at])[-1]
    data = BUNDLE[:start] + oversized_frame(length) + BUNDLE[start:]
    entry = OversizedRecord(index=at, offset=start, length=length)
    return data, [*RECORDS[:at], entry, *RECORDS[at:]]


def test_oversized_record_is_refused_by_its_index() -> None:
    entry = OversizedRecord(index=3, offset=120, length=BIG)
    assert entry.code == "record-too-large"
    assert str(entry) == "record-too-large: a record of 65537 bytes, the limit is 65536 (not read)"


@pytest.mark.parametrize("at", [0, 2, len(RECORDS)])
def test_reading_goes_on_after_an_oversized_record(at: int) -> None:
    data, expected = with_oversized(at)
    assert read_in_chunks(data, []) == expected
    assert read_in_chunks(data, list(range(len(data)))) == expected
    assert read_in_chunks(data, list(range(0, len(data), 4096))) == expected
    assert list(iter_bundle([data])) == expected
    reader = BundleReader()
    reader.feed(data)
    assert reader.records_read == len(RECORDS) + 1
    assert reader.offset == len(data)
    reader.close()


@FUZZ
@given(st.lists(st.integers(0, len(BUNDLE) + BIG + 8), max_size=12))
def test_an_oversized_record_in_any_split(cuts: list[int]) -> None:
    data, expected = with_oversized(2)
    assert read_in_chunks(data, [c for c in cuts if c <= len(data)]) == expected


@FUZZ
@given(
    st.lists(
        st.one_of(st.binary(min_size=1, max_size=40), st.integers(BIG, BIG + 3000)), max_size=5
    ),
    st.lists(st.integers(0, 4 * (BIG + 3000)), max_size=8),
)
def test_records_and_oversized_records_in_any_split(
    items: list[bytes | int], cuts: list[int]
) -> None:
    data = bytearray(HEADER)
    expected: list[Entry] = []
    for index, item in enumerate(items):
        if isinstance(item, int):
            expected.append(OversizedRecord(index=index, offset=len(data), length=item))
            data += oversized_frame(item)
        else:
            expected.append(item)
            data += BundleWriter.frame(item)
    assert read_in_chunks(bytes(data), [c for c in cuts if c <= len(data)]) == expected


def test_ten_megabytes_declared_are_passed_over_in_constant_memory() -> None:
    """A 10 MiB record fed in 64 KiB chunks: nothing of it is buffered or copied, and the
    record after it is read."""
    length = 10 * 2**20
    block = bytes(range(256)) * 256  # 64 KiB, allocated once and fed over and over
    head = encode_bundle(RECORDS[:1]) + encode_varint(length)
    tail = encode_bundle(RECORDS[1:2])[len(HEADER) :]
    reader = BundleReader()
    tracemalloc.start()
    try:
        got = reader.feed(head)
        left = length
        while left > len(block):
            got += reader.feed(block)
            left -= len(block)
            assert reader.buffered == 0
            assert reader.records_read == 1
        got += reader.feed(block[:left] + tail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader.close()
    # The last chunk (64 KiB and a record) is the largest thing the reader ever held.
    assert peak < 2 * len(block) + 64 * 1024, peak
    offset = boundaries(RECORDS[:1])[-1]
    assert got == [RECORDS[0], OversizedRecord(index=1, offset=offset, length=length), RECORDS[1]]
    assert reader.offset == len(head) + length + len(tail)


def test_the_largest_declared_length_is_truncation_not_damage() -> None:
    """Nine varint bytes (2**63 - 1) are a well-formed length: the reader passes over what
    comes, and only the end of the file shows the bundle to be cut short."""
    prefix = encode_varint(2**63 - 1)
    assert len(prefix) == 9
    reader = BundleReader()
    assert reader.feed(encode_bundle(RECORDS[:1]) + prefix) == [RECORDS[0]]
    for _ in range(100):
        assert reader.feed(bytes(100_000)) == []
    with pytest.raises(BundleError) as info:
        reader.close()
    error = info.value
    assert (error.code, error.index, error.offset) == ("truncated", 1, boundaries(RECORDS[:1])[-1])
    assert f"declares {2**63 - 1} bytes" in error.message


def test_a_bundle_ending_inside_an_oversized_record_is_truncated() -> None:
    data, expected = with_oversized(2)
    start = boundaries(RECORDS[:2])[-1]
    body = start + len(encode_varint(BIG))
    for cut in (start + 1, body, body + 1, body + BIG // 2, body + BIG - 1):
        for split in ([], list(range(start - 3, cut, 997))):
            got, error = feed_all([data[a:b] for a, b in itertools.pairwise([0, *split, cut])])
            assert got == expected[:2], (cut, split)
            assert error is not None
            assert (error.code, error.index, error.offset) == ("truncated", 2, start)


def test_damage_after_an_oversized_record_names_the_next_index() -> None:
    data, expected = with_oversized(2)
    cut = boundaries(RECORDS[:2])[-1] + len(oversized_frame(BIG))
    records, error = failure(data[:cut] + b"\x00" + data[cut:])
    assert records == expected[:3]
    assert (error.code, error.index, error.offset) == ("bad-length", 3, cut)
