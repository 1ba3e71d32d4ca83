"""The per-RPC shortcuts of node/net/_compat/: buffered pubsub reads, merged writes."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.rpc_queue import RpcQueue
from libp2p.utils.varint import encode_uvarint, read_varint_prefixed_bytes_limited

from node.net import _compat as compat
from node.net._compat import buffered_reads, merged_writes


def _rpc(*payloads: bytes, topic: str = "/commons/1/meta") -> rpc_pb2.RPC:
    rpc = rpc_pb2.RPC()
    for data in payloads:
        rpc.publish.add(data=data, topicIDs=[topic])
    return rpc


class _ChunkedStream:
    """A stream that hands out its bytes in the given chunks, whatever size is asked."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.reads = 0
        self.muxed_conn = "the connection"

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        assert n is None or len(chunk) <= n
        return chunk


async def test_buffered_reads_yield_the_same_rpcs_with_fewer_stream_reads() -> None:
    rpcs = [_rpc(bytes([i]) * (50 + 300 * i)) for i in range(5)]
    wire = b"".join(encode_uvarint(r.ByteSize()) + r.SerializeToString() for r in rpcs)
    # Every way of cutting the bytes into chunks must give back the same RPCs.
    for cut in (1, 2, 7, 100, 999, len(wire)):
        chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
        raw = _ChunkedStream(chunks)
        stream = buffered_reads._BufferedStream(raw)  # type: ignore[arg-type]
        got = []
        for _ in rpcs:
            body = await read_varint_prefixed_bytes_limited(stream, 1 << 20)
            parsed = rpc_pb2.RPC()
            parsed.ParseFromString(body)
            got.append(parsed)
        assert got == rpcs
        assert await stream.read(1) == b""
        assert stream.muxed_conn == "the connection"  # everything else is the stream's
        if cut == len(wire):
            assert raw.reads == 2  # one read for five RPCs, one that finds the end


async def test_queued_rpcs_are_merged_in_order_up_to_the_size_limit() -> None:
    queue = RpcQueue()
    big = b"x" * (compat.MERGE_MAX_BYTES // 2)
    for rpc in (_rpc(b"one"), _rpc(b"two", b"three"), _rpc(big), _rpc(big), _rpc(b"last")):
        assert queue.push(rpc)
    held: list[rpc_pb2.RPC] = []
    first = await queue.pop()
    assert first is not None
    merged = await merged_writes._merged(queue, first, held)
    assert [m.data for m in merged.publish] == [b"one", b"two", b"three", big]
    # The queued RPC is left as it was (py-libp2p may have queued that object for others).
    assert [m.data for m in first.publish] == [b"one"]
    assert merged.ByteSize() <= compat.MERGE_MAX_BYTES
    assert [[m.data for m in r.publish] for r in held] == [[big]]
    assert len(queue) == 1
    # An empty queue leaves the RPC as it is.
    lone = _rpc(b"alone")
    assert await merged_writes._merged(RpcQueue(), lone, []) is lone


class _Sender:
    """Just what ``handle_sending_messages`` uses of the pubsub object."""

    def __init__(self) -> None:
        self.written: list[tuple[float, list[bytes]]] = []
        self.dead: list[Any] = []

    async def write_msg(self, stream: Any, rpc: rpc_pb2.RPC) -> bool:
        self.written.append((trio.current_time(), [m.data for m in rpc.publish]))
        return True

    def _handle_dead_peer(self, peer_id: Any) -> None:
        self.dead.append(peer_id)


async def test_a_busy_peer_waits_to_merge_a_quiet_one_does_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sender = _Sender()
    queue = RpcQueue()
    loop = compat.CommonsPubsub.handle_sending_messages
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loop, sender, "peer", None, queue)  # type: ignore[arg-type]
        queue.push(_rpc(b"a"))
        await trio.sleep(1)
        # Quiet: written at once.
        assert sender.written == [(0.0, [b"a"])]
        queue.push(_rpc(b"b"))
        await trio.sleep(0.001)
        queue.push(_rpc(b"c"))  # within BUSY_GAP of "b": "c" waits to merge with "d"
        await trio.sleep(0.001)
        queue.push(_rpc(b"d"))
        await trio.sleep(1)
        # A burst far over py-libp2p's 32-RPC queue: nothing dropped, sent merged.
        burst = [b"%03d" % i for i in range(200)]
        assert all(queue.push(_rpc(data)) for data in burst)
        await trio.sleep(1)
        queue.close()
    times = [t for t, _ in sender.written]
    assert [d for _, d in sender.written[:3]] == [[b"a"], [b"b"], [b"c", b"d"]]
    assert [d for _, written in sender.written[3:] for d in written] == burst
    assert len(sender.written) == 4
    assert times[1] == 1.0
    assert times[2] - 1.001 <= compat.HOLD + 1e-9
    assert not sender.dead
