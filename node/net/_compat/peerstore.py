"""Patch: the addresses a failed dial leaves in py-libp2p's peerstore, taken out again.

Why: ``BasicHost.connect`` files the addresses it is given in the peerstore before it
dials. After a failed dial they stay, are reported as the peer's once it connects some
other way, and so reach the node's peer book: ``commons sync`` to a wrong port would leave
the bogus address behind, and the next dial of the right one tried it first.

Upstream bug: the peerstore can clear a peer's addresses only all at once, and ``connect``
does not undo what it filed when the dial fails.

How: the peer's entry (``peer_data_map``) is read directly and rewritten without the failed
addresses. On upgrade: the attribute and methods are used directly, so a rename raises
AttributeError at the first failed dial instead of the bogus address silently staying.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UPSTREAM", "forget_addrs", "known_addrs"]

UPSTREAM = {
    "libp2p.host.basic_host.BasicHost.connect": (
        "4e27c0e318dc248493186d460045e8f9eabb03f1e958de7da0c052817bf5e1c4"
    ),
    "libp2p.peer.peerdata.PeerData.clear_addrs": (
        "77c41d8f8fd92cb39cfec6f82ee5b568ac556b0ed09b8d6698d75d81a2b1c7e9"
    ),
    "libp2p.peer.peerdata.PeerData.add_addrs": (
        "22e6e512da6d6b03e733e1740e62ed38d45f2b70027623d99a52df50e8d2ff32"
    ),
}


def known_addrs(host: Any, peer_id: Any) -> list[Any]:
    """The addresses the peerstore holds for ``peer_id`` (none when it knows no such peer)."""
    data = host.get_peerstore().peer_data_map.get(peer_id)
    return [] if data is None else list(data.get_addrs())


def forget_addrs(host: Any, peer_id: Any, addrs: list[Any]) -> None:
    """Take ``addrs`` out of the peerstore's entry for ``peer_id``."""
    if not addrs:
        return
    data = host.get_peerstore().peer_data_map.get(peer_id)
    if data is None:
        return
    keep = [a for a in data.get_addrs() if a not in addrs]
    data.clear_addrs()
    data.add_addrs(keep)
