"""Peer exchange decisions, pure like :mod:`node.service` (which holds one and feeds it).

Without it a node knows only its bootstrap addresses, its address book and mDNS, so nodes
bootstrapped to one seed each hold only the seed: the network is a star and the seed its
single point of failure. With it (the wire is :mod:`protocol.peers`, ``/commons/peers/1``):

- **Whom to ask**: while fewer than ``target_peers`` are connected, each connected peer not
  yet asked on its connection, at once, and any peer again ``exchange_interval`` seconds
  after it was last asked; at most ``max_pending_asks`` asks in flight. A node with enough
  peers asks nobody, so a network at its target degree exchanges nothing.
- **What to keep**: offered addresses that name neither us nor a connected peer, at most
  ``max_learned_per_source`` from one answering peer in this run (one liar fills at most
  that much of the address book, whose size the service bounds too).
- **What to offer**: up to the wanted number of connected peers' listen addresses, two an
  address book entry at most, in random order (each asker sees a different sample, so the
  graph does not converge on the same few peers); loopback and private addresses only to
  an asker that reached us over such an address, or when ``offer_local`` says so.

Which known addresses are dialled (:func:`choose_dials`, for the service): while fewer than
``target_peers`` are connected, any; beyond it, up to ``max_peers``, bootstrap addresses and
DHT providers only (learned peers alone can fill the target on each side of a partition and
keep the sides apart once it heals: the simulator found it). At most ``max_pending_dials``
at once, ranked: bootstrap first, then the least failed, then the /24 or /48 the node holds
fewest connections into, then a random order fixed per address (nodes told the same list
must not all dial the same peers); at most ``max_per_group`` connections into one public
network beyond the bootstrap peers.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol.peers import MAX_OFFER, PeersError, addr_group, check_addr

__all__ = [
    "AskPeers",
    "DialSettings",
    "ExchangeSettings",
    "KnownAddress",
    "PeerExchange",
    "choose_dials",
    "network_load",
]

#: Peers whose accepted-address counts are kept (oldest forgotten first).
MAX_SOURCES = 1024
#: Addresses offered per connected peer at most.
ADDRS_PER_PEER = 2


@dataclass
class KnownAddress:
    """An address the service may dial, and what it knows of it."""

    addr: str
    peer: str | None
    bootstrap: bool
    learned: bool = False  # offered by a peer (peer exchange)
    provider: bool = False  # found in the DHT: dialled even at the target
    rank: float = 0.0  # random, fixed: the order among otherwise equal addresses
    failures: int = 0
    next_try: float = 0.0
    pending: bool = False

    def source(self) -> str:
        """Where it came from, as ``commons_dials_total`` labels it."""
        if self.bootstrap:
            return "bootstrap"
        return "provider" if self.provider else "exchange" if self.learned else "known"


@dataclass(frozen=True)
class AskPeers:
    """Ask ``peer`` for up to ``want`` addresses of its peers, then report ``peers_offered``
    (with what came back, possibly nothing) to the service."""

    peer: str
    want: int


class DialSettings(Protocol):
    """The dialling tunables (fields of :class:`node.service.ServiceConfig`)."""

    @property
    def target_peers(self) -> int: ...
    @property
    def max_peers(self) -> int: ...
    @property
    def max_pending_dials(self) -> int: ...
    @property
    def max_per_group(self) -> int: ...


def choose_dials(
    addresses: Iterable[KnownAddress], connected: set[str], c: DialSettings, now: float
) -> list[KnownAddress]:
    """The addresses to dial now (marked pending), by the rules in the module docstring."""
    known = list(addresses)
    full = len(connected) >= c.target_peers
    pending = sum(1 for a in known if a.pending)
    if pending >= c.max_pending_dials or len(connected) >= c.max_peers:
        return []
    due = [
        a
        for a in known
        if not a.pending
        and a.next_try <= now
        and a.peer not in connected
        and (a.bootstrap or a.provider or not full)
    ]
    groups = network_load(
        (a.peer, a.addr, a.bootstrap) for a in known if a.pending or a.peer in connected
    )
    due.sort(key=lambda a: (not a.bootstrap, a.failures, groups.get(addr_group(a.addr), 0), a.rank))
    chosen = []
    for a in due:
        if pending >= c.max_pending_dials:
            break
        group = addr_group(a.addr)
        if not a.bootstrap and group is not None and groups.get(group, 0) >= c.max_per_group:
            continue
        groups[group] = groups.get(group, 0) + 1
        a.pending = True
        pending += 1
        chosen.append(a)
    return chosen


class ExchangeSettings(Protocol):
    """The tunables read here (fields of :class:`node.service.ServiceConfig`)."""

    @property
    def exchange_interval(self) -> float: ...
    @property
    def exchange_want(self) -> int: ...
    @property
    def max_pending_asks(self) -> int: ...
    @property
    def max_learned_per_source(self) -> int: ...
    @property
    def offer_local(self) -> bool: ...


@dataclass
class PeerExchange:
    our_peer: str
    rng: random.Random
    settings: ExchangeSettings
    _asked_at: dict[str, float] = field(default_factory=dict)  # connected peers only
    _asking: set[str] = field(default_factory=set)
    _accepted: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        s = self.settings
        self.interval, self.want = s.exchange_interval, s.exchange_want
        self.max_pending, self.max_per_source = s.max_pending_asks, s.max_learned_per_source
        if not 1 <= self.want <= MAX_OFFER:
            raise ValueError(f"exchange_want must be in 1..{MAX_OFFER}, got {self.want}")

    def disconnected(self, peer: str) -> None:
        """Forget when ``peer`` was asked: its next connection is asked afresh."""
        self._asked_at.pop(peer, None)

    def asks(self, now: float, connected: Iterable[str], short: bool) -> list[AskPeers]:
        """The asks to start now; ``short``: fewer peers connected than wanted."""
        if not short:
            return []
        never = -self.interval
        due = [
            p
            for p in sorted(connected)
            if p not in self._asking and self._asked_at.get(p, never) + self.interval <= now
        ]
        # Never asked first, then the longest ago.
        due.sort(key=lambda p: (p in self._asked_at, self._asked_at.get(p, 0.0)))
        effects = []
        for peer in due[: max(0, self.max_pending - len(self._asking))]:
            self._asking.add(peer)
            self._asked_at[peer] = now
            effects.append(AskPeers(peer=peer, want=self.want))
        return effects

    def answered(
        self, source: str, addrs: Sequence[str], connected: set[str]
    ) -> tuple[list[str], int]:
        """``source`` answered (``addrs`` already checked by the codec): the addresses worth
        learning, and how many were dropped by the per-source cap."""
        self._asking.discard(source)
        used = self._accepted.pop(source, 0)
        kept: list[str] = []
        over = 0
        for addr in addrs:
            peer = addr.rpartition("/p2p/")[2]
            if peer == self.our_peer or peer in connected:
                continue
            if used >= self.max_per_source:
                over += 1
                continue
            used += 1
            kept.append(addr)
        self._accepted[source] = used
        if len(self._accepted) > MAX_SOURCES:
            self._accepted.popitem(last=False)
        return kept, over

    def offer(
        self, asker: str, local: bool, want: int, listing: Iterable[tuple[str, Sequence[str]]]
    ) -> list[str]:
        """What to answer ``asker`` (``local``: it reached us over a loopback or private
        address), from ``listing``: each connected peer and its listen addresses."""
        allow_local = local or self.settings.offer_local
        peers: list[list[str]] = []
        for peer, addrs in listing:
            if peer in (asker, self.our_peer):
                continue
            good = []
            for addr in addrs:
                try:
                    good.append(check_addr(addr, allow_local=allow_local))
                except PeersError:
                    continue
                if len(good) == ADDRS_PER_PEER:
                    break
            if good:
                peers.append(good)
        self.rng.shuffle(peers)
        out: list[str] = []
        for good in peers[: min(want, MAX_OFFER)]:
            out.extend(good)
        return out[:MAX_OFFER]


def network_load(busy: Iterable[tuple[str | None, str, bool]]) -> dict[str | None, int]:
    """Connections (and dials under way) per public network, from (peer, address,
    bootstrap) triples: one a peer, bootstrap peers not counted (they are chosen by hand)."""
    load: dict[str | None, int] = {}
    seen: set[str | None] = set()
    for peer, addr, bootstrap in busy:
        if peer not in seen:
            seen.add(peer)
            group = addr_group(addr)
            load[group] = load.get(group, 0) + (not bootstrap)
    return load
