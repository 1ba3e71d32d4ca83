"""The four parsers that read bytes from peers and files, as fuzz targets with their invariants.

Shared by ``test_fuzz.py`` (Hypothesis) and ``scripts/fuzz`` (atheris, coverage-guided). Each
target takes arbitrary bytes and either returns a short outcome (``"ok"`` or the error code)
or raises something that is a bug: any exception other than the parser's own protocol error,
or :class:`FuzzInvariantError` when an invariant fails. The invariants:

- ``record``: :func:`protocol.codec.decode` accepts exactly the canonical encodings (what it
  accepts re-encodes to the same bytes); :func:`protocol.validation.parse_record` fails with
  the decoder's code when the decoder fails, and otherwise either builds a record whose
  ``raw`` is the input and whose id is its SHA-256, or raises a documented code.
- ``bundle``: :class:`protocol.bundle.BundleReader` yields the same entries and the same error
  whatever the chunking; what it yields re-frames to exactly the bytes it consumed; records are
  1..65,536 bytes and an oversized entry declares more, at the offset where its prefix is; a
  broken reader stays broken.
- ``frame``: :class:`protocol.sync.FrameReader` yields the same frames and error whatever the
  chunking; each frame re-encodes and decodes to itself.
- ``negentropy``: a responder's reply and an initiator's next message never exceed the frame
  size limit; ``have`` ids are ours, ``need`` ids are not; errors are ``NegentropyError`` with
  a documented code, and an errored session stays errored.

The first byte of the input picks the chunk size (``bundle``, ``frame``) or the storage
(``negentropy``), so a coverage-guided fuzzer can steer it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from protocol import codec
from protocol.bundle import (
    HEADER,
    BundleReader,
    BundleWriter,
    Entry,
    OversizedRecord,
    encode_bundle,
    encode_varint,
)
from protocol.errors import (
    BundleError,
    InvalidRecord,
    LocalProtocolError,
    NegentropyError,
)
from protocol.negentropy import ERROR_CODES as NEGENTROPY_CODES
from protocol.negentropy import Negentropy, Storage
from protocol.record import MAX_RECORD_SIZE, decode_trusted
from protocol.sync import (
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
)
from protocol.validation import is_known_code, parse_record

__all__ = [
    "TARGETS",
    "FuzzInvariantError",
    "bundle",
    "frame",
    "negentropy",
    "record",
    "seeds",
]

#: The clock of the record target: 2025-01-01T01:00:00Z, as in the test vectors.
NOW_MS = 1_735_693_200_000
BUNDLE_CODES = frozenset({"bad-header", "bad-length", "too-large", "truncated"})
SYNC_CODES = frozenset({"bad-frame", "frame-too-large", "too-many", "bad-version"})
#: The negentropy frame size limit of the negentropy target (the smallest allowed).
NEG_LIMIT = 4096


class FuzzInvariantError(AssertionError):
    """A parser returned something it must not (raised explicitly: survives ``python -O``)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FuzzInvariantError(message)


# ------------------------------------------------------------------------------ record


def record(data: bytes) -> str:
    decode_code: str | None = None
    try:
        value = codec.decode(data)
    except InvalidRecord as exc:
        decode_code = exc.code
        _check(is_known_code(exc.code), f"decode raised an undocumented code {exc.code!r}")
    else:
        _check(codec.encode(value) == data, "decode accepted a non-canonical encoding")
    try:
        parsed = parse_record(data, now_ms=NOW_MS)
    except InvalidRecord as exc:
        _check(is_known_code(exc.code), f"parse_record raised an undocumented code {exc.code!r}")
        if decode_code is not None:
            _check(exc.code == decode_code, f"parse {exc.code!r} but decode {decode_code!r}")
        else:
            # The structure may still be fine: the unsigned path must agree up to the signature.
            try:
                unsigned = parse_record(data, now_ms=None, verify_sig=False)
            except InvalidRecord as inner:
                _check(inner.code in (exc.code,), f"{inner.code!r} unsigned vs {exc.code!r}")
            else:
                signature_codes = ("bad-signature", "bad-proof", "future-timestamp")
                _check(exc.code in signature_codes, f"only {exc.code!r}")
                _check(unsigned.raw == data, "an unsigned parse changed the bytes")
        return exc.code
    _check(decode_code is None, "parse_record accepted what decode refused")
    _check(parsed.raw == data, "a parsed record's raw differs from its input")
    _check(parsed.id == hashlib.sha256(data).digest(), "a record id is not SHA-256 of its bytes")
    _check(decode_trusted(data) == parsed, "decode_trusted disagrees with parse_record")
    return "ok"


# ------------------------------------------------------------------------------ bundle


def _read_bundle(body: bytes, step: int) -> tuple[list[Entry], str | None, int]:
    reader = BundleReader()
    records: list[Entry] = []
    code: str | None = None
    try:
        for start in range(0, len(body), step):
            records += reader.feed(body[start : start + step])
        reader.close()
    except BundleError as exc:
        code = exc.code
        _check(exc.code in BUNDLE_CODES, f"undocumented bundle code {exc.code!r}")
        _check(0 <= exc.offset <= len(body), "a bundle error offset outside the input")
        _check(exc.index == len(records), "a bundle error index is not the records read")
        _check(reader.broken, "a reader that raised is not broken")
        try:
            reader.feed(b"")
        except BundleError as again:
            _check(again is exc, "a broken reader raised a different error")
        else:
            raise FuzzInvariantError("a broken reader accepted more input")
    return records, code, reader.offset


def bundle(data: bytes) -> str:
    if not data:
        return "empty"
    step = data[0] or len(data)
    body = data[1:]
    records, code, offset = _read_bundle(body, step)
    if offset:
        _check(_reframe(records, body) == body[:offset], "records do not re-frame to the input")
    else:
        _check(not records, "records read without consuming input")
    whole = _read_bundle(body, max(1, len(body)))
    _check(whole[:2] == (records, code), "chunking changed what the bundle reader yields")
    if code is None:
        _check(body.startswith(HEADER) and offset == len(body), "a clean read left bytes over")
    return code or "ok"


def _reframe(entries: list[Entry], body: bytes) -> bytes:
    """The bundle bytes ``entries`` stand for: each record framed, and each oversized one's
    prefix followed by the input bytes it declared (which the reader passed over)."""
    out = bytearray(HEADER)
    for entry in entries:
        if isinstance(entry, OversizedRecord):
            _check(entry.length > MAX_RECORD_SIZE, f"an oversized entry of {entry.length} bytes")
            _check(entry.offset == len(out), "an oversized entry's offset is not its prefix's")
            prefix = encode_varint(entry.length)
            start = entry.offset + len(prefix)
            out += prefix + body[start : start + entry.length]
        else:
            _check(0 < len(entry) <= MAX_RECORD_SIZE, f"a bundle record of {len(entry)} bytes")
            out += BundleWriter.frame(entry)
    return bytes(out)


# ------------------------------------------------------------------------------ frame


def _read_frames(data: bytes, step: int) -> tuple[list[Frame], str | None]:
    reader = FrameReader()
    frames: list[Frame] = []
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            while (got := reader.next_frame()) is not None:
                frames.append(got)
    except SyncError as exc:
        _check(exc.code in SYNC_CODES, f"undocumented sync code {exc.code!r}")
        return frames, exc.code
    return frames, None


def frame(data: bytes) -> str:
    if not data:
        return "empty"
    step = data[0] or len(data)
    body = data[1:]
    frames, code = _read_frames(body, step)
    for got in frames:
        again = encode_frame(got)
        _check(decode_frame(again[4:]) == got, f"{type(got).__name__} does not round-trip")
    whole = _read_frames(body, max(1, len(body)))
    _check(whole == (frames, code), "chunking changed what the frame reader yields")
    return code or "ok"


# ------------------------------------------------------------------------------ negentropy


def _items(n: int, seed: bytes) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        digest = hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        out.append((1_700_000_000_000 + (i // 3) * 1000, digest))
    return out


#: Storages the first input byte chooses from: empty, fewer than an id list's threshold, and
#: enough for fingerprint splits (and for frames to fill up at the 4 KiB limit).
STORAGES = (
    Storage(),
    Storage(_items(20, b"small")),
    Storage(_items(300, b"large")),
)


def negentropy(data: bytes) -> str:
    if not data:
        return "empty"
    storage = STORAGES[data[0] % len(STORAGES)]
    message = data[1:]
    outcomes = []
    responder = Negentropy(storage, frame_size_limit=NEG_LIMIT)
    try:
        reply = responder.reconcile(message)
    except NegentropyError as exc:
        _check(exc.code in NEGENTROPY_CODES, f"undocumented negentropy code {exc.code!r}")
        _errored(responder)
        outcomes.append(exc.code)
    else:
        _check(reply is not None and 1 <= len(reply) <= NEG_LIMIT, "a bad responder reply size")
        outcomes.append("ok")
    initiator = Negentropy(storage, frame_size_limit=NEG_LIMIT)
    initiator.initiate()
    try:
        following = initiator.reconcile(message)
    except NegentropyError as exc:
        _check(exc.code in NEGENTROPY_CODES, f"undocumented negentropy code {exc.code!r}")
        _errored(initiator)
        outcomes.append(exc.code)
    else:
        _check(following is None or len(following) <= NEG_LIMIT, "an initiator message too big")
        ours = set(storage.ids())
        have, need = initiator.drain()
        _check(all(i in ours for i in have), "have lists an id we do not hold")
        # ``need`` is the peer's claim: an id listed in a range it does not belong to may
        # be one we hold elsewhere (protocol.negentropy's note), but it came from the peer.
        _check(all(i in message for i in need), "need lists an id the peer never sent")
        _check(all(len(i) == 32 for i in need), "need lists an id that is not 32 bytes")
        _check(len(set(need)) == len(need), "need lists an id twice")
        outcomes.append("ok")
    return "/".join(outcomes)


def _errored(session: Negentropy) -> None:
    try:
        session.reconcile(b"\x61")
    except LocalProtocolError as exc:
        _check(exc.code == "errored", f"an errored session raised {exc.code!r}")
    else:
        raise FuzzInvariantError("an errored session went on")


TARGETS: dict[str, Callable[[bytes], str]] = {
    "record": record,
    "bundle": bundle,
    "frame": frame,
    "negentropy": negentropy,
}


# ------------------------------------------------------------------------------ seed inputs

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "records.json"


def _vector_records() -> tuple[list[bytes], list[bytes]]:
    """The valid and invalid records of tests/vectors/records.json (empty lists without it)."""
    try:
        vectors = json.loads(VECTORS.read_text())
    except (OSError, ValueError):
        return [], []
    valid = [bytes.fromhex(v["hex"]) for v in vectors.get("valid", [])]
    invalid = [bytes.fromhex(v["hex"]) for v in vectors.get("invalid", [])]
    invalid += [bytes.fromhex(v["hex"]) for v in vectors.get("codec", {}).get("invalid", [])]
    invalid += [bytes.fromhex(v["hex"]) for v in vectors.get("codec", {}).get("canonical", [])]
    return valid, invalid


def seeds(target: str) -> list[bytes]:
    """A starting corpus for ``target``: real inputs, so that mutation starts deep."""
    valid, invalid = _vector_records()
    small = [r for r in valid if len(r) < 4096][:12]
    if target == "record":
        return valid + invalid
    if target == "bundle":
        body = encode_bundle(small)
        return [
            b"\x00" + body,
            b"\x01" + body,
            b"\x07" + body,
            b"\x00" + body[:-3],
            b"\x00" + HEADER,
            # An oversized record, passed over, then the same records again.
            b"\x00"
            + body
            + encode_varint(MAX_RECORD_SIZE + 1)
            + bytes(MAX_RECORD_SIZE + 1)
            + body[len(HEADER) :],
        ]
    if target == "frame":
        frames: list[Frame] = [
            Hello(follow_all=True, scopes=("meta", "ab" * 32)),
            Neg(messages={0: bytes.fromhex("6100000200"), 3: b""}),
            Want(ids=(bytes(32), bytes(range(32)))),
            Recs(records=tuple(small[:4])),
            Push(records=tuple(small[4:8])),
            Ack(new=2),
            Bye(),
            ErrorFrame(code="bad-frame", message="no"),
        ]
        stream = b"".join(encode_frame(f) for f in frames)
        return [b"\x00" + stream, b"\x03" + stream] + [b"\x00" + encode_frame(f) for f in frames]
    if target == "negentropy":
        out = []
        for index, storage in enumerate(STORAGES):
            first = Negentropy(storage, frame_size_limit=NEG_LIMIT).initiate()
            for other, peer in enumerate(STORAGES):
                out.append(bytes((other,)) + first)
                try:
                    reply = Negentropy(peer, frame_size_limit=NEG_LIMIT).reconcile(first)
                except NegentropyError:
                    continue
                out.append(bytes((index,)) + reply)
        return out
    raise ValueError(f"no fuzz target {target!r}")
