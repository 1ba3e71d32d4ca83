"""The node's decisions, as a pure state machine: whom to dial, whom to sync with, and when.

Heartwood style: the runtime feeds past-tense inputs (``connected``, ``disconnected``,
``dial_failed``, ``sync_finished``, ``tick(now)``) and executes the effects the service returns
(:class:`Dial`, :class:`StartSync`). Time and randomness are parameters, so the tests drive it
with a fake clock and a seeded ``random.Random`` and no I/O at all.

Rules:
- Sync when a peer connects (only the side with the smaller peer id starts it, so a new
  connection costs one session, not two), and every ``sync_interval`` seconds with one random
  connected peer. Never two sessions with one peer at a time; after a failed session with a
  peer, wait ``SYNC_RETRY`` seconds before trying it again.
- A peer that does not serve ``/commons/sync/1`` (a gossip-only peer: another implementation
  of the record format, say) is not asked again while its connection lasts; it stays
  connected and in the gossip mesh. A new connection gives it a new chance.
- Keep dialling known addresses (bootstrap first, then remembered peers) while fewer than
  ``target_peers`` are connected. A failed dial backs off exponentially per address, from
  ``DIAL_BACKOFF_MIN`` to ``DIAL_BACKOFF_MAX``; bootstrap addresses are never forgotten
  (py-libp2p's bootstrap module forgets a peer after three failures; we do not use it).
- Report a peer's reachability when it changes, not at every dial: the first failed dial of a
  peer (or of an address that names none) makes it unreachable, a successful dial or a new
  connection makes it reachable again (:class:`Reachability`, one log line each).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Dial", "Effect", "Reachability", "Service", "StartSync"]

#: Seconds between background syncs with a random peer (overridden by config).
SYNC_INTERVAL = 30.0
#: Seconds to leave a peer alone after a failed sync with it.
SYNC_RETRY = 10.0
#: Dial back-off bounds, in seconds.
DIAL_BACKOFF_MIN = 1.0
DIAL_BACKOFF_MAX = 300.0
#: Dials in flight at once.
MAX_PENDING_DIALS = 4
#: Addresses remembered for dialling (bootstrap plus learned).
MAX_KNOWN_ADDRS = 1024


@dataclass(frozen=True)
class Dial:
    addr: str


@dataclass(frozen=True)
class StartSync:
    peer: str
    reason: str


@dataclass(frozen=True)
class Reachability:
    """A peer became unreachable (its first failed dial) or reachable again.

    ``peer`` is the peer id, or the address when it names none; ``addr`` the address dialled
    (None when the peer connected to us); ``reason`` why the dial failed."""

    peer: str
    addr: str | None
    reachable: bool
    reason: str = ""


Effect = Dial | StartSync | Reachability


@dataclass
class _Address:
    addr: str
    peer: str | None
    bootstrap: bool
    failures: int = 0
    next_try: float = 0.0
    pending: bool = False


@dataclass
class Service:
    """Decides dials and syncs. All times are seconds on the caller's monotonic clock."""

    our_peer: str
    rng: random.Random
    target_peers: int = 8
    sync_interval: float = SYNC_INTERVAL
    connected_peers: set[str] = field(default_factory=set)
    _addresses: dict[str, _Address] = field(default_factory=dict)
    _syncing: set[str] = field(default_factory=set)
    _sync_blocked_until: dict[str, float] = field(default_factory=dict)
    _syncless: set[str] = field(default_factory=set)  # connected, refused the sync protocol
    _unreachable: set[str] = field(default_factory=set)  # peers (or addresses) whose dial failed
    _next_periodic: float | None = None

    # ---------------------------------------------------------------------------- inputs

    def add_address(self, addr: str, *, peer: str | None, bootstrap: bool = False) -> None:
        """Learn a dialable address (bootstrap flag or config, remembered, mDNS)."""
        if peer == self.our_peer:
            return
        known = self._addresses.get(addr)
        if known is not None:
            known.bootstrap = known.bootstrap or bootstrap
            return
        if len(self._addresses) >= MAX_KNOWN_ADDRS and not bootstrap:
            return
        self._addresses[addr] = _Address(addr=addr, peer=peer, bootstrap=bootstrap)

    def connected(self, peer: str, now: float) -> list[Effect]:
        self.connected_peers.add(peer)
        self._syncless.discard(peer)  # a new connection: perhaps another program now
        for a in self._addresses.values():
            if a.peer == peer:
                a.failures = 0
                a.next_try = now
        effects = self._reachable(peer, None)
        if self.our_peer < peer:
            effects += self._start_sync(peer, now, "connected")
        return effects

    def disconnected(self, peer: str, now: float) -> list[Effect]:
        self.connected_peers.discard(peer)
        self._syncless.discard(peer)
        return []

    def dial_succeeded(self, addr: str, peer: str, now: float) -> list[Effect]:
        a = self._addresses.get(addr)
        if a is not None:
            a.pending = False
            a.peer = peer
            a.failures = 0
        # We dialled, so the peer may not start a session: start one unless already running.
        self.connected_peers.add(peer)
        if addr in self._unreachable:  # it named no peer when it failed: report it by its peer
            self._unreachable.discard(addr)
            self._unreachable.add(peer)
        return self._reachable(peer, addr) + self._start_sync(peer, now, "dialled")

    def dial_failed(self, addr: str, now: float, reason: str = "") -> list[Effect]:
        a = self._addresses.get(addr)
        if a is not None:
            a.pending = False
            a.failures += 1
            backoff = min(DIAL_BACKOFF_MAX, DIAL_BACKOFF_MIN * 2 ** (a.failures - 1))
            # Jitter spreads the retries of many nodes that lost the same seed.
            a.next_try = now + backoff * (0.75 + 0.5 * self.rng.random())
        who = a.peer if a is not None and a.peer is not None else addr
        if who in self._unreachable or who in self.connected_peers:
            return []  # already reported, or still reachable by another connection
        # Bounded: each entry is a known address or its peer (MAX_KNOWN_ADDRS, plus bootstrap).
        self._unreachable.add(who)
        return [Reachability(peer=who, addr=addr, reachable=False, reason=reason)]

    def sync_finished(
        self, peer: str, ok: bool, now: float, *, unsupported: bool = False
    ) -> list[Effect]:
        """A session ended; ``unsupported``: the peer said it does not serve the protocol."""
        self._syncing.discard(peer)
        if unsupported and peer in self.connected_peers:
            # At most one entry per connected peer, dropped when it disconnects.
            self._syncless.add(peer)
        elif not ok:
            self._sync_blocked_until[peer] = now + SYNC_RETRY
        return []

    def sync_requested(self, peer: str, now: float) -> list[Effect]:
        """A person asked for a sync (``commons sync``): ignore the retry delay."""
        self._sync_blocked_until.pop(peer, None)
        return self._start_sync(peer, now, "requested")

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._next_periodic is None:
            self._next_periodic = now + self.sync_interval
        elif now >= self._next_periodic:
            self._next_periodic = now + self.sync_interval
            candidates = sorted(
                p
                for p in self.connected_peers
                if p not in self._syncing
                and p not in self._syncless
                and self._sync_blocked_until.get(p, 0) <= now
            )
            if candidates:
                effects += self._start_sync(self.rng.choice(candidates), now, "periodic")
        effects += self._dials(now)
        return effects

    # ---------------------------------------------------------------------------- helpers

    def syncing(self, peer: str) -> bool:
        return peer in self._syncing

    def speaks_sync(self, peer: str) -> bool:
        """False while the peer's connection is one that refused the sync protocol."""
        return peer not in self._syncless

    def _reachable(self, peer: str, addr: str | None) -> list[Effect]:
        """The peer answered: report it once if it had been unreachable."""
        if peer not in self._unreachable:
            return []
        self._unreachable.discard(peer)
        return [Reachability(peer=peer, addr=addr, reachable=True)]

    def _start_sync(self, peer: str, now: float, reason: str) -> list[Effect]:
        if peer in self._syncing or peer in self._syncless:
            return []
        if self._sync_blocked_until.get(peer, 0) > now:
            return []
        self._syncing.add(peer)
        return [StartSync(peer=peer, reason=reason)]

    def _dials(self, now: float) -> list[Effect]:
        if len(self.connected_peers) >= self.target_peers:
            return []
        pending = sum(1 for a in self._addresses.values() if a.pending)
        due = [
            a
            for a in self._addresses.values()
            if not a.pending and a.next_try <= now and a.peer not in self.connected_peers
        ]
        # Bootstrap addresses first, then those that failed least.
        due.sort(key=lambda a: (not a.bootstrap, a.failures, a.addr))
        effects: list[Effect] = []
        for a in due:
            if pending >= MAX_PENDING_DIALS:
                break
            a.pending = True
            pending += 1
            effects.append(Dial(addr=a.addr))
        return effects
