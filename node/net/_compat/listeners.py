"""Patch: the host's listening sockets closed when the transport stops.

Why: in 0.8.1, leaving ``host.run()`` skips this: the swarm's cleanup runs in a cancelled
scope and stops at its first checkpoint, so the socket kept accepting (and completing Noise
handshakes for a stopped node) until ``trio.run`` ended, and the port stayed taken.

Upstream bug: listener cleanup in ``Swarm.run``'s shutdown path and in ``Swarm.close`` is
not shielded from cancellation.

How: the transport closes each of the swarm's ``listeners`` itself, before the host stops.
On upgrade: ``listeners`` is read directly, so a rename raises AttributeError at shutdown
instead of silently leaving the port taken; ``UPSTREAM`` fingerprints the two upstream
cleanups.
"""

from __future__ import annotations

import logging

from libp2p.abc import IHost

logger = logging.getLogger(__name__)

UPSTREAM = {
    "libp2p.network.swarm.Swarm.run": (
        "15ac9440b4fed110900ce908a540384fac270bf2071a65aa605291b91fa73beb"
    ),
    "libp2p.network.swarm.Swarm.close": (
        "886afd61179c5915476012fd471c8cb845da37ccb428264abb770a8ec4fff34d"
    ),
}


async def close_listeners(host: IHost) -> None:
    """Close the host's listening sockets (a listener that fails to close is logged)."""
    listeners = host.get_network().listeners
    for listener in list(listeners.values()):
        try:
            await listener.close()
        except Exception as exc:
            logger.debug("closing a listener: %r", exc)
