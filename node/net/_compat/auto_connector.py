"""Patch: py-libp2p's AutoConnector never dials.

Why: the AutoConnector dials every peer that enters the peerstore (through identify, mDNS or
gossip), which would bypass the node's own dialling decisions (the service's peer budget,
bans and back-off).

Upstream bug: no way to turn the AutoConnector off in ``new_host``.

How: the swarm's ``auto_connector.maybe_connect`` is replaced by a coroutine that returns at
once. On upgrade: the attribute is read before it is replaced, so a rename raises
AttributeError at start-up; ``UPSTREAM`` fingerprints the method replaced.
"""

from __future__ import annotations

from libp2p.abc import INetwork

UPSTREAM = {
    "libp2p.network.auto_connector.AutoConnector.maybe_connect": (
        "018fac95eafc2413f4d0e79fd048e93528191ee55afbd083c322b94e2caafab0"
    ),
}


async def _never_dial() -> None:
    """Replaces ``AutoConnector.maybe_connect``."""


def disable_auto_connector(network: INetwork) -> None:
    connector = network.auto_connector  # type: ignore[attr-defined]
    if not callable(connector.maybe_connect):
        raise TypeError("py-libp2p's AutoConnector.maybe_connect is not a method")
    connector.maybe_connect = _never_dial
