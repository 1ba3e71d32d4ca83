"""Bundle files: records exported from one ledger and imported into another (section 6).

A bundle is the ASCII line ``commons-bundle-v1`` and a newline (18 bytes), then records, each
preceded by its length as an unsigned LEB128 varint. Reading is sans-IO: a
:class:`BundleReader` is fed bytes in chunks of any size and hands back complete record byte
strings, so a multi-gigabyte file is read in constant memory, and a file cut short or damaged
part-way still yields every complete record before the damage.

Framing damage (a wrong header, a varint that is malformed, zero, or declares more than
65,536 bytes, a file that ends inside a record) stops reading with a :class:`BundleError` that
says where (byte offset and record index). Whether each *record* is well-formed is the
caller's question, answered per record by :func:`protocol.validation.parse_record`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from protocol.errors import BundleError, LocalProtocolError
from protocol.record import MAX_RECORD_SIZE

__all__ = [
    "HEADER",
    "BundleReader",
    "BundleWriter",
    "encode_bundle",
    "encode_varint",
    "iter_bundle",
]

HEADER: Final = b"commons-bundle-v1\n"
#: A record length never needs more than three LEB128 bytes (65,536 < 2**21).
MAX_VARINT_BYTES: Final = 3


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
    """Incremental bundle parser: ``feed(chunk)`` returns the records completed by it.

    When a chunk holds good records followed by damage, ``feed`` returns the good records and
    the *next* call (``feed`` or ``close``) raises the :class:`BundleError`. Call ``close()``
    at end of input: it raises if the input ended inside the header or a record, or if damage
    is pending. After an error the reader stays broken and every call raises the same error.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0  # bytes of the input consumed before the buffer's first byte
        self._index = 0  # records returned so far
        self._header_done = False
        self._error: BundleError | None = None

    @property
    def records_read(self) -> int:
        return self._index

    @property
    def broken(self) -> bool:
        """True once damage has been found (raised already, or pending for the next call)."""
        return self._error is not None

    @property
    def offset(self) -> int:
        """Bytes consumed so far: the end of the last complete record (or the header)."""
        return self._offset

    def _fail(self, code: str, message: str) -> BundleError:
        self._error = BundleError(
            code,
            f"{message} (record {self._index}, byte offset {self._offset})",
            offset=self._offset,
            index=self._index,
        )
        return self._error

    def _damaged(self, out: list[bytes], code: str, message: str) -> list[bytes]:
        """Record the damage; hand back the records completed before it, if any."""
        error = self._fail(code, message)
        if not out:
            raise error
        return out

    def _consume(self, n: int) -> None:
        self._offset += n
        del self._buffer[:n]

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._error is not None:
            raise self._error
        self._buffer += chunk
        out: list[bytes] = []
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
                return self._damaged(out, "too-large", "a length varint longer than 3 bytes")
            if not complete:
                break  # the varint continues in the next chunk
            if length == 0 or length > MAX_RECORD_SIZE:
                self._consume(pos)
                what = "zero" if length == 0 else f"{length} bytes, the limit is {MAX_RECORD_SIZE}"
                return self._damaged(out, "bad-length", f"a record length of {what}")
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
        if self._buffer:
            raise self._fail(
                "truncated", f"the file ends inside a record ({len(self._buffer)} bytes left)"
            )


def iter_bundle(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield every complete record from ``chunks``; raise ``BundleError`` at damage.

    Records before the damage have already been yielded when the error is raised.
    """
    reader = BundleReader()
    for chunk in chunks:
        yield from reader.feed(chunk)
    reader.close()
