"""Negentropy protocol v1: range-based set reconciliation, sans-IO.

Wire-compatible with the reference implementations of hoytech/negentropy (whose repository holds
the specification, ``docs/negentropy-protocol-v1.md``): the same varints, bounds, modes and
fingerprints, and the same choices wherever the spec leaves room (16 buckets per split, ranges
of fewer than 32 items sent as id lists, the frame-size-limit behaviour), so that our messages
are byte-for-byte the ones the reference sends for the same sets.

Nothing here does I/O. A session is driven the way h11 drives HTTP::

    storage = Storage(items)                  # items: iterable of (timestamp, 32-byte id)
    client = Negentropy(storage)
    message = client.initiate()               # send to the peer ...
    while message is not None:
        reply = ...                           # ... and get the peer's reply
        message = client.reconcile(reply)     # None once reconciliation is complete
    client.have, client.need                  # ids only we have / only the peer has

    server = Negentropy(storage)              # the other side never calls initiate()
    reply = server.reconcile(message)         # always returns a reply (bytes)

The initiator gathers ``have`` (ids we have and the peer lacks) and ``need`` (ids the peer has
and we lack) over the whole session; ``drain()`` hands over what was gathered since the last
call, for callers that act round by round; each id is reported once per session. A responder
learns nothing: it only answers. ``need`` is the peer's claim: an id list carries ids without
their timestamps, so an id the peer lists in the wrong range (a bug, or on purpose) cannot be
told from a missing one and may name an id we hold elsewhere. Fetch ``need`` expecting
duplicates, as ``protocol.sync_session`` does; ``have`` holds only ids we hold.

Frame size limit: with ``frame_size_limit`` set, no message built is longer. When a message
would overflow, it ends instead with one fingerprint for everything from there to infinity,
which the peer splits again next round (the reference's scheme; it can revisit ranges settled
earlier, which is why have/need are de-duplicated). Peers may use different limits.

Versions: a responder answers a message of another version (first byte 0x60..0x6F other than
0x61) with the single byte 0x61, as the spec asks; an initiator that receives another version
raises ``NegentropyError("unsupported-version")``. A first byte outside 0x60..0x6F is
``bad-version`` on either side.

Errors: malformed or oversized input from the peer raises ``NegentropyError`` (and only that),
with one of the ``code`` values listed in ``ERROR_CODES``; calling code that breaks the rules
(initiating twice, initiating after answering, reconciling after completion or after an error,
bad constructor arguments, bad items) raises ``LocalProtocolError``. A session that raised
``NegentropyError`` stays errored: every later call raises ``LocalProtocolError("errored")``.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence

from protocol.errors import LocalProtocolError, NegentropyError

__all__ = [
    "BUCKETS",
    "ERROR_CODES",
    "FINGERPRINT_SIZE",
    "FRAME_SIZE_MARGIN",
    "ID_LIST_THRESHOLD",
    "ID_SIZE",
    "INFINITY",
    "MAX_FRAME_SIZE_LIMIT",
    "MAX_MESSAGE_SIZE",
    "MAX_TIMESTAMP",
    "MAX_VARINT",
    "MAX_VARINT_BYTES",
    "MIN_FRAME_SIZE_LIMIT",
    "MODE_FINGERPRINT",
    "MODE_ID_LIST",
    "MODE_SKIP",
    "PROTOCOL_VERSION",
    "Bound",
    "Item",
    "Negentropy",
    "Storage",
    "decode_bound",
    "decode_varint",
    "encode_bound",
    "encode_varint",
    "fingerprint",
    "minimal_bound",
]

# --- Constants -------------------------------------------------------------------------------

PROTOCOL_VERSION = 0x61
"""The version byte that starts every message of protocol v1."""
VERSION_BYTE_MIN = 0x60
VERSION_BYTE_MAX = 0x6F
"""Version bytes outside ``[0x60, 0x6F]`` are not negentropy messages at all."""

ID_SIZE = 32
FINGERPRINT_SIZE = 16
BUCKETS = 16
"""A mismatched range is split into this many sub-ranges of (nearly) equal item counts ..."""
ID_LIST_THRESHOLD = 2 * BUCKETS
"""... unless it holds fewer items than this: then its ids are sent outright."""

MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_ID_LIST = 2

INFINITY = 2**64 - 1
"""The reserved "infinity" timestamp: the upper bound of the last range."""
MAX_TIMESTAMP = INFINITY - 1
"""The largest timestamp an item may have."""
MAX_VARINT = 2**64 - 1
"""Varints carry unsigned 64-bit values; anything larger is an error."""
MAX_VARINT_BYTES = 10
"""``ceil(64 / 7)``: the longest minimal encoding of a 64-bit value."""
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
"""The largest message we parse. Larger ones are refused before any work (``too-large``);
peers exchanging big sets should agree on a ``frame_size_limit`` well below this."""
MIN_FRAME_SIZE_LIMIT = 4096
"""A non-zero frame size limit must be at least this (as in the reference)."""
MAX_FRAME_SIZE_LIMIT = MAX_MESSAGE_SIZE
"""Frames larger than any peer would parse are pointless, so the limit is capped here."""
FRAME_SIZE_MARGIN = 200
"""Bytes kept free below the frame size limit for the closing fingerprint (reference value)."""

ERROR_CODES = frozenset(
    {
        "too-large",  # the message exceeds MAX_MESSAGE_SIZE
        "truncated",  # the message (or a varint, bound, fingerprint or id list) ends early
        "bad-version",  # the first byte is not a negentropy version byte (0x60..0x6F)
        "unsupported-version",  # the responder speaks another version (initiator side)
        "bad-varint",  # a varint with a leading zero digit (not minimal)
        "varint-overflow",  # a varint longer than MAX_VARINT_BYTES or above MAX_VARINT
        "bad-bound",  # a bound's id prefix is longer than ID_SIZE
        "bad-order",  # a bound is below the previous one
        "bad-mode",  # a mode other than Skip, Fingerprint or IdList
    }
)

Item = tuple[int, bytes]
"""One record: ``(timestamp, 32-byte id)``."""
Bound = tuple[int, bytes]
"""A range boundary: ``(timestamp, id prefix of 0..32 bytes)``; missing bytes count as zero."""

_MASK = (1 << 256) - 1
_ZERO_ID = bytes(ID_SIZE)
_ZERO_KEY = bytes(8 + ID_SIZE)
_NO_KEY: Item = (-1, b"")
_INFINITY_BOUND: Bound = (INFINITY, b"")
_SMALL_VARINTS = tuple(bytes((i,)) for i in range(0x80))


# --- Encoding helpers ------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Encode ``0 <= value <= MAX_VARINT`` as base-128 digits, most significant first."""
    if value < 0x80:
        if value < 0:
            raise LocalProtocolError("bad-varint", f"cannot encode negative value {value}")
        return _SMALL_VARINTS[value]
    if value > MAX_VARINT:
        raise LocalProtocolError("bad-varint", "value does not fit in 64 bits")
    digits = bytearray()
    while value:
        digits.append(0x80 | (value & 0x7F))
        value >>= 7
    digits[0] &= 0x7F  # the least significant digit ends the varint
    digits.reverse()
    return bytes(digits)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode the varint at ``data[offset:]``; return ``(value, offset after it)``.

    Raises ``NegentropyError`` with code ``truncated``, ``bad-varint`` (a non-minimal encoding)
    or ``varint-overflow``.
    """
    end = len(data)
    if offset >= end:
        raise NegentropyError("truncated", "message ends inside a varint")
    byte = data[offset]
    offset += 1
    if byte < 0x80:
        return byte, offset
    if byte == 0x80:
        raise NegentropyError("bad-varint", "varint has a leading zero digit")
    value = byte & 0x7F
    for _ in range(MAX_VARINT_BYTES - 1):
        if offset >= end:
            raise NegentropyError("truncated", "message ends inside a varint")
        byte = data[offset]
        offset += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            if value > MAX_VARINT:
                raise NegentropyError("varint-overflow", "varint exceeds 64 bits")
            return value, offset
    raise NegentropyError("varint-overflow", f"varint longer than {MAX_VARINT_BYTES} bytes")


def encode_bound(timestamp: int, id_prefix: bytes, previous_timestamp: int) -> bytes:
    """Encode a bound, its timestamp relative to ``previous_timestamp`` (the last one encoded
    in the same message, 0 at its start). Infinity is encoded as 0, anything else as
    ``1 + (timestamp - previous_timestamp)``."""
    if len(id_prefix) > ID_SIZE:
        raise LocalProtocolError("bad-bound", "id prefix longer than 32 bytes")
    if timestamp == INFINITY:
        head = b"\x00"
    elif 0 <= previous_timestamp <= timestamp < INFINITY:
        head = encode_varint(timestamp - previous_timestamp + 1)
    else:
        raise LocalProtocolError("bad-bound", "bounds must be encoded in ascending order")
    return head + encode_varint(len(id_prefix)) + id_prefix


def decode_bound(data: bytes, offset: int, previous_timestamp: int) -> tuple[int, bytes, int]:
    """Decode the bound at ``data[offset:]``; return ``(timestamp, id_prefix, new offset)``.

    A timestamp that would pass infinity saturates to it, as in the reference.
    """
    encoded, offset = decode_varint(data, offset)
    timestamp = min(previous_timestamp + encoded - 1, INFINITY) if encoded else INFINITY
    length, offset = decode_varint(data, offset)
    if length > ID_SIZE:
        raise NegentropyError("bad-bound", f"bound id prefix of {length} bytes (at most 32)")
    if offset + length > len(data):
        raise NegentropyError("truncated", "message ends inside a bound")
    return timestamp, bytes(data[offset : offset + length]), offset + length


def fingerprint(ids: Iterable[bytes]) -> bytes:
    """The fingerprint of a set of ids, computed from scratch (``Storage.fingerprint`` is the
    O(1) version): SHA-256 of (sum of the ids as 256-bit little-endian integers, mod 2**256,
    as 32 little-endian bytes) followed by varint(count), cut to 16 bytes."""
    total = 0
    count = 0
    for id_ in ids:
        total += int.from_bytes(id_, "little")
        count += 1
    return _fingerprint_of(total & _MASK, count)


def _fingerprint_of(total: int, count: int) -> bytes:
    digest = hashlib.sha256(total.to_bytes(ID_SIZE, "little") + encode_varint(count)).digest()
    return digest[:FINGERPRINT_SIZE]


def minimal_bound(previous: Item, current: Item) -> Bound:
    """The shortest bound that separates ``previous`` (below) from ``current`` (at or above):
    the timestamp alone when they differ, else the common id prefix plus one byte."""
    if previous[0] != current[0]:
        return (current[0], b"")
    diff = int.from_bytes(previous[1], "big") ^ int.from_bytes(current[1], "big")
    shared = ID_SIZE - (diff.bit_length() + 7) // 8
    return (current[0], current[1][: shared + 1])


def _key(timestamp: int, id_prefix: bytes) -> bytes:
    """A 40-byte sort key: big-endian timestamp then the id zero-padded to 32 bytes. Byte order
    of keys is the protocol's (timestamp, id) order, for items and bounds alike."""
    return timestamp.to_bytes(8, "big") + id_prefix + _ZERO_ID[len(id_prefix) :]


# --- Storage ---------------------------------------------------------------------------------


class Storage:
    """A sealed, sorted, de-duplicated set of items, held compactly.

    A catch-up reconciles a million items or more, so the set is kept as three flat buffers
    rather than as Python objects (those cost about 230 bytes an item; these 72): the
    timestamps in ascending order (an unsigned 64-bit array, which ``bisect`` searches in C),
    the ids one after another (so an id list is one slice), and prefix sums of the ids as
    256-bit little-endian integers mod 2**256, 32 bytes each, so that the fingerprint of any
    index range costs one subtraction and one hash. Input already in ascending order (as an
    index yields it) is taken as it streams, without a copy of the whole list; other input
    is sorted first. Immutable.
    """

    __slots__ = ("_count", "_ids", "_sums", "_times")

    _count: int
    _times: array[int]
    _ids: bytes
    _sums: bytes

    def __init__(self, items: Iterable[Item] = ()) -> None:
        times = array("Q")
        ids = bytearray()
        previous = _NO_KEY
        ordered = True
        for item in items:
            try:
                timestamp, id_ = item
            except (TypeError, ValueError):
                raise LocalProtocolError("bad-item", "an item is a (timestamp, id) pair") from None
            if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
                raise LocalProtocolError(
                    "bad-item", f"timestamp must be an int in [0, 2**64 - 2], not {timestamp!r}"
                )
            if not isinstance(id_, bytes | bytearray | memoryview) or len(id_) != ID_SIZE:
                raise LocalProtocolError("bad-item", "an id must be 32 bytes")
            key = (timestamp, bytes(id_))
            if key == previous:
                continue  # a duplicate next to its twin (sorted input, or a merge of two)
            if ordered and key < previous:
                ordered = False
            previous = key
            times.append(timestamp)
            ids += key[1]
        if not ordered:
            keys = sorted(
                {(times[n], bytes(ids[n * ID_SIZE : (n + 1) * ID_SIZE])) for n in range(len(times))}
            )
            times = array("Q", (timestamp for timestamp, _ in keys))
            ids = bytearray(b"".join(id_ for _, id_ in keys))
            del keys
        sums = bytearray(_ZERO_ID)
        total = 0
        view = memoryview(ids)
        for offset in range(0, len(ids), ID_SIZE):
            total = (total + int.from_bytes(view[offset : offset + ID_SIZE], "little")) & _MASK
            sums += total.to_bytes(ID_SIZE, "little")
        view.release()
        object.__setattr__(self, "_count", len(times))
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_ids", bytes(ids))
        object.__setattr__(self, "_sums", bytes(sums))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Storage is immutable")

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Item]:
        ids = self._ids
        for index, timestamp in enumerate(self._times):
            yield timestamp, ids[index * ID_SIZE : (index + 1) * ID_SIZE]

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        timestamp, id_ = item
        if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
            return False
        if not isinstance(id_, bytes) or len(id_) != ID_SIZE:
            return False
        index = self.lower_bound(timestamp, id_)
        return index < self._count and self.item(index) == (timestamp, id_)

    def __repr__(self) -> str:
        return f"Storage(<{len(self)} items>)"

    def item(self, index: int) -> Item:
        """The item at ``index`` in (timestamp, id) order."""
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("item index out of range")
        return self._times[index], self._ids[index * ID_SIZE : (index + 1) * ID_SIZE]

    def ids(self, lower: int = 0, upper: int | None = None) -> list[bytes]:
        """The ids of the items with index in ``[lower, upper)``, in order."""
        joined = self.joined_ids(lower, upper)
        return [joined[offset : offset + ID_SIZE] for offset in range(0, len(joined), ID_SIZE)]

    def joined_ids(self, lower: int = 0, upper: int | None = None) -> bytes:
        """The ids of the items with index in ``[lower, upper)``, in order, end to end (as an
        id list carries them)."""
        lower, upper, _ = slice(lower, upper).indices(self._count)
        return self._ids[lower * ID_SIZE : max(lower, upper) * ID_SIZE]

    def fingerprint(self, lower: int, upper: int) -> bytes:
        """The fingerprint of the items with index in ``[lower, upper)``: O(1)."""
        if not 0 <= lower <= upper <= self._count:
            raise LocalProtocolError("bad-range", f"no index range [{lower}, {upper})")
        sums = self._sums
        below = int.from_bytes(sums[lower * ID_SIZE : (lower + 1) * ID_SIZE], "little")
        above = int.from_bytes(sums[upper * ID_SIZE : (upper + 1) * ID_SIZE], "little")
        return _fingerprint_of((above - below) & _MASK, upper - lower)

    def lower_bound(
        self, timestamp: int, id_prefix: bytes = b"", lower: int = 0, upper: int | None = None
    ) -> int:
        """The index of the first item at or above the bound ``(timestamp, id_prefix)``,
        searching ``[lower, upper)``."""
        if upper is None:
            upper = self._count
        times = self._times
        # The timestamps narrow the search in C; the ids decide only among equal timestamps.
        lower = bisect_left(times, timestamp, lower, upper)
        if not id_prefix:
            return lower
        upper = bisect_right(times, timestamp, lower, upper)
        target = id_prefix + _ZERO_ID[len(id_prefix) :]
        ids = self._ids
        while lower < upper:
            middle = (lower + upper) // 2
            if ids[middle * ID_SIZE : (middle + 1) * ID_SIZE] < target:
                lower = middle + 1
            else:
                upper = middle
        return lower

    def separator(self, index: int) -> Bound:
        """The shortest bound between the items at ``index - 1`` and ``index``."""
        return minimal_bound(self.item(index - 1), self.item(index))


# --- The session -----------------------------------------------------------------------------


class Negentropy:
    """One reconciliation session over a ``Storage``, as initiator or responder.

    ``initiate()`` makes this session the initiator; a session that is handed a message first
    is the responder. Counters: ``rounds`` (for an initiator, the round trips completed: the
    replies it has processed; for a responder, the replies it has made), ``bytes_sent`` and
    ``bytes_received`` (whole messages, version byte included).
    """

    def __init__(self, storage: Storage, *, frame_size_limit: int = 0) -> None:
        if not isinstance(storage, Storage):
            raise LocalProtocolError("bad-argument", "storage must be a negentropy.Storage")
        if (
            type(frame_size_limit) is not int
            or frame_size_limit < 0
            or 0 < frame_size_limit < MIN_FRAME_SIZE_LIMIT
            or frame_size_limit > MAX_FRAME_SIZE_LIMIT
        ):
            raise LocalProtocolError(
                "bad-frame-size-limit",
                f"frame_size_limit must be 0 or in [{MIN_FRAME_SIZE_LIMIT}, "
                f"{MAX_FRAME_SIZE_LIMIT}], not {frame_size_limit!r}",
            )
        self.storage = storage
        self.frame_size_limit = frame_size_limit
        self.rounds = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.error: NegentropyError | None = None
        self._initiator: bool | None = None
        self._done = False
        self._have: list[bytes] = []
        self._need: list[bytes] = []
        self._have_seen: set[bytes] = set()
        self._need_seen: set[bytes] = set()
        self._drained = 0, 0

    # -- state --

    @property
    def is_initiator(self) -> bool:
        """True once ``initiate()`` was called."""
        return self._initiator is True

    @property
    def is_responder(self) -> bool:
        """True once this session answered a message without initiating."""
        return self._initiator is False

    @property
    def is_done(self) -> bool:
        """True once the initiator has nothing more to send (``reconcile`` returned None)."""
        return self._done

    @property
    def have(self) -> Sequence[bytes]:
        """Ids we have and the peer lacks, gathered so far (initiator only; do not mutate)."""
        return self._have

    @property
    def need(self) -> Sequence[bytes]:
        """Ids the peer has and we lack in the ranges it listed them in, gathered so far
        (initiator only; do not mutate; see the module's note on trusting it)."""
        return self._need

    def drain(self) -> tuple[list[bytes], list[bytes]]:
        """The ``(have, need)`` ids gathered since the previous ``drain()``."""
        have_from, need_from = self._drained
        self._drained = len(self._have), len(self._need)
        return self._have[have_from:], self._need[need_from:]

    def _check_usable(self) -> None:
        if self.error is not None:
            raise LocalProtocolError(
                "errored", f"the session failed earlier ({self.error.code}) and cannot go on"
            )
        if self._done:
            raise LocalProtocolError("done", "reconciliation is already complete")

    # -- protocol --

    def initiate(self) -> bytes:
        """Start a session as the initiator: the first message to send."""
        self._check_usable()
        if self._initiator is True:
            raise LocalProtocolError("already-initiated", "initiate() may be called only once")
        if self._initiator is False:
            raise LocalProtocolError("responder", "a session that has answered cannot initiate")
        self._initiator = True
        writer = _Writer(self.storage)
        writer.split_range(0, len(self.storage), _INFINITY_BOUND)
        message = bytes(writer.out)
        self.bytes_sent += len(message)
        return message

    def reconcile(self, message: bytes | bytearray | memoryview) -> bytes | None:
        """Process a message from the peer and return the message to send back.

        For the initiator, ``None`` means reconciliation is complete: ``have`` and ``need``
        hold the whole difference. For a responder the reply is always a message (possibly
        just the version byte).
        """
        self._check_usable()
        if not isinstance(message, bytes | bytearray | memoryview):
            raise LocalProtocolError("bad-argument", "a message is bytes")
        if self._initiator is None:
            self._initiator = False
        data = bytes(message)
        self.bytes_received += len(data)
        try:
            reply = self._process(data)
        except NegentropyError as exc:
            self.error = exc
            raise
        self.rounds += 1
        if reply is None:
            self._done = True
            return None
        self.bytes_sent += len(reply)
        return reply

    def _process(self, data: bytes) -> bytes | None:
        size = len(data)
        if size > MAX_MESSAGE_SIZE:
            raise NegentropyError("too-large", f"message of {size} bytes (at most 16 MiB)")
        if size == 0:
            raise NegentropyError("truncated", "empty message")
        version = data[0]
        if not VERSION_BYTE_MIN <= version <= VERSION_BYTE_MAX:
            raise NegentropyError("bad-version", f"not a negentropy message (0x{version:02x})")
        initiator = self._initiator is True
        if version != PROTOCOL_VERSION:
            if initiator:
                raise NegentropyError(
                    "unsupported-version", f"peer speaks protocol 0x{version:02x}, we 0x61"
                )
            return bytes((PROTOCOL_VERSION,))  # tell the peer the version we speak

        storage = self.storage
        count = len(storage)
        writer = _Writer(storage)
        out = writer.out
        limit = self.frame_size_limit
        budget = limit - FRAME_SIZE_MARGIN if limit else sys.maxsize
        emitting = True  # False once the frame is full: the rest is only validated

        last_in = 0
        prev_key = _ZERO_KEY
        prev_bound: Bound = (0, b"")
        prev_index = 0
        skip = False
        pos = 1
        while pos < size:
            # Ranges after one that ends at infinity are empty; the reference sends them (an
            # id list to infinity that fills the frame is followed by a closing fingerprint).
            timestamp, prefix, pos = decode_bound(data, pos, last_in)
            last_in = timestamp
            key = _key(timestamp, prefix)
            if key < prev_key:
                raise NegentropyError("bad-order", "a range's upper bound is below its lower one")
            prev_key = key
            mode, pos = decode_varint(data, pos)
            if mode == MODE_FINGERPRINT:
                payload = pos
                pos += FINGERPRINT_SIZE
                if pos > size:
                    raise NegentropyError("truncated", "message ends inside a fingerprint")
            elif mode == MODE_ID_LIST:
                number, payload = decode_varint(data, pos)
                if number > (size - payload) // ID_SIZE:
                    raise NegentropyError("truncated", f"id list of {number} ids does not fit")
                pos = payload + number * ID_SIZE
            elif mode != MODE_SKIP:
                raise NegentropyError("bad-mode", f"unknown mode {mode}")
            if not emitting:
                continue

            bound: Bound = (timestamp, prefix)
            lower = prev_index
            upper = storage.lower_bound(timestamp, prefix, lower)
            mark = len(out)
            if mode == MODE_SKIP:
                skip = True
            elif mode == MODE_FINGERPRINT:
                if data[payload:pos] == storage.fingerprint(lower, upper):
                    skip = True
                else:
                    if skip:
                        skip = False
                        writer.bound(prev_bound)
                        out.append(MODE_SKIP)
                    writer.split_range(lower, upper, bound)
            elif initiator:
                self._compare(storage.ids(lower, upper), data, payload, pos)
                skip = True
            else:
                # Answer an id list with ours, as many as the frame allows; the rest of our
                # items are then covered by the closing fingerprint below.
                room = (budget - mark) // ID_SIZE + 1
                if skip:
                    skip = False
                    writer.bound(prev_bound)
                    out.append(MODE_SKIP)
                end_bound = bound
                if upper - lower > room:
                    upper = lower + room
                    end_bound = storage.item(upper)
                writer.bound(end_bound)
                out.append(MODE_ID_LIST)
                out += encode_varint(upper - lower)
                out += storage.joined_ids(lower, upper)
                mark = len(out)
            if len(out) > budget:
                # The frame is full: drop this range's output and end with a fingerprint of
                # everything from here to infinity, which the peer will split further.
                del out[mark:]
                writer.bound(_INFINITY_BOUND)
                out.append(MODE_FINGERPRINT)
                out += storage.fingerprint(upper, count)
                emitting = False
            prev_index = upper
            prev_bound = bound

        if initiator and len(out) == 1:
            return None
        return bytes(out)

    def _compare(self, ours: list[bytes], data: bytes, start: int, end: int) -> None:
        """Gather have/need from the peer's id list for a range holding our ``ours``. An id is
        reported once per session: after a frame fills, the reference algorithm (which we
        follow on the wire) can go over ranges again that earlier rounds settled."""
        theirs = [data[offset : offset + ID_SIZE] for offset in range(start, end, ID_SIZE)]
        their_set = set(theirs)
        have_seen = self._have_seen
        for id_ in ours:
            if id_ not in their_set and id_ not in have_seen:
                have_seen.add(id_)
                self._have.append(id_)
        our_set = set(ours)
        need_seen = self._need_seen
        for id_ in theirs:
            if id_ not in our_set and id_ not in need_seen:
                need_seen.add(id_)
                self._need.append(id_)


class _Writer:
    """Builds one outgoing message; keeps the last timestamp encoded (bounds are relative)."""

    __slots__ = ("last", "out", "storage")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.out = bytearray((PROTOCOL_VERSION,))
        self.last = 0

    def bound(self, bound: Bound) -> None:
        timestamp, prefix = bound
        out = self.out
        if timestamp == INFINITY:
            out.append(0)
        else:
            out += encode_varint(timestamp - self.last + 1)
        self.last = timestamp
        out += encode_varint(len(prefix))
        out += prefix

    def split_range(self, lower: int, upper: int, upper_bound: Bound) -> None:
        """Describe our items in ``[lower, upper)``: their ids if fewer than 32, else the
        fingerprints of 16 sub-ranges of (nearly) equal size."""
        storage = self.storage
        out = self.out
        number = upper - lower
        if number < ID_LIST_THRESHOLD:
            self.bound(upper_bound)
            out.append(MODE_ID_LIST)
            out += encode_varint(number)
            out += storage.joined_ids(lower, upper)
            return
        per_bucket, with_extra = divmod(number, BUCKETS)
        current = lower
        for bucket in range(BUCKETS):
            following = current + per_bucket + (bucket < with_extra)
            digest = storage.fingerprint(current, following)
            if following == upper:
                self.bound(upper_bound)
            else:
                self.bound(storage.separator(following))
            out.append(MODE_FINGERPRINT)
            out += digest
            current = following
