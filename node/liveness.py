"""Liveness checks of the node's connections: the I/O half (the decisions are the service's).

A cut cable or a partition does not close a TCP connection: it stalls, libp2p still calls the
peer connected, and once the path is back the kernel retransmits only after its backed-off
timer (some 50 s after a one-minute cut). So the service (:mod:`node.service`) asks for a
:class:`~node.service.Check` of every connection each round, counts the misses and hangs up a
connection that stopped answering, so that the dialler redials and a fresh connection
reconciles at once. This module carries the checks out and reports each answer.

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
from collections.abc import Callable

import trio

from node.metrics import Metrics
from node.net.transport import ProtocolUnsupported, Stream, StreamError, Transport, TransportError
from node.service import Check

__all__ = ["PING_PROTOCOL", "Prober"]

log = logging.getLogger(__name__)

#: The libp2p ping protocol (served by py-libp2p and go-libp2p hosts, opt-in in js and rust)
#: and its payload size.
PING_PROTOCOL = "/ipfs/ping/1.0.0"
PING_SIZE = 32

#: ``report(peer, link, alive, ping_refused)``: what a check found.
Report = Callable[[str, int, bool, bool], None]


class Prober:
    """Runs the service's checks, each as its own task, and reports every answer.

    Each check is a task of its own: on a stalled connection py-libp2p may block, shielded
    from cancellation, in the clean-up of a stream it failed to open; the service counts a
    check still running at the next round as missed. Called only from the node's trio loop.
    """

    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        nursery: trio.Nursery,
        *,
        current: Callable[[str], int],
        report: Report,
    ) -> None:
        self.transport = transport
        self.metrics = metrics
        self.nursery = nursery
        self.current = current  # the number of a peer's current connection
        self.report = report
        self._ping_streams: dict[tuple[str, int], Stream] = {}  # each connection's, kept

    def check_soon(self, check: Check) -> None:
        self.nursery.start_soon(self._check, check)

    def ping_streams(self) -> list[Stream]:
        """The ping streams kept open, one per connection at most."""
        return list(self._ping_streams.values())

    def relinked(self, peer: str) -> None:
        """A connection to ``peer`` came or went: let go of the ping stream of the old one."""
        for key in [k for k in self._ping_streams if k[0] == peer and k[1] != self.current(peer)]:
            self.nursery.start_soon(self._ping_streams.pop(key).reset)

    async def _check(self, check: Check) -> None:
        link = (check.peer, check.link)
        alive = refused = False
        try:
            with trio.move_on_after(check.timeout):
                if check.by == "ping":
                    refused = self.transport.offers(check.peer, PING_PROTOCOL) is False
                    if refused:
                        self._note_no_ping(link, "does not list it")
                    else:
                        try:
                            alive = await self._ping_on_stream(link)
                        except ProtocolUnsupported:  # an answer, not a miss: probe it instead
                            refused = True
                            self._note_no_ping(link, "refused it")
                if check.by == "probe" or refused:
                    alive = await self.transport.probe(check.peer)
        except TransportError:
            pass
        counter = (
            "commons_keepalives_total" if check.by == "probe" or refused else "commons_pings_total"
        )
        self.metrics.inc(counter, outcome="ok" if alive else "missed")
        self.report(check.peer, check.link, alive, refused)

    def _note_no_ping(self, link: tuple[str, int], why: str) -> None:
        if self.current(link[0]) == link[1]:  # else the connection is gone
            log.info("peer %s %s: checking its connection by Yamux pings", link[0], why)

    async def _ping_on_stream(self, link: tuple[str, int]) -> bool:
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

    async def _ping_once(self, link: tuple[str, int], stream: Stream) -> bool:
        """Ping over ``stream``; keep it for the next round if it answered and still belongs
        to the connection, else reset it."""
        keep = False
        try:
            payload = os.urandom(PING_SIZE)
            await stream.write(payload)
            alive = await stream.read_exactly(PING_SIZE) == payload
            keep = alive and self.current(link[0]) == link[1]
            if keep:
                self._ping_streams[link] = stream
            return alive
        finally:
            if not keep:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await stream.reset()
