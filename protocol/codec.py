"""Canonical MessagePack: the one byte string that encodes a value (docs/RECORD-FORMAT.md §2).

The value model is deliberately small: ``int``, ``str``, ``bytes``, ``list`` (or ``tuple``) and
``dict`` with ``str`` keys. Everything else MessagePack can express (nil, bool, float, ext,
timestamps) is not allowed anywhere.

``encode`` writes the canonical form: map entries sorted by the keys' UTF-8 bytes, every
length and integer in its shortest encoding, bytes always as bin and text always as str.

``decode`` is strict and bounded. It reads the input once, front to back, and refuses a
non-shortest length or integer, an out-of-order or duplicate key, a forbidden type, invalid
UTF-8, nesting deeper than ``MAX_DEPTH`` or trailing bytes the moment it sees them. Every
declared length or count is checked against the bytes actually remaining *before* anything is
allocated for it, so a hostile 5-byte header cannot make it reserve gigabytes. Because each
element's encoding is checked to be the shortest one and map keys to be in canonical order,
an accepted input is exactly ``encode(decode(input))``: decode, re-encode and compare, done
in a single pass. Every failure raises :class:`protocol.errors.InvalidRecord` with one of the
codes below, never another exception.

Speed: ``decode`` first tries msgpack's C decoder and accepts its result only when every value
is in the model, every map's keys are str in strictly ascending order (code point order is
UTF-8 byte order), nothing is nested deeper than ``max_depth``, and msgpack's own encoder,
which always writes the shortest form, gives back exactly the input. Anything else, or any
error, goes to the strict decoder below, which accepts or refuses the input and names the
problem; so the fast path changes no decision, only the time (about 3 instead of 10 to 20
microseconds for a record).

Error codes: ``too-large``, ``truncated``, ``trailing-bytes``, ``too-deep``,
``forbidden-type`` (nil, bool, float, ext, or a reserved byte), ``not-canonical`` (a longer
than necessary encoding, unsorted or duplicate map keys, a non-str map key), ``bad-utf8``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import msgpack

from protocol.errors import InvalidRecord, LocalProtocolError

__all__ = ["MAX_DEPTH", "MAX_SIZE", "Value", "decode", "encode", "unpack_trusted"]

#: The largest encoded value (a whole record) accepted, in bytes.
MAX_SIZE = 65_536
#: The deepest nesting of maps and arrays accepted; the top-level map is depth 1.
MAX_DEPTH = 8

Value: TypeAlias = int | str | bytes | list["Value"] | dict[str, "Value"]

_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1

_unpack_u16 = struct.Struct(">H").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_u64 = struct.Struct(">Q").unpack_from
_unpack_i8 = struct.Struct(">b").unpack_from
_unpack_i16 = struct.Struct(">h").unpack_from
_unpack_i32 = struct.Struct(">i").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from


# --------------------------------------------------------------------------------------------
# Encoding


def encode(value: object) -> bytes:
    """Return the canonical MessagePack encoding of ``value``.

    Raises :class:`LocalProtocolError` (code ``unencodable``) for a value outside the model
    (a bool, float, None, a non-str map key, an int outside int64/uint64 range).
    """
    fast = _fast_encode(value)
    if fast is not None:
        return fast
    out = bytearray()
    _encode_into(value, out, 0)
    return bytes(out)


def _fast_encode(value: object) -> bytes | None:
    """The canonical encoding by msgpack's C encoder, or None when the strict encoder must
    decide (a type outside the plain model types, an int out of range, a lone surrogate).

    msgpack writes every integer, length and header in its shortest form, as the model
    requires (``_fast_decode`` relies on the same), so only map keys need putting in order:
    for valid text, code point order is UTF-8 byte order. About ten times faster than the
    strict encoder on a frame of 4,096 records; tests check both give the same bytes.
    """
    prepared = _prepared(value, 0)
    if prepared is None:
        return None
    try:
        data: bytes = _packb(prepared)
    except Exception:  # int out of range, unencodable text: the strict encoder says which
        return None
    return data


def _prepared(value: object, depth: int) -> object | None:
    """``value`` with every map's keys in canonical order, or None if not of the plain types."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        return None
    if kind is list or kind is tuple:
        items = []
        for item in value:  # type: ignore[attr-defined]
            ready = item if type(item) in _SCALARS else _prepared(item, depth + 1)
            if ready is None:
                return None
            items.append(ready)
        return items
    if kind is dict:
        mapping: dict[Any, Any] = value  # type: ignore[assignment]
        if not all(type(key) is str for key in mapping):
            return None
        ordered: dict[str, object] = {}
        for key in sorted(mapping):
            item = mapping[key]
            ready = item if type(item) in _SCALARS else _prepared(item, depth + 1)
            if ready is None:
                return None
            ordered[key] = ready
        return ordered
    return None


def _encode_into(value: object, out: bytearray, depth: int) -> None:
    # bool is a subclass of int: refuse it explicitly, it is not part of the value model.
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise LocalProtocolError("unencodable", f"{type(value).__name__} is not allowed")
    if isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, str):
        data = _utf8(value)
        n = len(data)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += b"\xd9" + n.to_bytes(1, "big")
        elif n < 0x10000:
            out += b"\xda" + n.to_bytes(2, "big")
        else:
            out += b"\xdb" + _len32(n)
        out += data
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        n = len(data)
        if n < 0x100:
            out += b"\xc4" + n.to_bytes(1, "big")
        elif n < 0x10000:
            out += b"\xc5" + n.to_bytes(2, "big")
        else:
            out += b"\xc6" + _len32(n)
        out += data
    elif isinstance(value, Mapping):
        _check_depth(depth)
        items: list[tuple[bytes, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise LocalProtocolError("unencodable", "map keys must be str")
            items.append((_utf8(key), item))
        items.sort(key=lambda kv: kv[0])
        n = len(items)
        if n < 16:
            out.append(0x80 | n)
        elif n < 0x10000:
            out += b"\xde" + n.to_bytes(2, "big")
        else:
            out += b"\xdf" + _len32(n)
        for key_bytes, item in items:
            _encode_into(key_bytes.decode("utf-8"), out, depth + 1)
            _encode_into(item, out, depth + 1)
    elif isinstance(value, Sequence):
        _check_depth(depth)
        n = len(value)
        if n < 16:
            out.append(0x90 | n)
        elif n < 0x10000:
            out += b"\xdc" + n.to_bytes(2, "big")
        else:
            out += b"\xdd" + _len32(n)
        for item in value:
            _encode_into(item, out, depth + 1)
    else:
        raise LocalProtocolError("unencodable", f"{type(value).__name__} is not allowed")


def _check_depth(depth: int) -> None:
    """Refuse a container nested deeper than ``MAX_DEPTH`` (``depth`` containers enclose it).

    The check is on containers, not on every value: nine nested *empty* arrays hold no
    scalar at depth nine, yet ``decode`` refuses them, so ``encode`` must refuse them too.
    """
    if depth >= MAX_DEPTH:
        raise LocalProtocolError("unencodable", f"nesting deeper than {MAX_DEPTH}")


def _utf8(text: str) -> bytes:
    """The UTF-8 bytes of ``text``; a lone surrogate has none, so it is outside the model."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("unencodable", "text with a lone surrogate") from None


def _len32(n: int) -> bytes:
    if n > 0xFFFFFFFF:
        raise LocalProtocolError("unencodable", "length exceeds 2**32 - 1")
    return n.to_bytes(4, "big")


def _encode_int(n: int, out: bytearray) -> None:
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out += b"\xcc" + n.to_bytes(1, "big")
        elif n < 0x10000:
            out += b"\xcd" + n.to_bytes(2, "big")
        elif n < 0x100000000:
            out += b"\xce" + n.to_bytes(4, "big")
        elif n <= _UINT_MAX:
            out += b"\xcf" + n.to_bytes(8, "big")
        else:
            raise LocalProtocolError("unencodable", "integer exceeds uint64")
    elif n >= -32:
        out.append(n & 0xFF)
    elif n >= -0x80:
        out += b"\xd0" + n.to_bytes(1, "big", signed=True)
    elif n >= -0x8000:
        out += b"\xd1" + n.to_bytes(2, "big", signed=True)
    elif n >= -0x80000000:
        out += b"\xd2" + n.to_bytes(4, "big", signed=True)
    elif n >= _INT_MIN:
        out += b"\xd3" + n.to_bytes(8, "big", signed=True)
    else:
        raise LocalProtocolError("unencodable", "integer below int64")


# --------------------------------------------------------------------------------------------
# Decoding


def decode(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH) -> Value:
    """Decode one canonical MessagePack value that fills ``data`` exactly.

    Raises :class:`InvalidRecord` for anything that is not the canonical encoding of a value
    in the model, or that exceeds ``max_size`` bytes or ``max_depth`` levels of nesting.
    """
    if len(data) > max_size:
        raise InvalidRecord("too-large", f"{len(data)} bytes, the limit is {max_size}")
    if not data:
        raise InvalidRecord("truncated", "empty input")
    data = bytes(data)
    fast = _fast_decode(data, max_depth)
    if fast is not None:
        return fast
    decoder = _Decoder(data, max_depth)
    value = decoder.value(1)
    if decoder.pos != len(data):
        raise InvalidRecord(
            "trailing-bytes", f"{len(data) - decoder.pos} bytes after the value at {decoder.pos}"
        )
    return value


_unpackb = msgpack.unpackb


def unpack_trusted(data: bytes) -> Any:
    """The value of bytes that :func:`decode` accepted before (a record read back from this
    node's own store), by msgpack's C decoder alone: no check of the model or the canonical
    form, which those bytes passed when they were stored. Arrays come back as lists."""
    return _unpackb(data)


#: The scalar types of the model (exactly these: bool is a subclass of int, not int).
_SCALARS: frozenset[type] = frozenset((int, str, bytes))
#: msgpack's encoder writes every integer, length and header in its shortest form.
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _fast_decode(data: bytes, max_depth: int) -> Value | None:
    """The value of ``data`` if msgpack's C decoder reads it and it is canonical, else None.

    None says nothing about ``data``: the strict decoder then decides (and names the error).
    """
    try:
        value = _unpackb(data)  # str keys only; every length bounded by len(data)
    except Exception:
        return None
    if type(value) not in _SCALARS and not _in_model(value, 1, max_depth):
        return None
    try:
        if _packb(value) != data:  # a longer form, a duplicate key (collapsed), an int out
            return None  # of range: the bytes differ, the strict decoder will say how
    except Exception:
        return None
    return value  # type: ignore[no-any-return]


def _in_model(value: Any, depth: int, max_depth: int) -> bool:
    """Only int, str, bytes, lists and maps with str keys in ascending order, containers at
    most ``max_depth`` deep (``value`` is at ``depth``)."""
    kind = type(value)
    if kind is dict:
        if depth > max_depth:
            return False
        previous: str | None = None
        for key, item in value.items():
            if type(key) is not str or (previous is not None and key <= previous):
                return False
            previous = key
            if type(item) not in _SCALARS and not _in_model(item, depth + 1, max_depth):
                return False
        return True
    if kind is list:
        if depth > max_depth:
            return False
        for item in value:
            if type(item) not in _SCALARS and not _in_model(item, depth + 1, max_depth):
                return False
        return True
    return kind in _SCALARS


class _Decoder:
    __slots__ = ("data", "end", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.max_depth = max_depth

    def _need(self, n: int) -> int:
        """Reserve ``n`` bytes at the cursor and return their start offset."""
        start = self.pos
        if self.end - start < n:
            raise InvalidRecord(
                "truncated", f"needed {n} bytes at offset {start}, {self.end - start} remain"
            )
        self.pos = start + n
        return start

    def _noncanonical(self, at: int, what: str) -> InvalidRecord:
        return InvalidRecord("not-canonical", f"{what} at offset {at}")

    def _signed(self, at: int, form: str, v: int, shorter: str) -> InvalidRecord:
        """The refusal of a signed form the value should not have. A non-negative value has
        its own forms, whatever its size (an int16 holding 1 is as long as a uint16 would
        be, and still wrong); a negative one is refused only when a shorter form holds it."""
        if v >= 0:
            what = (
                f"{form} for the non-negative value {v} (non-negative integers use "
                "positive fixint or uint8, uint16, uint32, uint64)"
            )
        else:
            what = f"{form} for {v}, which fits {shorter}"
        return self._noncanonical(at, what)

    def value(self, depth: int) -> Value:
        at = self.pos
        b = self.data[self._need(1)]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0xA0 <= b <= 0xBF:
            return self._str(b & 0x1F, at)
        if 0x90 <= b <= 0x9F:
            return self._array(b & 0x0F, depth, at)
        if 0x80 <= b <= 0x8F:
            return self._map(b & 0x0F, depth, at)
        data = self.data
        if b == 0xCC:
            v = data[self._need(1)]
            if v < 0x80:
                raise self._noncanonical(at, "uint8 for a fixint value")
            return v
        if b == 0xCD:
            v = _unpack_u16(data, self._need(2))[0]
            if v < 0x100:
                raise self._noncanonical(at, "uint16 for a smaller value")
            return int(v)
        if b == 0xCE:
            v = _unpack_u32(data, self._need(4))[0]
            if v < 0x10000:
                raise self._noncanonical(at, "uint32 for a smaller value")
            return int(v)
        if b == 0xCF:
            v = _unpack_u64(data, self._need(8))[0]
            if v < 0x100000000:
                raise self._noncanonical(at, "uint64 for a smaller value")
            return int(v)
        if b == 0xD0:
            v = _unpack_i8(data, self._need(1))[0]
            if v >= -32:
                raise self._signed(at, "int8", v, "a negative fixint")
            return int(v)
        if b == 0xD1:
            v = _unpack_i16(data, self._need(2))[0]
            if v >= -0x80:
                raise self._signed(at, "int16", v, "a negative fixint or int8")
            return int(v)
        if b == 0xD2:
            v = _unpack_i32(data, self._need(4))[0]
            if v >= -0x8000:
                raise self._signed(at, "int32", v, "a shorter negative form")
            return int(v)
        if b == 0xD3:
            v = _unpack_i64(data, self._need(8))[0]
            if v >= -0x80000000:
                raise self._signed(at, "int64", v, "a shorter negative form")
            return int(v)
        if b == 0xD9:
            n = data[self._need(1)]
            if n < 32:
                raise self._noncanonical(at, "str8 for a string that fits fixstr")
            return self._str(n, at)
        if b == 0xDA:
            n = _unpack_u16(data, self._need(2))[0]
            if n < 0x100:
                raise self._noncanonical(at, "str16 for a string that fits str8")
            return self._str(n, at)
        if b == 0xDB:
            n = _unpack_u32(data, self._need(4))[0]
            if n < 0x10000:
                raise self._noncanonical(at, "str32 for a string that fits str16")
            return self._str(n, at)
        if b == 0xC4:
            n = data[self._need(1)]
            return data[self._need(n) : self.pos]
        if b == 0xC5:
            n = _unpack_u16(data, self._need(2))[0]
            if n < 0x100:
                raise self._noncanonical(at, "bin16 for bytes that fit bin8")
            return data[self._need(n) : self.pos]
        if b == 0xC6:
            n = _unpack_u32(data, self._need(4))[0]
            if n < 0x10000:
                raise self._noncanonical(at, "bin32 for bytes that fit bin16")
            return data[self._need(n) : self.pos]
        if b == 0xDC:
            n = _unpack_u16(data, self._need(2))[0]
            if n < 16:
                raise self._noncanonical(at, "array16 for an array that fits fixarray")
            return self._array(n, depth, at)
        if b == 0xDD:
            n = _unpack_u32(data, self._need(4))[0]
            if n < 0x10000:
                raise self._noncanonical(at, "array32 for an array that fits array16")
            return self._array(n, depth, at)
        if b == 0xDE:
            n = _unpack_u16(data, self._need(2))[0]
            if n < 16:
                raise self._noncanonical(at, "map16 for a map that fits fixmap")
            return self._map(n, depth, at)
        if b == 0xDF:
            n = _unpack_u32(data, self._need(4))[0]
            if n < 0x10000:
                raise self._noncanonical(at, "map32 for a map that fits map16")
            return self._map(n, depth, at)
        raise InvalidRecord("forbidden-type", f"{_FORBIDDEN.get(b, 'reserved byte')} at {at}")

    def _str(self, n: int, at: int) -> str:
        start = self._need(n)
        try:
            return self.data[start : self.pos].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRecord("bad-utf8", f"string at offset {at} is not valid UTF-8") from None

    def _enter(self, depth: int, n: int, at: int, per_item: int) -> None:
        if depth > self.max_depth:
            raise InvalidRecord("too-deep", f"nesting deeper than {self.max_depth} at {at}")
        # Every element takes at least one byte: refuse a count the input cannot hold before
        # building anything for it.
        if n * per_item > self.end - self.pos:
            raise InvalidRecord("truncated", f"container at offset {at} declares {n} items")

    def _array(self, n: int, depth: int, at: int) -> list[Value]:
        self._enter(depth, n, at, 1)
        return [self.value(depth + 1) for _ in range(n)]

    def _map(self, n: int, depth: int, at: int) -> dict[str, Value]:
        self._enter(depth, n, at, 2)
        result: dict[str, Value] = {}
        previous: bytes | None = None
        for _ in range(n):
            key_at = self.pos
            key = self.value(depth + 1)
            if not isinstance(key, str):
                raise self._noncanonical(key_at, "a map key that is not a str")
            # Valid UTF-8 has one encoding, so this is exactly the key's bytes on the wire.
            key_bytes = key.encode("utf-8")
            if previous is not None and key_bytes <= previous:
                what = "a duplicate map key" if key_bytes == previous else "map keys out of order"
                raise self._noncanonical(key_at, what)
            previous = key_bytes
            result[key] = self.value(depth + 1)
        return result


_FORBIDDEN = {
    0xC0: "nil",
    0xC2: "bool",
    0xC3: "bool",
    0xCA: "float32",
    0xCB: "float64",
    0xC7: "ext8",
    0xC8: "ext16",
    0xC9: "ext32",
    0xD4: "fixext1",
    0xD5: "fixext2",
    0xD6: "fixext4",
    0xD7: "fixext8",
    0xD8: "fixext16",
    0xC1: "reserved byte 0xc1",
}
