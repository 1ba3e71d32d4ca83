"""Patch: a peer's outbound RPC queue holds ``OUTBOUND_QUEUE_RPCS`` RPCs instead of 32.

Why: py-libp2p drops an RPC pushed to a full queue. With merged RPCs a relay receives up to
hundreds of messages in one read and forwards them all before its sending loop runs again,
so 32 overflowed in a burst of 200 (one message lost in a test).

Upstream bug: py-libp2p 0.8.1 has no setting for the size (go-libp2p-pubsub has
``WithPeerOutboundQueueSize``).

How: the sending loop (see ``merged_writes``) raises the ``max_size`` of the queue's inner
``PriorityQueue`` (``RpcQueue._queue``). On upgrade: both attributes are read directly, so a
rename raises AttributeError in the sending loop instead of leaving the queue at 32 with the
dropped-RPC bug back; ``UPSTREAM`` fingerprints the queue's constructor and push.
"""

from __future__ import annotations

from libp2p.pubsub.rpc_queue import RpcQueue

#: RPCs a peer's outbound queue holds before libp2p drops more. A record's RPC is a few
#: hundred bytes, at most 64 KiB and some.
OUTBOUND_QUEUE_RPCS = 256

UPSTREAM = {
    "libp2p.pubsub.rpc_queue.RpcQueue.__init__": (
        "29b912ed933ac51fc0fd7270d4ffe938c6a7ddc23b23787674a921c9d2b9a882"
    ),
    "libp2p.pubsub.rpc_queue.PriorityQueue.__init__": (
        "d81d9c96ed7071ebfd5d51408e0405eafb3bd6c30c198039ebe065d202b126c9"
    ),
    "libp2p.pubsub.rpc_queue.PriorityQueue.push": (
        "998c43f9b739a5441eea24fcec6cbe673fa589cca36c8ba8db9f01133cb355c9"
    ),
}


def widen(queue: RpcQueue) -> None:
    """Let ``queue`` hold ``OUTBOUND_QUEUE_RPCS`` RPCs (never fewer than it already holds)."""
    inner = queue._queue
    if inner.max_size < OUTBOUND_QUEUE_RPCS:
        inner.max_size = OUTBOUND_QUEUE_RPCS
