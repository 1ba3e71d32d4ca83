"""Patch: mDNS assembled from py-libp2p's broadcaster and listener, off the trio thread.

Why: ``new_host(enable_mDNS=True)`` builds ``Zeroconf()`` on every interface with no way to
choose, and its registration is synchronous, stalling the trio loop for about 1.7 s. Here
Zeroconf work runs in worker threads, on the interfaces the operator chose; its callbacks
arrive on a zeroconf thread and are handed to trio. It never dials: peers found are
reported to the node, whose service decides.

Upstream bug: no interface selection, and blocking Zeroconf calls on the event loop.

How: ``PeerBroadcaster``, ``PeerListener``, ``stringGen`` and the process-global
``peerDiscovery`` handler registry are used directly, as ``libp2p.discovery.mdns.mdns``
uses them. On upgrade: a moved name fails at import; ``UPSTREAM`` fingerprints each
constructor and method called, and upstream's own assembly, so an edit names this patch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo

if TYPE_CHECKING:
    from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
    from libp2p.discovery.mdns.listener import PeerListener
    from zeroconf import Zeroconf

logger = logging.getLogger(__name__)

MDNS_TTL_SECONDS = 120
MDNS_CLEANUP_SECONDS = 60.0

UPSTREAM = {
    "libp2p.discovery.mdns.mdns.MDNSDiscovery.__init__": (
        "8abb9ca67b1ac7f3d9e147de13ed2a13d27cbdf90453ab5ff4e813317e48be2a"
    ),
    "libp2p.discovery.mdns.mdns.MDNSDiscovery.start": (
        "ee58cdb131cccb3a057c27f45c2ebbeb6b46ee2dad0dbdcaf62ca04e7cd0e053"
    ),
    "libp2p.discovery.mdns.broadcaster.PeerBroadcaster.__init__": (
        "598a8446253ba39e592dd8d16f4a0899a25c4eee2b2ba90e6a0275325683f02b"
    ),
    "libp2p.discovery.mdns.broadcaster.PeerBroadcaster.register": (
        "02e06acafedee9a7b1c53ec47747626e871ecb97e81a6b3265f9bc4b12dc7dc3"
    ),
    "libp2p.discovery.mdns.broadcaster.PeerBroadcaster.unregister": (
        "7b4808cdcc48a862fce0e56f931816bd4b8e56316f6e1f28bd038bfd9ae71d55"
    ),
    "libp2p.discovery.mdns.listener.PeerListener.__init__": (
        "77105a52b9a543f7a4f5db691d19e55928d24a5d4e3f7a8fb61c90479331ce49"
    ),
    "libp2p.discovery.mdns.listener.PeerListener.add_service": (
        "5accf62804148ee6615902c6e5924ba6fb4ef864e4b5eb1b853ecdc8087ed4fb"
    ),
    "libp2p.discovery.mdns.listener.PeerListener.stop": (
        "62e881e5b0cd88c09f96bb3fdce981e26d4c895aed9254e6422464cb8b0ae2bb"
    ),
    "libp2p.discovery.mdns.listener.PeerListener.cleanup_stale_entries": (
        "666171a5d7b4106da26a5999dfadee753e97d43bbfea4a66c30ea32d68297787"
    ),
    "libp2p.discovery.events.peerDiscovery.PeerDiscovery.register_peer_discovered_handler": (
        "c7b4fc7915ecb06cf9a8ac93a870a1adbf7da65e86c46ab9b8c22ff9f58e2d93"
    ),
    "libp2p.discovery.events.peerDiscovery.PeerDiscovery.unregister_peer_discovered_handler": (
        "08443fd565b02466e1ace5bab4f9dfadcb848ca8568fa2ab566a5fa74a86f9eb"
    ),
    "libp2p.discovery.mdns.utils.stringGen": (
        "a69ccc9eaed0b6f60823b5db69a2facd5d3bc081062e199461ccbdae9e6350e0"
    ),
}


async def run_mdns(
    host: IHost,
    addrs: list[str],
    interfaces: tuple[str, ...],
    on_found: Callable[[str, list[str]], None],
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,  # trio-stubs (via libp2p) lacks TaskStatus
) -> None:
    """Announce ``addrs`` (dialable, wildcards expanded) for ``host`` and report peers found by
    mDNS until cancelled; never dials."""
    # zeroconf (and asyncio with it, 7 MB) loads only for a node that runs mDNS.
    from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
    from libp2p.discovery.mdns.listener import PeerListener
    from libp2p.discovery.mdns.mdns import SERVICE_TYPE
    from libp2p.discovery.mdns.utils import stringGen
    from zeroconf import Zeroconf

    token = trio.lowlevel.current_trio_token()
    own_id = host.get_id()

    def found(info: Libp2pPeerInfo) -> None:  # on a zeroconf thread
        if info.peer_id == own_id:
            return
        addrs = [str(a) for a in info.addrs]
        with contextlib.suppress(trio.RunFinishedError):  # the transport is stopping
            trio.from_thread.run_sync(on_found, str(info.peer_id), addrs, trio_token=token)

    def start() -> tuple[Zeroconf, PeerBroadcaster, PeerListener]:
        zc = Zeroconf(interfaces=list(interfaces)) if interfaces else Zeroconf()
        name = f"{stringGen(63)}.{SERVICE_TYPE}"
        tcp_ports = (multiaddr.Multiaddr(a).value_for_protocol("tcp") for a in addrs)
        broadcaster = PeerBroadcaster(
            zeroconf=zc,
            service_type=SERVICE_TYPE,
            service_name=name,
            peer_id=str(own_id),
            port=int(next((p for p in tcp_ports if p), 0)),
            listen_addrs=addrs,  # not host=: it would announce 0.0.0.0 for a wildcard listen
        )
        listener = PeerListener(
            peerstore=host.get_peerstore(),
            zeroconf=zc,
            service_type=SERVICE_TYPE,
            service_name=name,
            ttl=MDNS_TTL_SECONDS,
        )
        return zc, broadcaster, listener

    def stop(zc: Zeroconf, broadcaster: PeerBroadcaster, listener: PeerListener) -> None:
        broadcaster.unregister()
        listener.stop()
        zc.close()

    peerDiscovery.register_peer_discovered_handler(found)
    try:
        parts = await trio.to_thread.run_sync(start)
        try:
            task_status.started()  # registering probes the LAN for ~1.6 s: do not wait for it
            await trio.to_thread.run_sync(parts[1].register)
            while True:
                await trio.sleep(MDNS_CLEANUP_SECONDS)
                try:  # bounds the listener's memory of services seen on the LAN
                    parts[2].cleanup_stale_entries(max_age=2 * MDNS_TTL_SECONDS)
                except Exception as exc:
                    logger.debug("mDNS cleanup failed: %r", exc)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(functools.partial(stop, *parts))
    finally:
        peerDiscovery.unregister_peer_discovered_handler(found)
