"""Canonical MessagePack (docs/RECORD-FORMAT.md §2): exact bytes, strict decoding, fuzzing.

Expected encodings are written out by hand, not computed, so a change in the encoder cannot
quietly change what these tests expect. ``msgpack`` (an independent implementation) is used
as a second opinion: it must read every canonical encoding back to the same value, and its
packer, given the keys in canonical order, must write the same bytes.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Sequence

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.codec import MAX_DEPTH, MAX_SIZE, Value, decode, encode
from protocol.errors import InvalidRecord, LocalProtocolError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nested(depth: int) -> Value:
    """``depth`` arrays, one inside the other, the innermost empty."""
    value: Value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def decode_error(data: bytes, max_size: int = MAX_SIZE) -> str:
    with pytest.raises(InvalidRecord) as info:
        decode(data, max_size=max_size)
    return info.value.code


def hex_id(data: str) -> str:
    return data if len(data) <= 20 else f"{data[:16]}...({len(data) // 2} bytes)"


# --------------------------------------------------------------------------------------------
# Encoding: every type at every length boundary

A31 = "a" * 31
CANONICAL: list[tuple[object, str]] = [
    # positive integers
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "cc80"),
    (255, "ccff"),
    (256, "cd0100"),
    (65535, "cdffff"),
    (65536, "ce00010000"),
    (2**32 - 1, "ceffffffff"),
    (2**32, "cf0000000100000000"),
    (2**63, "cf8000000000000000"),
    (2**64 - 1, "cfffffffffffffffff"),
    # negative integers
    (-1, "ff"),
    (-32, "e0"),
    (-33, "d0df"),
    (-128, "d080"),
    (-129, "d1ff7f"),
    (-32768, "d18000"),
    (-32769, "d2ffff7fff"),
    (-(2**31), "d280000000"),
    (-(2**31) - 1, "d3ffffffff7fffffff"),
    (-(2**63), "d38000000000000000"),
    # str
    ("", "a0"),
    ("a", "a161"),
    (A31, "bf" + "61" * 31),
    ("a" * 32, "d920" + "61" * 32),
    ("é", "a2c3a9"),
    ("é" * 16, "d920" + "c3a9" * 16),  # 16 characters, 32 bytes: str8, not fixstr
    ("a" * 255, "d9ff" + "61" * 255),
    ("a" * 256, "da0100" + "61" * 256),
    ("a" * 65535, "daffff" + "61" * 65535),
    ("a" * 65536, "db00010000" + "61" * 65536),
    # bin
    (b"", "c400"),
    (b"\x00\xff", "c40200ff"),
    (b"\x01" * 255, "c4ff" + "01" * 255),
    (b"\x01" * 256, "c50100" + "01" * 256),
    (b"\x01" * 65535, "c5ffff" + "01" * 65535),
    (b"\x01" * 65536, "c600010000" + "01" * 65536),
    # arrays
    ([], "90"),
    ([1, "a", b""], "9301a161c400"),
    ([0] * 15, "9f" + "00" * 15),
    ([0] * 16, "dc0010" + "00" * 16),
    ([0] * 65535, "dcffff" + "00" * 65535),
    ([0] * 65536, "dd00010000" + "00" * 65536),
    # maps
    ({}, "80"),
    ({"a": 1}, "81a16101"),
    (
        {f"{i:x}": 0 for i in range(15)},
        "8f" + "".join(f"a1{ord(f'{i:x}'):02x}00" for i in range(15)),
    ),
    (
        {f"{i:02x}": 0 for i in range(16)},
        "de0010" + "".join(f"a2{f'{i:02x}'.encode().hex()}00" for i in range(16)),
    ),
    (
        {f"{i:05x}": 0 for i in range(65536)},
        "df00010000" + "".join(f"a5{f'{i:05x}'.encode().hex()}00" for i in range(65536)),
    ),
    # nesting up to the limit
    (nested(MAX_DEPTH), "91" * (MAX_DEPTH - 1) + "90"),
]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 40 else f"{type(value).__name__} {text[:30]}..."


@pytest.mark.parametrize(("value", "expected"), CANONICAL, ids=[_short(v) for v, _ in CANONICAL])
def test_encode_is_the_shortest_form(value: object, expected: str) -> None:
    assert encode(value) == bytes.fromhex(expected)


@pytest.mark.parametrize(("value", "expected"), CANONICAL, ids=[_short(v) for v, _ in CANONICAL])
def test_decode_reads_the_canonical_form_back(value: object, expected: str) -> None:
    assert decode(bytes.fromhex(expected), max_size=10**6) == value


def test_map_keys_are_sorted_by_utf8_bytes_not_by_length() -> None:
    # Bytewise: "B" (0x42) < "a" < "aa" < "b" < "é" (c3 a9) < "日" (e6 97 a5).
    value = {"b": 1, "日": 6, "aa": 2, "é": 5, "a": 3, "B": 4}
    assert encode(value) == bytes.fromhex("86a14204a16103a2616102a16201a2c3a905a3e697a506")
    assert list(decode(encode(value))) == ["B", "a", "aa", "b", "é", "日"]  # type: ignore[arg-type]


def test_encode_does_not_depend_on_insertion_order() -> None:
    forward = {"title": "x", "type": "code", "description": "d"}
    backward = dict(reversed(list(forward.items())))
    assert encode(forward) == encode(backward)


def test_bytes_like_values_are_bin_and_tuples_are_arrays() -> None:
    assert encode(bytearray(b"ab")) == encode(memoryview(b"ab")) == bytes.fromhex("c4026162")
    assert encode((1, 2)) == encode([1, 2]) == bytes.fromhex("920102")


class _HugeSequence(Sequence[int]):
    """Claims 2**32 items without holding any, to reach the 32-bit length limit cheaply."""

    def __len__(self) -> int:
        return 2**32

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        raise AssertionError("encode must refuse before reading items")

    def __repr__(self) -> str:
        return "_HugeSequence()"


class _Opaque:
    """A value of no type the model knows (its repr is stable: test ids must not change
    between the processes that collect them)."""

    def __repr__(self) -> str:
        return "_Opaque()"


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        1.0,
        float("nan"),
        {1: 2},
        {b"k": 1},
        2**64,
        -(2**63) - 1,
        _Opaque(),
        {1, 2},
        "\ud800",  # a lone surrogate has no UTF-8 encoding
        {"\udcff": 1},
        [[True]],
        {"a": None},
        nested(MAX_DEPTH + 1),  # nine empty arrays: decode would refuse them
        [nested(MAX_DEPTH)],
        _HugeSequence(),
    ],
    ids=repr,
)
def test_encode_refuses_values_outside_the_model(value: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(value)
    assert info.value.code == "unencodable"


# --------------------------------------------------------------------------------------------
# Decoding: every refusal, with its exact code

NOT_CANONICAL = [
    "cc05",  # uint8 for a fixint
    "cc7f",
    "cd00ff",  # uint16 for a uint8 value
    "ce0000ffff",  # uint32 for a uint16 value
    "cf00000000ffffffff",  # uint64 for a uint32 value
    "d0e0",  # int8 for -32, a negative fixint
    "d005",  # int8 for a positive value
    "d1ff80",  # int16 for -128
    "d10001",  # int16 for a positive value
    "d2ffff8000",  # int32 for -32768
    "d200000001",
    "d3ffffffff80000000",  # int64 for -2**31
    "d30000000000000001",
    "d903616263",  # str8 for a fixstr
    "d91f" + "61" * 31,
    "da00ff" + "61" * 255,  # str16 for a str8
    "db0000ffff" + "61" * 65535,  # str32 for a str16
    "c5000161",  # bin16 for a bin8
    "c500ff" + "00" * 255,
    "c60000ffff" + "00" * 65535,  # bin32 for a bin16
    "dc000101",  # array16 for a fixarray
    "dc000f" + "00" * 15,
    "dd0000ffff" + "00" * 65535,  # array32 for an array16
    "de0001a16101",  # map16 for a fixmap
    "df00000001a16101",  # map32 for a fixmap
    "82a16201a16102",  # keys out of order
    "82a16101a16102",  # duplicate key
    "82a16201a2616102",  # "b" before "aa": ordering is bytewise, not by length
    "810101",  # int key
    "81c4016101",  # bin key
    "8190a0",  # array key
    "81ffa0",  # negative int key
]


@pytest.mark.parametrize("data", NOT_CANONICAL, ids=hex_id)
def test_decode_refuses_every_non_canonical_form(data: str) -> None:
    # The 32-bit forms need more than 65,536 bytes to hold a value that a 16-bit form fits.
    assert decode_error(bytes.fromhex(data), max_size=2 * MAX_SIZE) == "not-canonical"


SIGNED = {"int8": (0xD0, ">b"), "int16": (0xD1, ">h"), "int32": (0xD2, ">i"), "int64": (0xD3, ">q")}


@pytest.mark.parametrize("form", SIGNED)
def test_a_non_negative_integer_in_a_signed_form_is_refused_for_its_sign(form: str) -> None:
    """Non-negative integers have their own forms (positive fixint, uint8..uint64); a signed
    form holding one is refused whatever its length (int16 and uint16 are both 3 bytes), and
    the message says so rather than that a shorter form exists."""
    tag, fmt = SIGNED[form]
    largest = 2 ** (8 * struct.calcsize(fmt) - 1) - 1
    for v in (0, 1, 127, 128, largest):
        if v > largest:
            continue
        with pytest.raises(InvalidRecord) as info:
            decode(bytes([tag]) + struct.pack(fmt, v))
        assert info.value.code == "not-canonical"
        assert f"{form} for the non-negative value {v} " in info.value.message
        assert "positive fixint or uint8, uint16, uint32, uint64" in info.value.message
        assert "shorter" not in info.value.message


@pytest.mark.parametrize(
    ("form", "v", "shorter"),
    [
        ("int8", -32, "a negative fixint"),
        ("int16", -128, "a negative fixint or int8"),
        ("int32", -32768, "a shorter negative form"),
        ("int64", -(2**31), "a shorter negative form"),
    ],
)
def test_a_negative_integer_in_a_longer_form_is_refused(form: str, v: int, shorter: str) -> None:
    tag, fmt = SIGNED[form]
    with pytest.raises(InvalidRecord) as info:
        decode(bytes([tag]) + struct.pack(fmt, v))
    assert info.value.code == "not-canonical"
    assert info.value.message == f"{form} for {v}, which fits {shorter} at offset 0"
    # One less (past the shorter form's range) fits only this form, and is accepted.
    assert decode(bytes([tag]) + struct.pack(fmt, v - 1)) == v - 1


def test_shortest_forms_of_keys_in_order_are_accepted() -> None:
    assert decode(bytes.fromhex("82a2616101a16202")) == {"aa": 1, "b": 2}


FORBIDDEN = {
    "c0": "nil",
    "c2": "false",
    "c3": "true",
    "ca3f800000": "float32",
    "cb3ff0000000000000": "float64",
    "c7010100": "ext8",
    "c800010100": "ext16",
    "c9000000010100": "ext32",
    "d40100": "fixext1",
    "d5010000": "fixext2",
    "d601" + "00" * 4: "fixext4",
    "d701" + "00" * 8: "fixext8",
    "d801" + "00" * 16: "fixext16",
    "d6ff" + "00" * 4: "timestamp32",
    "c1": "reserved",
    "81a161c0": "nil value in a map",
    "9201c3": "bool in an array",
    "81c0a0": "nil key",
    "91" * 7 + "91ca00000000": "float at depth 8",
}


@pytest.mark.parametrize("data", FORBIDDEN, ids=FORBIDDEN.values())
def test_decode_refuses_forbidden_types(data: str) -> None:
    assert decode_error(bytes.fromhex(data)) == "forbidden-type"


@pytest.mark.parametrize(
    "data",
    [
        "a2c080",  # overlong NUL
        "a2c1bf",  # overlong
        "a3e08080",  # overlong 3-byte form
        "a3eda080",  # UTF-16 surrogate U+D800
        "a3edbfbf",  # surrogate U+DFFF
        "a4f4908080",  # above U+10FFFF
        "a1ff",
        "a180",  # lone continuation byte
        "a1c3",  # sequence cut short inside the string
        "81a1ff01",  # invalid key
    ],
)
def test_decode_refuses_invalid_utf8(data: str) -> None:
    assert decode_error(bytes.fromhex(data)) == "bad-utf8"


def test_decode_accepts_every_valid_utf8_width() -> None:
    assert decode(bytes.fromhex("aa61c3a9e697a5f09f9880")) == "aé日😀"


@pytest.mark.parametrize(
    "data",
    ["0000", "8000", "90c0", "a16161", "c40000"],
)
def test_decode_refuses_trailing_bytes(data: str) -> None:
    assert decode_error(bytes.fromhex(data)) == "trailing-bytes"


def test_depth_limit() -> None:
    assert decode(encode(nested(8))) == nested(8)
    assert decode_error(bytes.fromhex("91" * 8 + "90")) == "too-deep"
    maps = "81a161" * 8 + "80"
    assert decode_error(bytes.fromhex(maps)) == "too-deep"
    assert decode(bytes.fromhex("81a161" * 7 + "80")) == {
        "a": {"a": {"a": {"a": {"a": {"a": {"a": {}}}}}}}
    }
    assert decode(bytes.fromhex("91" * 2 + "90"), max_depth=3) == [[[]]]
    with pytest.raises(InvalidRecord, match="too-deep"):
        decode(bytes.fromhex("91" * 3 + "90"), max_depth=3)


def test_size_limit() -> None:
    at_limit = b"\xc5" + (MAX_SIZE - 3).to_bytes(2, "big") + bytes(MAX_SIZE - 3)
    assert len(at_limit) == MAX_SIZE
    assert decode(at_limit) == bytes(MAX_SIZE - 3)
    over = b"\xc5" + (MAX_SIZE - 2).to_bytes(2, "big") + bytes(MAX_SIZE - 2)
    assert decode_error(over) == "too-large"
    assert decode_error(b"\x00" * (MAX_SIZE + 1)) == "too-large"  # checked before anything else
    with pytest.raises(InvalidRecord, match="too-large"):
        decode(b"\xa3abc", max_size=3)


@pytest.mark.parametrize(
    "data",
    [
        "",
        "cc",
        "cd01",
        "ce000100",
        "cf00000001000000",
        "d0",
        "d1ff",
        "d2ffff7f",
        "d3ffffffff7fffff",
        "a1",
        "a261",
        "d9",
        "d920",
        "da01",
        "db000100",
        "c4",
        "c40261",
        "c501",
        "c6000100",
        "92",
        "9201",
        "dc00",
        "dd000100",
        "81",
        "81a161",
        "82a16101",
        "de00",
        "df000100",
    ],
)
def test_decode_refuses_truncated_input(data: str) -> None:
    assert decode_error(bytes.fromhex(data)) == "truncated"


@pytest.mark.parametrize(
    "data",
    [
        "ddffffffff",  # array32 of 2**32-1 items
        "dfffffffff",  # map32 of 2**32-1 entries
        "dbffffffff",  # str32 of 4 GiB
        "c6ffffffff",  # bin32 of 4 GiB
        "dcffff",  # array16 of 65535 items
        "deffff",
        "daffff",
        "c5ffff",
        "9f",  # fixarray of 15 items, none present
        "8f",
        "91dfffffffff",  # a huge count one level down
        "dc0010" + "00" * 15,  # 16 items declared, 15 present
        "de0010" + "a16100" * 8,  # 16 entries declared, 16 bytes present (too few for a map)
    ],
)
def test_huge_declared_counts_fail_fast_without_allocating(data: str) -> None:
    tracemalloc.start()
    try:
        assert decode_error(bytes.fromhex(data)) == "truncated"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_decode_accepts_bytes_like_input() -> None:
    data = encode({"k": [1, b"x"]})
    assert decode(bytearray(data)) == decode(memoryview(data)) == {"k": [1, b"x"]}


def test_errors_are_remote_errors_with_offsets() -> None:
    with pytest.raises(InvalidRecord) as info:
        decode(bytes.fromhex("8101a0"))
    assert info.value.code == "not-canonical"
    assert "offset 1" in info.value.message
    assert str(info.value).startswith("not-canonical: ")


# --------------------------------------------------------------------------------------------
# Properties

BOUNDARY_INTS = [
    0,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
]
integers = st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(BOUNDARY_INTS)
scalars = integers | st.text(max_size=40) | st.binary(max_size=40)
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=24,
).filter(lambda v: depth_of(v) <= MAX_DEPTH)


def _canonical_order(value: object) -> object:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
        return {k: _canonical_order(v) for k, v in items}
    if isinstance(value, list):
        return [_canonical_order(v) for v in value]
    return value


@FUZZ
@given(values)
def test_round_trip_and_determinism(value: Value) -> None:
    data = encode(value)
    assert decode(data, max_size=len(data)) == value
    assert encode(value) == data
    assert encode(decode(data)) == data


@FUZZ
@given(values)
def test_msgpack_agrees_with_the_encoder(value: Value) -> None:
    data = encode(value)
    # An independent decoder reads the same value ...
    assert msgpack.unpackb(data, raw=False) == value
    # ... and msgpack's packer, given keys in canonical order, writes the same bytes.
    assert msgpack.packb(_canonical_order(value), use_bin_type=True) == data


def _check_any_bytes(data: bytes) -> None:
    try:
        value = decode(data)
    except InvalidRecord:
        return
    # Canonical uniqueness: whatever is accepted is the one encoding of its value.
    assert encode(value) == data


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_invalid_record(data: bytes) -> None:
    _check_any_bytes(data)


#: Type bytes and small lengths: random bytes built from these reach deep into the decoder.
TYPE_BYTES = sorted(
    {int(h[:2], 16) for h in [*NOT_CANONICAL, *FORBIDDEN]}
    | {0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0x90, 0x91, 0xA0, 0xA1, 0xC4, 0xCC, 0xE0, 0xFF}
)


@FUZZ
@given(st.lists(st.sampled_from(TYPE_BYTES), max_size=40).map(bytes))
def test_bytes_built_from_interesting_type_bytes(data: bytes) -> None:
    _check_any_bytes(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(encode(draw(values)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[at]
        elif data:
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(mutated())
def test_mutated_encodings_decode_or_raise_invalid_record(data: bytes) -> None:
    _check_any_bytes(data)


@FUZZ
@given(values)
def test_the_fast_encoder_writes_what_the_strict_one_writes(value: Value) -> None:
    strict = bytearray()
    codec._encode_into(value, strict, 0)
    fast = codec._fast_encode(value)
    assert fast == bytes(strict)
    # Tuples are sequences too, and key insertion order never matters.
    if isinstance(value, list):
        assert codec._fast_encode(tuple(value)) == bytes(strict)
    if isinstance(value, dict):
        assert codec._fast_encode(dict(reversed(value.items()))) == bytes(strict)


@pytest.mark.parametrize(
    "value",
    [
        True,
        None,
        1.5,
        2**64,
        -(2**63) - 1,
        "\ud800",
        {"k": "\udfff"},
        {1: "x"},
        {"a": None},
        [b"x", bytearray(b"y")],
        {"nested": [[[[[[[[]]]]]]]]},
    ],
    ids=repr,
)
def test_the_fast_encoder_leaves_the_rest_to_the_strict_one(value: object) -> None:
    """What the plain types cannot say, the fast path hands over (None); ``encode`` then
    either refuses it with the strict encoder's code or encodes it the strict way."""
    assert codec._fast_encode(value) is None
    strict = bytearray()
    refusal: str | None = None
    try:
        codec._encode_into(value, strict, 0)
    except LocalProtocolError as exc:
        refusal = exc.code
    if refusal is None:
        assert encode(value) == bytes(strict)
    else:
        with pytest.raises(LocalProtocolError) as info:
            encode(value)
        assert info.value.code == refusal
