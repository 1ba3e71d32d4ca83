"""Patch: pubsub reads each peer's RPCs through a buffer, one stream read for many RPCs.

Why: upstream ``continuously_read_stream`` reads each RPC's varint length a byte at a time
and then its body: three or more stream reads an RPC, each through the stream's lock and
Yamux's buffer. Here one read takes whatever has arrived (up to ``READ_CHUNK``) and the
small reads are served from it.

Upstream bug: unbuffered byte-at-a-time varint reads on a muxed stream.

How: ``BufferedReadsPubsub`` overrides ``continuously_read_stream`` and hands upstream's
loop a ``_BufferedStream``, which answers ``read`` and forwards every other attribute to the
stream. On upgrade: if upstream read the stream by another method than ``read``, the buffer
would be bypassed and nothing would fail, which is why ``UPSTREAM`` fingerprints the loop.
"""

from __future__ import annotations

from typing import Any

from libp2p.abc import INetStream
from libp2p.pubsub.pubsub import Pubsub

#: Bytes asked of the stream at once.
READ_CHUNK = 64 * 1024

UPSTREAM = {
    "libp2p.pubsub.pubsub.Pubsub.continuously_read_stream": (
        "ac0c4ad87ca39288d70fcc5a58a842613bc8c47f32c171995a5775bc83fa4430"
    ),
}


class _BufferedStream:
    """The stream pubsub reads RPCs from, answering its small reads from one larger read."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._data = b""
        self._pos = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if self._pos >= len(self._data):
            self._data = await self._stream.read(READ_CHUNK)
            self._pos = 0
            if not self._data:
                return b""
        end = len(self._data) if n is None else min(len(self._data), self._pos + n)
        out = self._data[self._pos : end]
        self._pos = end
        return out


class BufferedReadsPubsub(Pubsub):
    """Pubsub reading each peer's stream through a ``_BufferedStream``."""

    async def continuously_read_stream(self, stream: INetStream) -> None:
        await super().continuously_read_stream(_BufferedStream(stream))  # type: ignore[arg-type]
