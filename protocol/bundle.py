"""Bundle files: records exported from one ledger and imported into another (section 6).

A bundle is the ASCII line ``commons-bundle-v1`` and a newline (18 bytes), then records, each
preceded by its length as an unsigned LEB128 varint. Reading is sans-IO: a
:class:`BundleReader` is fed bytes in chunks of any size and hands back complete record byte
strings, so a multi-gigabyte file is read in constant memory, and a file cut short or damaged
part-way still yields every complete record before the damage.

A record whose length is well-formed but over 65,536 bytes is one bad record, not a damaged
file: the reader passes over exactly that many bytes without keeping them, hands back an
:class:`OversizedRecord` in the record's place (code ``record-too-large``, with its index),
and goes on with the next record. Only framing damage stops reading, with a
:class:`BundleError` that says where (byte offset and record index): a wrong header, a length
varint that is not minimal, zero, or longer than nine bytes, or a file that ends inside a
record. Whether each record that was read is well-formed is the caller's question, answered
per record by :func:`protocol.validation.parse_record`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from protocol.errors import BundleError, LocalProtocolError
from protocol.record import MAX_RECORD_SIZE

__all__ = [
    "HEADER",
    "BundleReader",
    "BundleWriter",
    "Entry",
    "OversizedRecord",
    "encode_bundle",
    "encode_varint",
    "iter_bundle",
]

HEADER: Final = b"commons-bundle-v1\n"
#: The longest length varint read. A record that fits the limit needs at most three bytes
#: (65,536 < 2**21); longer, well-formed lengths are read so that an oversized record can be
#: passed over. Nine bytes hold every length below 2**63, beyond which no file reaches, so a
#: longer varint is damage, and reading one costs a bounded amount of work.
MAX_VARINT_BYTES: Final = 9


@dataclass(frozen=True, slots=True)
class OversizedRecord:
    """In a record's place: its length prefix declares more than ``MAX_RECORD_SIZE`` bytes.

    The reader has passed over those bytes without keeping any of them; the caller refuses
    this one record by its ``index`` and carries on with the records after it.
    """

    index: int  # its position among the bundle's records, counted from 0
    offset: int  # the byte offset of its length prefix in the bundle
    length: int  # the length the prefix declares

    code: ClassVar[str] = "record-too-large"

    @property
    def message(self) -> str:
        return f"a record of {self.length} bytes, the limit is {MAX_RECORD_SIZE} (not read)"

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


#: What a reader hands back for each record of a bundle, in file order.
Entry: TypeAlias = bytes | OversizedRecord


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128: seven bits a byte, least significant group first."""
    if n < 0:
        raise LocalProtocolError("bad-length", "a varint is unsigned")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class BundleWriter:
    """Frames records for a bundle; ``header()`` once, then ``frame(raw)`` per record."""

    @staticmethod
    def header() -> bytes:
        return HEADER

    @staticmethod
    def frame(raw: bytes) -> bytes:
        if not 0 < len(raw) <= MAX_RECORD_SIZE:
            raise LocalProtocolError("too-large", f"a record of {len(raw)} bytes cannot be framed")
        return encode_varint(len(raw)) + raw


def encode_bundle(records: Iterable[bytes]) -> bytes:
    """A whole bundle in memory (small exports and tests)."""
    parts = [HEADER]
    parts.extend(BundleWriter.frame(raw) for raw in records)
    return b"".join(parts)


class BundleReader:
    """Incremental bundle parser: ``feed(chunk)`` returns the entries completed by it.

    Each entry is a record's bytes, or an :class:`OversizedRecord` in the place of a record
    too large to read; either way it counts as one record (``records_read``, the indexes).
    An oversized record is returned once its last byte has been passed over, so entries come
    back in file order and a file that ends inside one is truncated like any other.

    When a chunk holds good records followed by damage, ``feed`` returns the good records and
    the *next* call (``feed`` or ``close``) raises the :class:`BundleError`. Call ``close()``
    at end of input: it raises if the input ended inside the header or a record, or if damage
    is pending. After an error the reader stays broken and every call raises the same error.

    Memory: the reader holds at most one incomplete record of at most ``MAX_RECORD_SIZE``
    bytes and its prefix, plus the chunk being fed; the bytes of an oversized record are
    counted off as they arrive and never kept, however many chunks they span.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0  # bytes of the input consumed before the buffer's first byte
        self._index = 0  # records returned so far
        self._header_done = False
        self._error: BundleError | None = None
        # The oversized record being passed over, and how many of its bytes are still to come.
        self._skipping: OversizedRecord | None = None
        self._skip_left = 0

    @property
    def records_read(self) -> int:
        """Entries returned so far, oversized records included."""
        return self._index

    @property
    def broken(self) -> bool:
        """True once damage has been found (raised already, or pending for the next call)."""
        return self._error is not None

    @property
    def offset(self) -> int:
        """Bytes consumed so far: the end of the last complete record (or the header)."""
        return self._offset

    @property
    def buffered(self) -> int:
        """Bytes held for a record not yet complete (never those of an oversized record)."""
        return len(self._buffer)

    def _fail(self, code: str, message: str) -> BundleError:
        self._error = BundleError(
            code,
            f"{message} (record {self._index}, byte offset {self._offset})",
            offset=self._offset,
            index=self._index,
        )
        return self._error

    def _damaged(self, out: list[Entry], code: str, message: str) -> list[Entry]:
        """Record the damage; hand back the records completed before it, if any."""
        error = self._fail(code, message)
        if not out:
            raise error
        return out

    def _consume(self, n: int) -> None:
        self._offset += n
        del self._buffer[:n]

    def _skip(self, chunk: bytes, out: list[Entry]) -> bytes | memoryview:
        """Count off the bytes of the oversized record being passed over; what follows it."""
        skipping = self._skipping
        assert skipping is not None
        n = min(self._skip_left, len(chunk))
        self._skip_left -= n
        if self._skip_left:
            return b""
        out.append(skipping)
        self._index += 1
        self._offset = skipping.offset + len(encode_varint(skipping.length)) + skipping.length
        self._skipping = None
        return memoryview(chunk)[n:]

    def feed(self, chunk: bytes) -> list[Entry]:
        if self._error is not None:
            raise self._error
        out: list[Entry] = []
        rest = self._skip(chunk, out) if self._skipping is not None else chunk
        self._buffer += rest
        if not self._header_done:
            have = bytes(self._buffer[: len(HEADER)])
            if not HEADER.startswith(have):
                raise self._fail("bad-header", "not a Commons bundle (no commons-bundle-v1 line)")
            if len(self._buffer) < len(HEADER):
                return out
            self._consume(len(HEADER))
            self._header_done = True
        buffer = self._buffer
        pos = 0
        end = len(buffer)
        while pos < end:
            length = 0
            i = pos
            complete = False
            for shift in range(0, 7 * MAX_VARINT_BYTES, 7):
                if i == end:
                    break
                byte = buffer[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    if byte == 0 and shift:
                        self._consume(pos)
                        return self._damaged(out, "bad-length", "a length varint is not minimal")
                    break
            else:
                self._consume(pos)
                message = f"a length varint longer than {MAX_VARINT_BYTES} bytes"
                return self._damaged(out, "too-large", message)
            if not complete:
                break  # the varint continues in the next chunk
            if length == 0:
                self._consume(pos)
                return self._damaged(out, "bad-length", "a record length of zero")
            if length > MAX_RECORD_SIZE:
                oversized = OversizedRecord(
                    index=self._index, offset=self._offset + pos, length=length
                )
                if end - i < length:
                    # The record runs into later chunks: pass over its bytes as they come.
                    self._consume(pos)
                    self._skipping = oversized
                    self._skip_left = length - (end - i)
                    buffer.clear()
                    return out
                out.append(oversized)
            else:
                if end - i < length:
                    break  # the record continues in the next chunk
                out.append(bytes(buffer[i : i + length]))
            self._index += 1
            pos = i + length
        self._consume(pos)
        return out

    def close(self) -> None:
        """Declare end of input; raise ``BundleError`` if it ended mid-header or mid-record."""
        if self._error is not None:
            raise self._error
        if not self._header_done:
            raise self._fail("bad-header", "the file ends before the commons-bundle-v1 line")
        if self._skipping is not None:
            length = self._skipping.length
            raise self._fail(
                "truncated",
                f"the file ends inside a record that declares {length} bytes "
                f"({self._skip_left} missing)",
            )
        if self._buffer:
            raise self._fail(
                "truncated", f"the file ends inside a record ({len(self._buffer)} bytes left)"
            )


def iter_bundle(chunks: Iterable[bytes]) -> Iterator[Entry]:
    """Yield every entry (record or :class:`OversizedRecord`) from ``chunks``; raise
    ``BundleError`` at damage.

    Entries before the damage have already been yielded when the error is raised.
    """
    reader = BundleReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.close()
