"""Patch: py-libp2p's 60 s refusal to redial a peer whose last dial failed, lifted on demand.

Why: the swarm keeps a negative cache of peers whose dial failed and refuses to dial them
for 60 s. The node's service has its own back-off, and dials a peer again when it learns a
new address or when the operator asks (``commons peers connect``); the cache would refuse.

Upstream bug: the cache's duration has no setting.

How: ``Swarm.unblock_peer`` (public) is called before the node's own redial. On upgrade: it
is called directly, so a rename raises AttributeError at the first redial instead of the
redial being silently refused for a minute; ``UPSTREAM`` fingerprints it.
"""

from __future__ import annotations

from libp2p.abc import IHost
from libp2p.peer.id import ID

UPSTREAM = {
    "libp2p.network.swarm.Swarm.unblock_peer": (
        "5f8ccdf32983315a6f1e9cdf63e0aa311740cbc0cf25ad4b6c266dce5de67ddc"
    ),
}


def forget_failed_dial(host: IHost, peer_id: ID) -> None:
    """Lift py-libp2p's 60 s refusal to redial ``peer_id``."""
    host.get_network().unblock_peer(peer_id)  # type: ignore[attr-defined]
