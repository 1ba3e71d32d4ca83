"""The signature helper process and its pipe format.

Started (isolated, see :func:`node.sync.verifier.helper_command`) and stopped by
:class:`node.sync.verifier.Verifier`; kept light (no trio, no libp2p) so it
starts in a few tens of milliseconds. It decides with ``protocol.signing.verify``, the
function the node itself uses.

Pipe format (the node writes requests to the helper's stdin and reads its stdout; integers
little-endian). The helper first writes one byte, ``READY``, once it can take requests; then::

    request = u32 size of the rest, u32 count, count x (32-byte key, 64-byte signature,
              u32 length, message)
    answer  = count bytes, 1 if that signature verifies and 0 if not, in request order

Requests are answered in order, one answer each. A malformed request stops the helper (the
node then verifies in its own threads).
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from collections.abc import Sequence

from protocol.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, verify

__all__ = ["MAX_REQUEST_ITEMS", "MAX_REQUEST_SIZE", "READY", "encode_request", "verify_request"]

#: The largest request either side accepts (the node splits bigger batches).
MAX_REQUEST_SIZE = 16 * 1024 * 1024
MAX_REQUEST_ITEMS = 8192
READY = b"\x52"
_U32 = struct.Struct("<I")
_FIXED = PUBLIC_KEY_SIZE + SIGNATURE_SIZE

Item = tuple[bytes, bytes, bytes]  # (public key, message, signature)


def encode_request(items: Sequence[Item]) -> bytes:
    """One request for ``items``; raises ``ValueError`` if it would exceed the limits."""
    if len(items) > MAX_REQUEST_ITEMS:
        raise ValueError(f"{len(items)} items, at most {MAX_REQUEST_ITEMS} a request")
    parts: list[bytes] = [b"", _U32.pack(len(items))]
    pack = _U32.pack
    for key, message, sig in items:
        if len(key) != PUBLIC_KEY_SIZE or len(sig) != SIGNATURE_SIZE:
            raise ValueError("a key is 32 bytes and a signature 64")
        parts += (key, sig, pack(len(message)), message)
    size = sum(map(len, parts))
    if size > MAX_REQUEST_SIZE:
        raise ValueError(f"a request of {size} bytes is over {MAX_REQUEST_SIZE}")
    parts[0] = pack(size)
    return b"".join(parts)


def verify_request(body: bytes | memoryview) -> bytes:
    """The answer to one request (``body``: the request without its size prefix).

    Raises ``ValueError`` for a malformed request.
    """
    view = memoryview(body)
    if len(view) < 4:
        raise ValueError("a request without a count")
    (count,) = _U32.unpack_from(view, 0)
    if count > MAX_REQUEST_ITEMS:
        raise ValueError(f"{count} items in a request, at most {MAX_REQUEST_ITEMS}")
    out = bytearray(count)
    pos = 4
    for i in range(count):
        if pos + _FIXED + 4 > len(view):
            raise ValueError("a request ends inside an item")
        key = bytes(view[pos : pos + PUBLIC_KEY_SIZE])
        sig = bytes(view[pos + PUBLIC_KEY_SIZE : pos + _FIXED])
        (length,) = _U32.unpack_from(view, pos + _FIXED)
        start = pos + _FIXED + 4
        if start + length > len(view):
            raise ValueError("a message runs past the end of its request")
        out[i] = verify(key, bytes(view[start : start + length]), sig)
        pos = start + length
    if pos != len(view):
        raise ValueError("bytes after the last item of a request")
    return bytes(out)


def main() -> int:
    """Answer requests from stdin on stdout until stdin closes."""
    # Ctrl-C in a terminal, or a service manager's SIGTERM, reaches the whole process group;
    # the node stops us by closing our stdin, after its own requests are answered (dying at
    # the signal left the node to log a failure as it stopped).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        return _serve()
    except BrokenPipeError:  # the node is gone (killed): nothing to answer, nothing to say
        os._exit(0)


def _serve() -> int:
    source = sys.stdin.buffer
    sink = sys.stdout.buffer
    sink.write(READY)
    sink.flush()
    while True:
        head = source.read(4)
        if len(head) < 4:
            return 0
        (size,) = _U32.unpack(head)
        if size > MAX_REQUEST_SIZE:
            print(f"commons signature helper: a request of {size} bytes", file=sys.stderr)
            return 2
        body = source.read(size)
        if len(body) < size:
            return 0
        try:
            answer = verify_request(body)
        except ValueError as exc:
            print(f"commons signature helper: {exc}", file=sys.stderr)
            return 2
        sink.write(answer)
        sink.flush()


if __name__ == "__main__":
    sys.exit(main())
