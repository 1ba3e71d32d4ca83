"""Patch: DCUtR hole punching (``/libp2p/dcutr``), py-libp2p 0.8.1's, bounded and counted.

Why: two peers joined by a relayed connection should move to a direct one when they can:
the relay then carries nothing more, and the direct path is faster. The library drives it
by itself (every 2 s it tries each peer it reaches only through a relay): first a plain
dial of the peer's direct addresses, then the DCUtR exchange (each side learns the other's
observed addresses, then both dial at once from their listen ports, a TCP simultaneous open
through the two NATs), and once a direct connection verifies it closes the relayed one
after 60 s.

Upstream bug: the plain dial is not counted against the per-peer budget of three exchanges:
the loop stops trying a peer only once three *exchanges* were spent, so while those cannot
start (the peer runs its own session, or our stream to it fails) a peer behind NAT, whose
direct addresses never answer, is dialled again at every 2 s turn; and nothing is counted.

How: ``CommonsDCUtR`` overrides ``initiate_hole_punch`` to give each peer at most
``MAX_TRIES`` tries (a plain dial, then an exchange if it failed) per relayed connection,
reset when the peer disconnects (``on_peer_disconnected``), and ``_perform_hole_punch`` and
``_try_unilateral_upgrade`` to count outcomes. On upgrade: ``UPSTREAM`` fingerprints the
overridden methods and the loop that calls them; tests/node/test_relay.py checks a relayed
pair ends up directly connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import PROTOCOL_ID as DCUTR_PROTOCOL_ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from multiaddr import Multiaddr

__all__ = ["DCUTR_PROTOCOL_ID", "MAX_TRIES", "CommonsDCUtR", "DcutrStats"]

UPSTREAM = {
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol.__init__": (
        "ed3d553ae6ce2283cc8ea7ce6afad9f9982bcfcae5c73ef1f66a0a09beb307fd"
    ),
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol.initiate_hole_punch": (
        "6c975989f47d70903884dda10bc3e5c195ce06ac654c5a7f87f88ce3f14bb0de"
    ),
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol.on_peer_disconnected": (
        "937744123f13ab3a2678eb91fb179fbc77c65260d6a5cea2080278e2dd68f43c"
    ),
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol._perform_hole_punch": (
        "d978c5517fb21282e6e7f2799438ff334f6884acb78f8e33b2c0e347a015afde"
    ),
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol._try_unilateral_upgrade": (
        "093ad0e04435dd57284c25a1385261e05ebf1fecc1db53298dd90382bbef99dd"
    ),
    "libp2p.relay.circuit_v2.dcutr.DCUtRProtocol._auto_drive_loop": (
        "da5e9e25994ba7ba831edb67f3c86073ce665a18cb3411d022d1a294b6ce3268"
    ),
}

#: Tries per peer and relayed connection: one plain dial and the library's three exchanges.
MAX_TRIES = 4
#: Dial and read timeouts, in seconds (the library's defaults are 10 and 30).
DIAL_TIMEOUT = 5
READ_TIMEOUT = 10


@dataclass
class DcutrStats:
    """Outcomes (counters only grow): ``direct_dial`` (a plain dial reached the peer),
    ``punched`` (the exchange and simultaneous dials did), ``failed`` (an exchange that did
    not), ``exhausted`` (a try refused: the peer's budget is spent)."""

    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class CommonsDCUtR(DCUtRProtocol):
    def __init__(self, host: IHost) -> None:
        super().__init__(
            host, read_timeout=READ_TIMEOUT, write_timeout=READ_TIMEOUT, dial_timeout=DIAL_TIMEOUT
        )
        self.stats = DcutrStats()
        self._tries: dict[ID, int] = {}

    async def initiate_hole_punch(self, peer_id: ID) -> bool:
        if await self._have_direct_connection(peer_id):
            return True
        tries = self._tries.get(peer_id, 0)
        if tries >= MAX_TRIES:
            if tries == MAX_TRIES:  # counted once a connection, not at every loop turn
                self.stats.count("exhausted")
                self._tries[peer_id] = tries + 1
            return False
        self._tries[peer_id] = tries + 1
        return await super().initiate_hole_punch(peer_id)

    def on_peer_disconnected(self, peer_id: ID) -> None:
        super().on_peer_disconnected(peer_id)
        self._tries.pop(peer_id, None)

    async def _try_unilateral_upgrade(self, peer_id: ID) -> bool:
        ok = await super()._try_unilateral_upgrade(peer_id)
        if ok:
            self.stats.count("direct_dial")
        return ok

    async def _perform_hole_punch(
        self, peer_id: ID, addrs: list[Multiaddr], as_responder: bool = False
    ) -> bool:
        ok = await super()._perform_hole_punch(peer_id, addrs, as_responder)
        self.stats.count("punched" if ok else "failed")
        return ok
