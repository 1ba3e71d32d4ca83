"""Liveness of the node's connections: drop those that no longer carry anything.

A cut cable or a partition does not close a TCP connection: it stalls, libp2p still calls the
peer connected, and once the path is back the kernel retransmits only after its backed-off
timer (some 50 s after a one-minute cut). Every ``LIVENESS_INTERVAL`` seconds each connected
peer is checked; a peer that fails ``LIVENESS_MISSES`` checks in a row is disconnected, so the
service redials it and a fresh connection reconciles at once.

The check fits what the peer serves. A peer that serves the libp2p ping protocol (identify
lists it, or we do not know yet) is pinged on it. Ping is an opt-in service in js-libp2p and
rust-libp2p, though, and a peer that refuses it is not dead: refusing is an answer, so it is
not a miss. Such a peer (a gossip-only js-libp2p node, say) is probed on the connection
itself instead: a Yamux ping, which every Yamux implementation answers, and any frame arriving
after it counts. A healthy idle connection answers within a round trip; a stalled one shows
nothing, and is dropped like any other.
"""

from __future__ import annotations

import contextlib
import logging
import os

import trio

from node.metrics import Metrics
from node.net.transport import ProtocolUnsupported, Stream, StreamError, Transport, TransportError

__all__ = ["LIVENESS_INTERVAL", "LIVENESS_MISSES", "LIVENESS_TIMEOUT", "Liveness"]

log = logging.getLogger(__name__)

#: Seconds between liveness checks of the connected peers.
LIVENESS_INTERVAL = 5.0
#: Seconds a peer has to answer a check.
LIVENESS_TIMEOUT = 5.0
#: Checks in a row a peer may fail before its connection is dropped as dead.
LIVENESS_MISSES = 2
#: The libp2p ping protocol (served by py-libp2p and go-libp2p hosts, opt-in in js and rust)
#: and its payload size.
PING_PROTOCOL = "/ipfs/ping/1.0.0"
PING_SIZE = 32
#: Peers whose connection numbers are remembered before the departed ones are forgotten.
MAX_LINKS = 4096

#: A connection: the peer and the number of its connection (renewed at every connect and
#: disconnect), so that what an old connection's check reports, late, is ignored.
Link = tuple[str, int]


class Liveness:
    """Checks the connected peers every ``LIVENESS_INTERVAL`` and drops the dead ones.

    ``run`` is the task; ``relink(peer)`` must be called at every connect and disconnect.
    Called only from the node's trio loop.
    """

    def __init__(
        self, transport: Transport, metrics: Metrics, nursery: trio.Nursery, max_peers: int
    ) -> None:
        self.transport = transport
        self.metrics = metrics
        self.nursery = nursery
        self.max_peers = max_peers
        self._links: dict[str, int] = {}  # peer -> number of its current connection
        self._misses: dict[Link, int] = {}  # checks failed in a row, by connection
        self._checking: set[Link] = set()  # connections with a check in flight
        self._ping_streams: dict[Link, Stream] = {}  # each connection's, kept
        self._no_ping: set[Link] = set()  # connections whose peer refused the ping protocol

    async def run(self) -> None:
        """Check every connected peer each round.

        Each check runs as its own task: on a stalled connection py-libp2p may block,
        shielded from cancellation, in the clean-up of a stream it failed to open, so a check
        still in flight at the next round counts as missed instead of holding up the others.
        """
        while True:
            await trio.sleep(LIVENESS_INTERVAL)
            connected = sorted(p.peer_id for p in self.transport.connected_peers())
            for peer in connected[: self.max_peers]:
                link = (peer, self._links.get(peer, 0))
                if link in self._checking:
                    self._missed(link)
                else:
                    self._checking.add(link)
                    self.nursery.start_soon(self._check, link)

    async def _check(self, link: Link) -> None:
        alive, counter = False, "commons_pings_total"
        try:
            with trio.move_on_after(LIVENESS_TIMEOUT):
                if self._pings(link):
                    try:
                        alive = await self._ping_on_stream(link)
                    except ProtocolUnsupported:  # an answer, not a miss: probe it instead
                        self._note_no_ping(link, "refused it")
                if link in self._no_ping:
                    counter = "commons_keepalives_total"
                    alive = await self.transport.probe(link[0])
        except TransportError:
            pass
        finally:
            self._checking.discard(link)
        self.metrics.inc(counter, outcome="ok" if alive else "missed")
        if alive:
            self._misses.pop(link, None)
        else:
            self._missed(link)

    def _pings(self, link: Link) -> bool:
        """Whether to check ``link`` by ping: unless its peer refused ping on this connection
        or its identify message leaves ping out (no identify yet: try, a refusal answers)."""
        if link in self._no_ping:
            return False
        if self.transport.offers(link[0], PING_PROTOCOL) is False:
            self._note_no_ping(link, "does not list it")
            return False
        return True

    def _note_no_ping(self, link: Link, why: str) -> None:
        if self._links.get(link[0], 0) == link[1]:  # else the connection is gone
            log.info("peer %s %s: checking its connection by Yamux pings", link[0], why)
            self._no_ping.add(link)

    async def _ping_on_stream(self, link: Link) -> bool:
        """One ping over the connection's ping stream, kept open from one round to the next.

        The ping protocol allows any number of pings on a stream, and reusing it makes a ping
        two small frames each way; opening a stream each time (muxer handshake, protocol
        negotiation, a handler task at the peer) cost ten times more CPU, about 0.7 % on a
        node idling with 10 peers. A kept stream the peer has meanwhile closed (py-libp2p
        waits 10 s for the next ping on it) is replaced by a fresh one at once, and only a
        fresh stream's failure counts as a miss (its ``StreamError`` reaches ``_check``).
        """
        kept = self._ping_streams.pop(link, None)
        if kept is not None:
            with contextlib.suppress(StreamError):
                return await self._ping_once(link, kept)
        stream = await self.transport.open_stream(link[0], PING_PROTOCOL)
        self.metrics.inc("commons_ping_streams_opened_total")
        return await self._ping_once(link, stream)

    async def _ping_once(self, link: Link, stream: Stream) -> bool:
        """Ping over ``stream``; keep it for the next round if it answered and still belongs
        to the connection, else reset it."""
        keep = False
        try:
            payload = os.urandom(PING_SIZE)
            await stream.write(payload)
            alive = await stream.read_exactly(PING_SIZE) == payload
            keep = alive and self._links.get(link[0], 0) == link[1]
            if keep:
                self._ping_streams[link] = stream
            return alive
        finally:
            if not keep:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await stream.reset()

    def _missed(self, link: Link) -> None:
        peer, number = link
        if self._links.get(peer, 0) != number:
            return  # a check of a connection that is gone
        self._misses[link] = misses = self._misses.get(link, 0) + 1
        if misses % LIVENESS_MISSES == 0:
            log.info("dropping the connection to %s: %d liveness checks unanswered", peer, misses)
            self.metrics.inc("commons_peers_dropped_total", reason="unresponsive")
            self.nursery.start_soon(self._drop, peer)

    async def _drop(self, peer: str) -> None:
        with trio.move_on_after(LIVENESS_TIMEOUT), contextlib.suppress(TransportError):
            await self.transport.disconnect(peer)

    def relink(self, peer: str) -> None:
        """A connection to ``peer`` came or went: checks of the previous one no longer count."""
        number = self._links.get(peer, 0)
        self._misses.pop((peer, number), None)
        self._no_ping.discard((peer, number))
        self._links[peer] = number + 1
        stale = self._ping_streams.pop((peer, number), None)
        if stale is not None:
            self.nursery.start_soon(stale.reset)
        if len(self._links) > MAX_LINKS:
            connected = {p.peer_id for p in self.transport.connected_peers()}
            for gone in [p for p in self._links if p not in connected]:
                del self._links[gone]
