"""The errors of the libp2p adapter, and one open stream in the node's own types (bytes in,
bytes out, our errors): split from ``node.net.transport``, which re-exports them."""

from __future__ import annotations

import logging

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamClosed as _Libp2pStreamClosed
from libp2p.network.stream.exceptions import StreamEOF as _Libp2pStreamEOF

from node.net import _compat as compat

__all__ = [
    "ProtocolUnsupported",
    "PublishRejected",
    "Stream",
    "StreamBroken",
    "StreamClosed",
    "StreamError",
    "TransportError",
]

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 1 << 20  # one Stream.read
MAX_READ_EXACTLY_BYTES = 8 << 20  # one Stream.read_exactly


class TransportError(Exception):
    """The network failed us: a dial, a stream open, a libp2p service."""


class ProtocolUnsupported(TransportError):
    """The peer is connected but does not serve the protocol asked for (it said so)."""


class PublishRejected(TransportError):
    """Our own validator rejected a message we tried to publish; nobody received it."""


class StreamError(TransportError):
    """Base class of the errors of an open ``Stream``."""


class StreamClosed(StreamError):
    """We closed or reset the stream (or half-closed it and then wrote)."""


class StreamBroken(StreamError):
    """The peer reset the stream, the connection died, or EOF came before enough bytes."""


class Stream:
    """One bidirectional stream. The caller owns timeouts: use trio cancel scopes, then reset."""

    def __init__(self, net_stream: INetStream, peer_id: str, protocol: str) -> None:
        self._stream = net_stream
        self.peer_id = peer_id
        self.protocol = protocol
        self._closed = False

    def _error(self, exc: Exception, what: str) -> StreamError:
        if isinstance(exc, _Libp2pStreamClosed):
            return StreamClosed(f"{what} on a closed stream with {self.peer_id}")
        return StreamBroken(f"{what} failed with {self.peer_id}: {type(exc).__name__} {exc}")

    def remote_host(self) -> str | None:
        """The IP address the stream's connection comes from; None when unknown."""
        return compat.remote_host(self._stream)

    async def read(self, max_bytes: int = MAX_READ_BYTES) -> bytes:
        """Return between 1 and ``max_bytes`` bytes as soon as any arrive, or b"" at EOF."""
        if not 0 < max_bytes <= MAX_READ_BYTES:
            raise ValueError(f"max_bytes must be in 1..{MAX_READ_BYTES}")
        if self._closed:
            raise StreamClosed(f"read on a closed stream with {self.peer_id}")
        try:
            return await self._stream.read(max_bytes)
        except _Libp2pStreamEOF:
            return b""
        except Exception as exc:
            raise self._error(exc, "read") from exc

    async def read_exactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes; StreamBroken if EOF or a reset comes first."""
        if not 0 <= n <= MAX_READ_EXACTLY_BYTES:
            raise ValueError(f"n must be in 0..{MAX_READ_EXACTLY_BYTES}")
        parts: list[bytes] = []
        have = 0
        while have < n:
            chunk = await self.read(min(n - have, MAX_READ_BYTES))
            if not chunk:
                raise StreamBroken(f"EOF from {self.peer_id} after {have} of {n} bytes")
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise StreamClosed(f"write on a closed stream with {self.peer_id}")
        try:
            await self._stream.write(data)
        except Exception as exc:
            raise self._error(exc, "write") from exc

    async def close_write(self) -> None:
        """Half-close: the peer reads EOF; we can still read its answer."""
        try:
            await self._stream.close_write()  # type: ignore[attr-defined]
        except Exception as exc:
            raise self._error(exc, "close_write") from exc

    async def close(self) -> None:
        """Close both directions. Idempotent; never raises a stream error."""
        if not self._closed:
            self._closed = True
            try:
                await self._stream.close()
            except Exception as exc:
                logger.debug("closing a stream with %s: %r", self.peer_id, exc)

    async def reset(self) -> None:
        """Abort both directions. Idempotent; never raises a stream error."""
        self._closed = True
        try:
            await self._stream.reset()
        except Exception as exc:
            logger.debug("resetting a stream with %s: %r", self.peer_id, exc)
