"""The Kademlia DHT of project providers, behind the adapter (py-libp2p 0.8.1 ``kad_dht``).

A node that follows project P provides ``protocol.peers.provider_key(P)``; a node that
starts following P looks its providers up and dials a few. This module only carries that
out, in the node's own types and within bounds; when to provide and look up, and whom to
dial, are the service's decisions (:mod:`node.providers`).

Modes: a *server* answers DHT queries (``/commons/kad/1``, see ``_compat/kad.py``) and holds
provider records; a *client* only asks. Routing tables are filled from connections (the
library does not do it): once identify says a connected peer serves the DHT, it is added.

Bounds: one provide and one lookup run at a time (a caller waits for the slot); each gives
up after ``PROVIDE_TIMEOUT_SECONDS`` or ``LOOKUP_TIMEOUT_SECONDS``; a lookup returns at most
``MAX_PROVIDERS`` distinct providers with at most ``MAX_PROVIDER_ADDRS`` dialable addresses
each (the library returned one provider five times). Every DHT message read is at most
64 KiB and cut to 20 closer peers, 20 providers and 8 addresses an entry before the library
walks it; what a lookup is told is not kept in the provider store; only peers that serve the
DHT enter the routing table (``_compat/kad.py``); answers refused or cut are counted
(``DhtStats.answers_refused``); one operation opens at most 64 new connections. The
library's own bounds stay: 10 s a query, 10 queries in
flight a lookup, 12 inbound DHT streams at once, 10 ADD_PROVIDER a peer per 10 s, 20
providers a key, records kept 48 h.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
from libp2p.abc import IHost
from libp2p.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from node.net import _compat as compat
from node.net._compat import kad

__all__ = ["Dht", "DhtStats", "Provider"]

log = logging.getLogger(__name__)

PROVIDE_TIMEOUT_SECONDS = 30.0
LOOKUP_TIMEOUT_SECONDS = 20.0
MAX_PROVIDERS = 20
MAX_PROVIDER_ADDRS = 4
IDENTIFY_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Provider:
    peer_id: str
    addrs: tuple[str, ...]  # each ends in /p2p/<peer_id>


@dataclass
class DhtStats:
    provides: int = 0
    provides_failed: int = 0
    lookups: int = 0
    lookups_failed: int = 0
    providers_found: int = 0
    queries: int = 0  # DHT requests our lookups and provides sent (a stream each)
    providers_refused: int = 0  # no dialable address, or ourselves, or over MAX_PROVIDERS
    #: Answers to our lookups and provides refused (too-large, unparsable) or cut (over-cap),
    #: and their queries refused for want of a dial (dial-budget).
    answers_refused: dict[str, int] = field(default_factory=dict)

    def refused(self, reason: str) -> None:
        self.answers_refused[reason] = self.answers_refused.get(reason, 0) + 1


class Dht:
    """One node's DHT; build it before the host connects to anyone (identify must list the
    protocol), run it with :meth:`run`."""

    def __init__(self, host: IHost, mode: Literal["server", "client", "off"]) -> None:
        self.mode = mode
        self.protocol_id = str(kad.PROTOCOL_ID)
        self._host = host
        self._kad: KadDHT | None = None  # off: nothing runs, nothing is added or asked
        if mode != "off":
            kad.install()
            self._kad = KadDHT(
                host,
                DHTMode.SERVER if mode == "server" else DHTMode.CLIENT,
                enable_random_walk=False,
                enable_values=False,  # providers only: nobody may store values with us
            )
            kad.guard_routing_table(self._kad, lambda pid: compat.peer_protocols(host, pid))
            kad.keep_only_given_providers(self._kad)
            kad.budget_dials(self._kad)
        self._provide_slot = trio.Lock()
        self._lookup_slot = trio.Lock()
        self.stats = DhtStats()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        if self._kad is None:
            task_status.started()
            return
        async with background_trio_service(self._kad):
            task_status.started()
            await trio.sleep_forever()

    async def promote(self) -> None:
        """Become a server (answer queries, hold records): a client found publicly
        reachable (``node/net/relay.py``) can serve the DHT like a seed."""
        if self._kad is not None and self.mode == "client":
            await self._kad.switch_mode(DHTMode.SERVER)
            self.mode = "server"
            log.info("DHT: now a server (this node is publicly reachable)")

    def routing_table_size(self) -> int:
        return 0 if self._kad is None else int(self._kad.get_routing_table_size())

    async def peer_connected(self, peer_id: str) -> None:
        """Add a connected peer to the routing table once identify listed its protocols
        (a client, which lists no DHT protocol, is never added)."""
        if self._kad is None:
            return
        pid = ID.from_base58(peer_id)
        with trio.move_on_after(IDENTIFY_WAIT_SECONDS):
            # identify ends a few ms after the connection and signals nothing we can await
            while (listed := compat.peer_protocols(self._host, pid)) is None:  # noqa: ASYNC110
                await trio.sleep(0.05)
            if self.protocol_id in listed:
                try:
                    await self._kad.add_peer(pid)
                except Exception as exc:
                    log.debug("adding %s to the DHT routing table: %r", peer_id, exc)

    @contextlib.contextmanager
    def _reporting(self) -> Iterator[None]:
        """One operation: it may open ``kad.MAX_DIALS`` new connections, and answers refused
        or cut and dials refused while it runs count in ``stats`` (the library's query
        tasks, started inside it, inherit the context variables)."""
        report = kad.REPORT.set(self.stats.refused)
        operation = [kad.MAX_DIALS, 0]
        dials = kad.DIALS_LEFT.set(operation)
        try:
            yield
        finally:
            kad.DIALS_LEFT.reset(dials)
            kad.REPORT.reset(report)
            self.stats.queries += operation[1]

    async def provide(self, key: bytes) -> bool:
        """Announce that we provide ``key``; False when no DHT server took it in time."""
        if self._kad is None:
            return False
        async with self._provide_slot:
            ok = False
            with trio.move_on_after(PROVIDE_TIMEOUT_SECONDS), self._reporting():
                try:
                    ok = bool(await self._kad.provider_store.provide(key))
                except Exception as exc:
                    log.info("providing %s failed: %r", key.hex()[:16], exc)
            self.stats.provides += 1
            self.stats.provides_failed += not ok
            return ok

    async def find_providers(self, key: bytes, count: int) -> list[Provider]:
        """At most ``min(count, MAX_PROVIDERS)`` providers of ``key`` other than us, each with
        its dialable addresses; [] when the lookup failed or timed out."""
        count = max(1, min(count, MAX_PROVIDERS))
        if self._kad is None:
            return []
        async with self._lookup_slot:
            found: list[Any] = []
            failed = True
            with trio.move_on_after(LOOKUP_TIMEOUT_SECONDS), self._reporting():
                try:
                    found = await kad.find_providers(self._kad, key, count)
                    failed = False
                except Exception as exc:
                    log.info("looking up providers of %s failed: %r", key.hex()[:16], exc)
            self.stats.lookups += 1
            self.stats.lookups_failed += failed
        me = str(self._host.get_id())
        out: dict[str, Provider] = {}
        for info in found[: MAX_PROVIDERS * 5]:  # duplicates come back (up to five times)
            peer = str(info.peer_id)
            addrs = tuple(
                dict.fromkeys(
                    f"{a}/p2p/{peer}" if "/p2p/" not in str(a) else str(a)
                    for a in info.addrs
                    if "/tcp/" in str(a)
                )
            )[:MAX_PROVIDER_ADDRS]
            if peer == me or peer in out or not addrs or len(out) >= count:
                self.stats.providers_refused += peer not in out
                continue
            out[peer] = Provider(peer, addrs)
        self.stats.providers_found += len(out)
        return list(out.values())
