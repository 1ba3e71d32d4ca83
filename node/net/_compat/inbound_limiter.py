"""Patch: py-libp2p's cap on inbound connections lifted; the transport enforces its own.

Why: py-libp2p 0.8.1 holds an inbound slot for the swarm's whole lifetime (the handler waits
for the swarm to finish before releasing it), so after ``max_connections`` inbound
connections, however short-lived, every new one is refused. The transport counts live
connections and enforces ``max_connections`` on them instead.

Upstream bug: the slot acquired in ``Swarm._handle_inbound_connection`` is released only
when the connection's whole handling, which lasts as long as the swarm, returns.

How: the swarm's private ``_inbound_limiter`` is replaced by one with ``UNLIMITED_INBOUND``
tokens. On upgrade: the old limiter is read before it is replaced, so a renamed attribute
raises AttributeError at start-up instead of being created beside the real one (which would
bring the bug back silently); ``UPSTREAM`` fingerprints where it is built and used.
"""

from __future__ import annotations

import trio
from libp2p.abc import INetwork

#: Inbound connections py-libp2p may be handling at once; the real cap is the transport's.
UNLIMITED_INBOUND = 1 << 20

UPSTREAM = {
    "libp2p.network.swarm.Swarm._init_connection_management": (
        "0488b2e8ec414e5ea874efa318a2e29cceaa84942659b2b2ee234fb9aa6db759"
    ),
    "libp2p.network.swarm.Swarm._handle_inbound_connection": (
        "0800fdf9770ed8e691e13b474d972f431755db1dc0a843bb8fa5ecc6f561441c"
    ),
}


def lift_inbound_limit(network: INetwork) -> None:
    """Give the swarm an inbound limiter it never runs out of."""
    old: trio.CapacityLimiter = network._inbound_limiter  # type: ignore[attr-defined]
    if not isinstance(old, trio.CapacityLimiter):
        raise TypeError(f"py-libp2p's inbound limiter is a {type(old).__name__}")
    network._inbound_limiter = trio.CapacityLimiter(UNLIMITED_INBOUND)  # type: ignore[attr-defined]
