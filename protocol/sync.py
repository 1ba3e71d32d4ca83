"""The frames of ``/commons/sync/1``, the reconciliation protocol between two nodes (sans-IO).

A sync session runs over one bidirectional stream. The initiator (the *client*) sends one
frame and the responder (the *server*) answers it with exactly one frame, until the client
says ``bye``: a strict request/response lock-step, so neither side ever has more than one
frame in flight and every buffer is bounded by ``MAX_FRAME``.

Wire form: each frame is a 4-byte big-endian length followed by that many bytes of canonical
MessagePack (a map with a ``t`` key naming the frame type). ``docs/PROTOCOL.md`` describes the
whole exchange; in short:

=========  ==========================================================  =================
frame      fields                                                      answered by
=========  ==========================================================  =================
hello      ``v`` (1), ``all`` (1 = follows every project, else 0),      hello
           ``scopes`` (the scopes this side holds or follows)
neg        ``m``: [index, negentropy message] pairs, index = the scope's neg (replies for
           position in the shared scope list (several scopes a frame)  the same scopes)
want       ``ids``: record ids the client lacks                         recs
recs       ``r``: raw records                                           (reply only)
push       ``r``: raw records the server lacks                          ack
ack        ``n``: how many of the pushed records were new               (reply only)
bye        (nothing)                                                   (stream closes)
error      ``code``, ``message``                                        (stream closes)
=========  ==========================================================  =================

Everything read from the peer is bounded before it is built: the frame length, the number
of scopes, ids and records, and so each item's size. Any violation raises :class:`SyncError`.
A record of the wrong size inside a well-formed ``recs`` or ``push`` frame is not a frame
error: the frame decodes, and that record is refused on its own when it is validated.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from protocol import codec
from protocol.errors import InvalidRecord, RemoteProtocolError
from protocol.record import ID_SIZE
from protocol.validation import META_SCOPE

__all__ = [
    "MAX_FRAME",
    "PROTOCOL_ID",
    "Ack",
    "Bye",
    "ErrorFrame",
    "Frame",
    "FrameReader",
    "Hello",
    "Neg",
    "Push",
    "Recs",
    "SyncError",
    "Want",
    "encode_frame",
    "shared_scopes",
]

PROTOCOL_ID: Final = "/commons/sync/1"
VERSION: Final = 1
#: The largest frame either side sends or accepts, in bytes (payload, without the prefix).
MAX_FRAME: Final = 1 << 20
#: The most scopes one hello may name (each is 64 hex characters).
MAX_SCOPES: Final = 8192
#: The most ids one ``want`` may ask for; 4096 ids are 139 KiB on the wire.
MAX_WANT: Final = 4096
#: The most records one ``recs`` or ``push`` frame may carry (they must also fit MAX_FRAME).
MAX_RECORDS_PER_FRAME: Final = 4096
#: The most characters of an error message kept from a peer.
MAX_ERROR_MESSAGE: Final = 500
#: Bytes of framing overhead allowed per record when packing a frame.
RECORD_OVERHEAD: Final = 5

_SCOPE_RE: Final = re.compile(r"\A(meta|[0-9a-f]{64})\Z")
_LENGTH: Final = struct.Struct(">I")


class SyncError(RemoteProtocolError):
    """The peer broke the sync protocol; the session ends."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Hello:
    """Each side's first frame: the version, and the scopes it holds or follows (or all)."""

    follow_all: bool
    scopes: tuple[str, ...]
    version: int = VERSION


@dataclass(frozen=True, kw_only=True, slots=True)
class Neg:
    """Negentropy messages, keyed by each scope's position in :func:`shared_scopes` (which
    both sides compute alike from the two hellos): a number of a byte or two on the wire
    instead of a 64-character name, in every frame of every round."""

    messages: dict[int, bytes]


@dataclass(frozen=True, kw_only=True, slots=True)
class Want:
    """The client asks for these records, which it lacks."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Recs:
    """The server's answer to a want: the records asked for that it holds."""

    records: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Push:
    """The client hands over records that the server lacks."""

    records: tuple[bytes, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Ack:
    """The server's answer to a push: how many of the pushed records were new to it."""

    new: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Bye:
    """The client's last frame: the session is over and the stream closes."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorFrame:
    """Either side ends the session, saying why; the stream closes."""

    code: str
    message: str


Frame: TypeAlias = Hello | Neg | Want | Recs | Push | Ack | Bye | ErrorFrame


def shared_scopes(ours: Hello | tuple[bool, tuple[str, ...]], theirs: Hello) -> list[str]:
    """The scopes two peers reconcile, in sorted order.

    A scope is reconciled when either side names it and each side either follows everything
    or names it too. ``meta`` is always shared.
    """
    if isinstance(ours, Hello):
        our_all, our_scopes = ours.follow_all, set(ours.scopes)
    else:
        our_all, our_scopes = ours[0], set(ours[1])
    their_scopes = set(theirs.scopes)
    out = {META_SCOPE}
    for scope in our_scopes | their_scopes:
        if (our_all or scope in our_scopes) and (theirs.follow_all or scope in their_scopes):
            out.add(scope)
    return sorted(out)


# --------------------------------------------------------------------------------------------
# Encoding


def encode_frame(frame: Frame) -> bytes:
    """The bytes of one frame, length prefix included."""
    value: dict[str, codec.Value]
    if isinstance(frame, Hello):
        value = {"t": "hello", "v": frame.version, "all": int(frame.follow_all)}
        value["scopes"] = list(frame.scopes)
    elif isinstance(frame, Neg):
        pairs: list[codec.Value] = [[i, m] for i, m in sorted(frame.messages.items())]
        value = {"t": "neg", "m": pairs}
    elif isinstance(frame, Want):
        value = {"t": "want", "ids": list(frame.ids)}
    elif isinstance(frame, Recs):
        value = {"t": "recs", "r": list(frame.records)}
    elif isinstance(frame, Push):
        value = {"t": "push", "r": list(frame.records)}
    elif isinstance(frame, Ack):
        value = {"t": "ack", "n": frame.new}
    elif isinstance(frame, Bye):
        value = {"t": "bye"}
    else:
        value = {"t": "error", "code": frame.code, "message": frame.message[:MAX_ERROR_MESSAGE]}
    payload = codec.encode(value)
    if len(payload) > MAX_FRAME:
        raise SyncError("frame-too-large", f"a {type(frame).__name__} frame of {len(payload)}")
    return _LENGTH.pack(len(payload)) + payload


def pack_records(raws: list[bytes], limit: int = MAX_FRAME - 64) -> tuple[list[bytes], int]:
    """Take records from the front of ``raws`` while they fit one frame; return them and
    how many were taken (at least one, since a record always fits)."""
    size = 0
    taken: list[bytes] = []
    for raw in raws:
        cost = len(raw) + RECORD_OVERHEAD
        if taken and (size + cost > limit or len(taken) >= MAX_RECORDS_PER_FRAME):
            break
        taken.append(raw)
        size += cost
    return taken, len(taken)


# --------------------------------------------------------------------------------------------
# Decoding


class FrameReader:
    """Turns stream bytes into frames: ``feed(data)`` then ``next_frame()`` until None."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> None:
        """Add bytes read from the stream, in chunks of any size."""
        self._buffer += data

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned as frames."""
        return len(self._buffer)

    def needed(self) -> int:
        """How many more bytes the next frame needs (at least 1 when none is complete)."""
        if len(self._buffer) < 4:
            return 4 - len(self._buffer)
        length: int = _LENGTH.unpack_from(self._buffer)[0]
        return max(0, 4 + length - len(self._buffer))

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes come; ``SyncError`` if bad."""
        if len(self._buffer) < 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length > self._max_frame:
            raise SyncError("frame-too-large", f"peer announced a frame of {length} bytes")
        if len(self._buffer) < 4 + length:
            return None
        payload = bytes(self._buffer[4 : 4 + length])
        del self._buffer[: 4 + length]
        return decode_frame(payload)


def decode_frame(payload: bytes) -> Frame:
    """Decode one frame's payload (without the length prefix)."""
    try:
        value = codec.decode(payload, max_size=MAX_FRAME, max_depth=3)
    except InvalidRecord as exc:
        raise SyncError("bad-frame", f"undecodable frame: {exc}") from None
    if not isinstance(value, dict):
        raise SyncError("bad-frame", "a frame is a map")
    kind = value.get("t")
    if kind == "hello":
        return _hello(value)
    if kind == "neg":
        return Neg(messages=_neg(value))
    if kind == "want":
        ids = _list(value, "ids", MAX_WANT)
        for item in ids:
            if not isinstance(item, bytes) or len(item) != ID_SIZE:
                raise SyncError("bad-frame", "want ids must be 32-byte ids")
        return Want(ids=tuple(ids))  # type: ignore[arg-type]
    if kind in ("recs", "push"):
        raws = _list(value, "r", MAX_RECORDS_PER_FRAME)
        # Each item must be a byte string for the frame to make sense; its length is the
        # record's business. The frame is already delimited and bounded by MAX_FRAME, so an
        # empty or oversized item cannot throw the stream out of step: it is refused as one
        # record (``parse_record``: ``truncated``, ``too-large``) when the batch is
        # validated, after the valid records beside it, exactly like any invalid record.
        for item in raws:
            if not isinstance(item, bytes):
                raise SyncError("bad-frame", f"{kind} items must be record bytes")
        cls = Recs if kind == "recs" else Push
        return cls(records=tuple(raws))  # type: ignore[arg-type]
    if kind == "ack":
        n = value.get("n")
        if not isinstance(n, int) or not 0 <= n <= MAX_RECORDS_PER_FRAME:
            raise SyncError("bad-frame", "ack needs a count n")
        return Ack(new=int(n))
    if kind == "bye":
        return Bye()
    if kind == "error":
        code = value.get("code")
        message = value.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise SyncError("bad-frame", "error frames carry code and message text")
        return ErrorFrame(code=code[:64], message=message[:MAX_ERROR_MESSAGE])
    raise SyncError("bad-frame", f"unknown frame type {str(kind)[:32]!r}")


def _list(value: dict[str, codec.Value], key: str, limit: int) -> list[codec.Value]:
    items = value.get(key)
    if not isinstance(items, list):
        raise SyncError("bad-frame", f"{value.get('t')!r} frames need a list {key}")
    if len(items) > limit:
        raise SyncError("too-many", f"{len(items)} items in {key}, at most {limit}")
    return items


def _scope(item: object) -> str:
    if not isinstance(item, str) or not _SCOPE_RE.match(item):
        raise SyncError("bad-frame", f"{item!r:.80} is not a scope")
    return item


def _hello(value: dict[str, codec.Value]) -> Hello:
    version = value.get("v")
    if version != VERSION:
        raise SyncError("bad-version", f"peer speaks sync version {version!r}, we speak 1")
    follow_all = value.get("all")
    if follow_all not in (0, 1):
        raise SyncError("bad-frame", "hello needs all = 0 or 1")
    scopes = tuple(_scope(s) for s in _list(value, "scopes", MAX_SCOPES))
    return Hello(follow_all=bool(follow_all), scopes=scopes)


def _neg(value: dict[str, codec.Value]) -> dict[int, bytes]:
    pairs = value.get("m")
    if not isinstance(pairs, list):
        raise SyncError("bad-frame", "neg frames need a list m")
    if len(pairs) > MAX_SCOPES:
        raise SyncError("too-many", f"{len(pairs)} scopes in one neg frame")
    out: dict[int, bytes] = {}
    previous = -1
    for pair in pairs:
        if not isinstance(pair, list) or len(pair) != 2:
            raise SyncError("bad-frame", "neg items are [scope index, message] pairs")
        index, message = pair
        if not isinstance(index, int) or not previous < index < MAX_SCOPES:
            raise SyncError("bad-frame", "neg scope indexes must ascend, each below 8192")
        if not isinstance(message, bytes):
            raise SyncError("bad-frame", "negentropy messages are bytes")
        out[index] = message
        previous = index
    return out
