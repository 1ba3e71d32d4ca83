"""The node's decisions, as a pure state machine: the reactor in :mod:`node.runtime` feeds it
what happened and executes what it asks for.

Heartwood style: inputs are past-tense methods (``connected``, ``gossip_arrived``,
``records_stored``, ``tick`` ...), each returning the effects to carry out (``Dial``,
``StartSync``, ``Subscribe``, ``Publish``, ``Check``, ``Hangup``, ``Ban`` ...). Time (``now``,
seconds on the caller's monotonic clock) and randomness (``rng``) are parameters, every
tunable is a field of :class:`ServiceConfig`, and nothing here touches the network, the store
or the clock, so the tests and the simulator drive it with a fake clock and a seeded rng.

Rules:
- **Sync** when a peer connects (only the side with the smaller peer id starts it, so a new
  connection costs one session, not two), when we dialled it, and every ``sync_interval``
  seconds with one random connected peer. Never two sessions with one peer at a time; after
  a failed session, leave the peer alone ``sync_retry`` seconds. A peer that does not serve
  ``/commons/sync/1`` (a gossip-only peer: another implementation of the record format, say)
  is not asked again while its connection lasts; it stays connected and in the gossip mesh.
- **Dial** known addresses (bootstrap first, then the least failed) while fewer than
  ``target_peers`` are connected, and bootstrap ones up to ``max_peers`` (learned peers alone
  can fill the target on one side of a partition and keep the sides apart once it heals:
  the simulator found it), at most ``max_pending_dials`` at once. A failed dial backs
  off exponentially per address, with jitter; bootstrap addresses are never forgotten.
- **Gossip admission**, before the record is parsed: a token bucket per forwarding peer
  (``gossip_rate`` a second, bursts of twice that), then the refusal memory: bytes refused
  for good on a topic are refused again at once (GossipSub does not mark a refused message
  seen, so each IHAVE naming it brings it back; keyed by topic too, because a valid record
  first sent on a wrong topic must still be accepted on its own). After the caller's
  validation (:func:`protocol.validation.validate_message`): the follow rule. A record
  refused only for a timestamp too far ahead is not remembered (time may lift that).
- **Local policy** (:mod:`node.policy`): a valid record of a blocked project or author is
  refused (``BLOCKED``) and remembered like any refusal, without blame: the forwarder's own
  policy may differ. A new policy (an operator's block or unblock) forgets the refusals.
- **Bans**: ``max_rejects_per_peer`` rejected messages forwarded by one peer within
  ``reject_window`` seconds ban it for ``reject_ban`` seconds; a peer that broke the sync
  protocol is banned for ``sync_ban`` seconds. One ban at a time per peer. A message refused
  by the rate limit is dropped without blame (GossipSub's "ignore", not "reject"): a relay
  forwards the valid records it accepted from every side, so a spammer reaching several
  nodes at twice the limit made honest relays exceed it too, and they were banned (the
  simulator, ``tests/node/simulator.py``, found it). The spammer's excess is still refused.
- **Liveness**: every ``liveness_interval`` seconds each connected peer (at most
  ``max_peers``) is checked, by ping, or by a bare connection probe once its peer refused
  ping on this connection. A check still running at the next round is a miss; every
  ``liveness_misses`` misses in a row the connection is hung up (the dialler then redials,
  and a fresh connection reconciles at once). Connections are numbered (a new number at
  every connect and disconnect), so a late answer about a previous connection is ignored.
- **Subscriptions**: the meta topic, and the topic of each followed project, learned from
  stored records or from the store's project list every ``subscription_refresh`` seconds
  (``commons import`` writes to the store directly); at most ``max_subscriptions`` topics.
- **Publishing**: records authored here or submitted to the API are published once stored;
  those authored while no node ran are published at start.
- **Views**: ``warm_delay`` seconds after start, make the followed projects' answers (the
  first time all of them, folds within a budget), then again every ``views_interval``
  seconds after the previous round finished (``node.views.cache.ViewCache.refresh``).
- **Peer exchange** (:mod:`node.peering`, which says whom to ask and what to keep); dials
  rank bootstrap, least failed, the /24 or /48 least connected into, then a random order
  per address (nodes told the same addresses must not all dial the same peers); at most
  ``max_per_group`` connections into one public network beyond the bootstrap peers. An
  address known only from a DHT answer is dialled once: a failure forgets it.
- **Reachability** is reported when it changes, not at every dial: the first failed dial of
  a peer (or of an address that names none) makes it unreachable, a successful dial or a new
  connection makes it reachable again (:class:`Reachability`, one log line each).
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from node.peering import AskPeers, KnownAddress, PeerExchange, choose_dials
from node.policy import BLOCKED, Policy
from node.providers import DhtConfig, FindProviders, Provide, ProviderPlan
from protocol.errors import InvalidRecord
from protocol.record import Record
from protocol.sync import MAX_SCOPES, Hello
from protocol.validation import META_SCOPE, META_TOPIC, project_topic, scope_of

__all__ = [
    "NOT_FOLLOWED",
    "RATE_LIMITED",
    "REFUSED_AGAIN",
    "REJECTS",
    "AskPeers",
    "Ban",
    "Check",
    "Dial",
    "Effect",
    "FindProviders",
    "Hangup",
    "ListProjects",
    "NodeService",
    "NoteDialFailure",
    "Provide",
    "Publish",
    "PublishUnpublished",
    "Reachability",
    "RefreshViews",
    "RememberPeer",
    "ServiceConfig",
    "StartSync",
    "Subscribe",
    "WakeAt",
    "peer_of",
]

log = logging.getLogger(__name__)

#: Why gossip was refused before it was parsed, or for the follow rule (the other refusals
#: are the record's own error codes).
RATE_LIMITED = "rate-limited"
REFUSED_AGAIN = "refused-again"
NOT_FOLLOWED = "not-followed"
#: The reason of a ban for forwarding rejected gossip (other bans carry a sync error code).
REJECTS = "rejects"


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """Every tunable of the node's decisions; the defaults are the running node's values."""

    #: Projects followed (genesis record ids); empty: every project.
    follow: frozenset[bytes] = frozenset()
    #: Connections wanted (dialling stops there) and allowed (liveness checks at most that many).
    target_peers: int = 8
    max_peers: int = 32
    #: Seconds between background syncs with a random peer, and after a failed one.
    sync_interval: float = 30.0
    sync_retry: float = 10.0
    #: Dial back-off bounds in seconds, dials in flight at once, addresses remembered.
    dial_backoff_min: float = 1.0
    dial_backoff_max: float = 300.0
    max_pending_dials: int = 4
    max_known_addrs: int = 1024
    #: Peer exchange (:mod:`node.peering`): seconds between asks of one peer, addresses an
    #: ask, asks in flight, addresses kept from one peer, connections into one public network.
    exchange_interval: float = 30.0
    exchange_want: int = 16
    max_pending_asks: int = 2
    max_learned_per_source: int = 64
    max_per_group: int = 2
    offer_local: bool = False
    #: The DHT of project providers (:mod:`node.providers`); None: not used.
    dht: DhtConfig | None = None
    #: Gossip messages a second accepted from one forwarding peer (bursts of twice that), and
    #: the peers whose buckets are kept.
    gossip_rate: int = 1000
    max_rate_peers: int = 1024
    #: Messages refused for good, remembered by (topic, message id).
    max_refused: int = 4096
    #: Rejected messages one peer may forward within ``reject_window`` seconds before it is
    #: banned for ``reject_ban`` seconds; peers whose rejects are counted.
    max_rejects_per_peer: int = 10
    reject_window: float = 60.0
    reject_ban: float = 600.0
    max_reject_peers: int = 1024
    #: Seconds a peer that broke the sync protocol is banned.
    sync_ban: float = 300.0
    #: Bans remembered (the transport enforces them; this only avoids banning twice).
    max_bans: int = 1024
    #: Seconds between liveness rounds, seconds a check may take, misses before a hang-up,
    #: and peers whose connection numbers are kept.
    liveness_interval: float = 5.0
    liveness_timeout: float = 5.0
    liveness_misses: int = 2
    max_links: int = 4096
    #: Topics subscribed to at most (py-libp2p keeps a validator a topic in memory), and
    #: seconds between looks at the store's project list.
    max_subscriptions: int = 250
    subscription_refresh: float = 10.0
    #: Records authored offline read per batch when they are published at start.
    unpublished_batch: int = 500
    #: Views: seconds after start before the first round, records folded then at most,
    #: seconds between later rounds.
    warm_delay: float = 0.5
    warm_records: int = 60_000
    views_interval: float = 2.0
    #: Seconds between ticks at most.
    tick: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and value < 0:
                raise ValueError(f"{f.name} must not be negative, got {value}")
        positive = (self.max_rejects_per_peer, self.liveness_misses, self.tick, self.gossip_rate)
        if min(positive) <= 0:
            raise ValueError("max_rejects_per_peer, liveness_misses, tick, gossip_rate > 0")


# ------------------------------------------------------------------------------------ effects


@dataclass(frozen=True)
class Dial:
    addr: str
    source: str = field(default="known", compare=False)  # KnownAddress.source()


@dataclass(frozen=True)
class StartSync:
    peer: str
    reason: str


@dataclass(frozen=True)
class Subscribe:
    topic: str


@dataclass(frozen=True)
class Publish:
    record: Record


@dataclass(frozen=True)
class PublishUnpublished:
    """Publish what the store holds unpublished (authored while no node ran), by batches."""

    batch: int


@dataclass(frozen=True)
class Check:
    """Check one connection: by the ping protocol, or by a bare probe of the connection."""

    peer: str
    link: int  # the connection's number; the answer must name it
    by: Literal["ping", "probe"]
    timeout: float


@dataclass(frozen=True)
class Hangup:
    peer: str
    reason: str


@dataclass(frozen=True)
class Ban:
    peer: str
    seconds: float
    reason: str  # REJECTS, or the sync error code


@dataclass(frozen=True)
class RememberPeer:
    """Note in the address book that ``peer`` connected, listening on ``addrs``."""

    peer: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class NoteDialFailure:
    """Note in the address book that dialling ``peer`` failed (it forgets repeated ones)."""

    peer: str


@dataclass(frozen=True)
class ListProjects:
    """Read the store's project ids and report them with ``projects_listed``."""


@dataclass(frozen=True)
class RefreshViews:
    """Fold the followed projects' views whose results are stale (``first``: every one that
    fits ``budget`` records, else only those shown), then report ``views_refreshed``."""

    first: bool
    budget: int


@dataclass(frozen=True)
class WakeAt:
    """Tick again no later than ``when``."""

    when: float


@dataclass(frozen=True)
class Reachability:
    """A peer became unreachable (its first failed dial) or reachable again.

    ``peer`` is the peer id, or the address when it names none; ``addr`` the address dialled
    (None when the peer connected to us); ``reason`` why the dial failed."""

    peer: str
    addr: str | None
    reachable: bool
    reason: str = ""


Effect = (
    Dial
    | AskPeers
    | Provide
    | FindProviders
    | StartSync
    | Reachability
    | Subscribe
    | Publish
    | PublishUnpublished
    | Check
    | Hangup
    | Ban
    | RememberPeer
    | NoteDialFailure
    | ListProjects
    | RefreshViews
    | WakeAt
)


@dataclass
class NodeService:
    """The decisions of one node; see the module docstring for the rules."""

    our_peer: str
    rng: random.Random
    config: ServiceConfig = field(default_factory=ServiceConfig)
    policy: Policy = field(default_factory=Policy)
    connected_peers: set[str] = field(default_factory=set)
    # dialling and sync
    _addresses: dict[str, KnownAddress] = field(default_factory=dict)
    _syncing: set[str] = field(default_factory=set)
    _sync_blocked_until: dict[str, float] = field(default_factory=dict)
    _syncless: set[str] = field(default_factory=set)  # connected, refused the sync protocol
    _unreachable: set[str] = field(default_factory=set)  # peers (or addresses) whose dial failed
    _next_periodic: float | None = None
    # gossip admission and bans
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    _refused: OrderedDict[tuple[str, bytes], None] = field(default_factory=OrderedDict)
    _rejects: dict[str, deque[float]] = field(default_factory=dict)
    _banned_until: dict[str, float] = field(default_factory=dict)
    # liveness
    _links: dict[str, int] = field(default_factory=dict)  # peer -> its connection's number
    _misses: dict[tuple[str, int], int] = field(default_factory=dict)
    _checking: set[tuple[str, int]] = field(default_factory=set)
    _no_ping: set[tuple[str, int]] = field(default_factory=set)
    _next_round: float | None = None
    # subscriptions, views
    _topics: set[str] = field(default_factory=set)  # subscribed, or asked to be
    _over_cap: set[str] = field(default_factory=set)
    _next_listing: float | None = None
    _views_due: float | None = None
    _views_first: bool = True
    exchange: PeerExchange = field(init=False)  # whom to ask, what to offer
    providers: ProviderPlan = field(init=False)  # what to provide and look up in the DHT

    def __post_init__(self) -> None:
        self.exchange = PeerExchange(self.our_peer, self.rng, self.config)
        self.providers = ProviderPlan(self.config.dht or DhtConfig(max_projects=0))

    # ---------------------------------------------------------------------------- start, tick

    def started(self, now: float) -> list[Effect]:
        """The node is up: subscribe, look for projects, publish what was authored offline."""
        c = self.config
        self._next_listing = now + c.subscription_refresh
        self._next_round = now + c.liveness_interval
        self._views_due = now + c.warm_delay
        for project in sorted(c.follow):  # looked up in the DHT before any record of it came
            self.providers.follow(project)
        return [
            *self._want_topic(META_TOPIC),
            ListProjects(),
            PublishUnpublished(c.unpublished_batch),
        ]

    def tick(self, now: float) -> list[Effect]:
        """Time passed: periodic sync, dials, a liveness round, a project listing, views.
        Always ends with the :class:`WakeAt` of the next tick."""
        c = self.config
        effects: list[Effect] = []
        if self._next_periodic is None:
            self._next_periodic = now + c.sync_interval
        elif now >= self._next_periodic:
            self._next_periodic = now + c.sync_interval
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
        effects += self._asks(now)
        effects += self.providers.due(now)
        if self._next_round is not None and now >= self._next_round:
            self._next_round = now + c.liveness_interval
            effects += self._liveness_round(now)
        if self._next_listing is not None and now >= self._next_listing:
            self._next_listing = now + c.subscription_refresh
            effects.append(ListProjects())
        if self._views_due is not None and now >= self._views_due:
            self._views_due = None  # until views_refreshed
            budget = c.warm_records
            effects.append(RefreshViews(first=self._views_first, budget=budget))
            self._views_first = False
        timers = (self._next_periodic, self._next_round, self._next_listing, self._views_due)
        effects.append(WakeAt(min([now + c.tick, *(t for t in timers if t is not None)])))
        return effects

    # ---------------------------------------------------------------------------- peers

    def address_learned(  # how: learned (by peer exchange), provider (found in the DHT)
        self, addr: str, *, peer: str | None = None, bootstrap: bool = False, **how: bool
    ) -> None:
        """A dialable address: from the bootstrap list, the address book, mDNS, a peer. The
        peer is read from ``addr`` when not given, and named in it when missing."""
        if peer is None:
            peer = peer_of(addr)
        elif "/p2p/" not in addr:
            addr = f"{addr}/p2p/{peer}"
        if peer == self.our_peer:
            return
        known = self._addresses.get(addr)
        if known is not None:
            known.bootstrap |= bootstrap
            known.provider |= how.get("provider", False)
            return
        if len(self._addresses) >= self.config.max_known_addrs and not bootstrap:
            return
        rank = self.rng.random()
        self._addresses[addr] = KnownAddress(addr, peer, bootstrap, **how, rank=rank)

    def connected(self, peer: str, now: float, addrs: Sequence[str] = ()) -> list[Effect]:
        """A connection to ``peer`` opened (either side dialled); it listens on ``addrs``."""
        self.connected_peers.add(peer)
        self._syncless.discard(peer)  # a new connection: perhaps another program now
        self._relink(peer)
        for a in self._addresses.values():
            if a.peer == peer:
                a.failures = 0
                a.next_try = now
        effects = self._reachable(peer, None)
        if addrs:
            effects.append(RememberPeer(peer, tuple(addrs)))
            # A peer that dialled us is redialled by us too if the connection is lost.
            for addr in addrs:
                self.address_learned(addr, peer=peer)
        if self.our_peer < peer:
            effects += self._start_sync(peer, now, "connected")
        return effects  # asks for its peers, if any, come with the next tick

    def disconnected(self, peer: str, now: float) -> list[Effect]:
        self.connected_peers.discard(peer)
        self._syncless.discard(peer)
        self._relink(peer)
        self.exchange.disconnected(peer)
        return []

    def peers_offered(self, peer: str, addrs: Sequence[str], now: float) -> tuple[int, int]:
        """An ask of ``peer`` ended with ``addrs`` (checked; empty when it failed): learn
        them, to dial from the next tick. Returns how many were new, how many over the cap."""
        kept, over = self.exchange.answered(peer, addrs, self.connected_peers)
        before = len(self._addresses)
        for addr in kept:
            self.address_learned(addr, learned=True)
        return len(self._addresses) - before, over

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
        c = self.config
        a = self._addresses.get(addr)
        if a is not None and a.provider and not (a.bootstrap or a.learned):
            # Known only from a DHT answer, which anyone can fill with lies: one dial each;
            # the next lookup names it again if it was true.
            del self._addresses[addr]
        elif a is not None:
            a.pending = False
            a.failures += 1
            backoff = min(c.dial_backoff_max, c.dial_backoff_min * 2 ** (a.failures - 1))
            # Jitter spreads the retries of many nodes that lost the same seed.
            a.next_try = now + backoff * (0.75 + 0.5 * self.rng.random())
        peer = peer_of(addr)
        effects: list[Effect] = [NoteDialFailure(peer)] if peer is not None else []
        who = a.peer if a is not None and a.peer is not None else addr
        if who in self._unreachable or who in self.connected_peers:
            return effects  # already reported, or still reachable by another connection
        # Bounded: each entry is a known address or its peer (max_known_addrs, plus bootstrap).
        self._unreachable.add(who)
        return [*effects, Reachability(peer=who, addr=addr, reachable=False, reason=reason)]

    # ---------------------------------------------------------------------------- sync

    def sync_finished(
        self, peer: str, ok: bool, now: float, *, unsupported: bool = False
    ) -> list[Effect]:
        """A session ended; ``unsupported``: the peer said it does not serve the protocol."""
        self._syncing.discard(peer)
        if unsupported and peer in self.connected_peers:
            # At most one entry per connected peer, dropped when it disconnects.
            self._syncless.add(peer)
        elif not ok:
            self._sync_blocked_until[peer] = now + self.config.sync_retry
        return []

    def sync_requested(self, peer: str, now: float) -> list[Effect]:
        """A person asked for a sync (``commons sync``): ignore the retry delay."""
        self._sync_blocked_until.pop(peer, None)
        return self._start_sync(peer, now, "requested")

    def sync_misbehaved(self, peer: str, code: str, now: float) -> list[Effect]:
        """A sync peer sent garbage or invalid records (``code``): ban it for a while. Two
        sessions with one peer can fail together; it is banned once."""
        return self._ban(peer, self.config.sync_ban, code, now)

    def syncing(self, peer: str) -> bool:
        return peer in self._syncing

    def speaks_sync(self, peer: str) -> bool:
        """False while the peer's connection is one that refused the sync protocol."""
        return peer not in self._syncless

    # ---------------------------------------------------------------------------- gossip

    def gossip_arrived(self, topic: str, key: bytes, from_peer: str, now: float) -> str | None:
        """A message (``key``: its hash) forwarded by ``from_peer``, not parsed yet: None to
        go on and validate it, else why it is refused (``RATE_LIMITED``, ``REFUSED_AGAIN``)."""
        if from_peer != self.our_peer and not self._take_token(from_peer, now):
            return RATE_LIMITED
        if (topic, key) in self._refused:
            return REFUSED_AGAIN
        return None

    def gossip_validated(
        self, topic: str, key: bytes, verdict: Record | InvalidRecord
    ) -> str | None:
        """The caller validated the message: None to accept it, else why it is refused (the
        record's error code without its field path, or ``NOT_FOLLOWED``)."""
        if isinstance(verdict, InvalidRecord):
            if verdict.code != "future-timestamp":  # the only refusal time may lift
                self._remember_refusal(topic, key)
            return verdict.code.split(":")[0]
        if self.refusal(verdict) is not None:
            self._remember_refusal(topic, key)
            return NOT_FOLLOWED
        if self.policy.refusal(verdict) is not None:
            self._remember_refusal(topic, key)
            return BLOCKED
        return None

    def policy_changed(self, policy: Policy) -> list[Effect]:
        """The operator blocked or unblocked something: judge by ``policy`` from now on, and
        forget the refusals remembered under the old one (an unblocked record may return)."""
        self.policy = policy
        self._refused.clear()
        return []

    def blames(self, refusal: str) -> bool:
        """Whether a message refused for ``refusal`` counts against the peer that forwarded
        it (the transport reports it as rejected), or is only dropped."""
        # Over a rate limit an honest relay may be, during a burst; a copy of a message
        # already refused is one GossipSub's own IWANT can fetch again.
        # A record blocked here is valid, and the forwarder's policy is its own.
        return refusal not in (RATE_LIMITED, REFUSED_AGAIN, BLOCKED)

    def gossip_rejected(self, peer: str, now: float) -> list[Effect]:
        """A message forwarded by ``peer`` was rejected (by us or the transport)."""
        c = self.config
        recent = self._rejects.get(peer)
        if recent is None:
            if len(self._rejects) >= c.max_reject_peers:
                del self._rejects[next(iter(self._rejects))]
            recent = self._rejects[peer] = deque(maxlen=c.max_rejects_per_peer)
        recent.append(now)
        if len(recent) == recent.maxlen and now - recent[0] <= c.reject_window:
            return self._ban(peer, c.reject_ban, REJECTS, now)
        return []

    def banned(self, peer: str, now: float) -> bool:
        return self._banned_until.get(peer, -1.0) > now

    def unbanned(self, peer: str) -> list[Effect]:
        """The operator lifted ``peer``'s ban: it may be banned again if it misbehaves."""
        self._banned_until.pop(peer, None)
        self._rejects.pop(peer, None)
        return []

    # ---------------------------------------------------------------------------- records

    def follows(self, project_id: bytes) -> bool:
        return not self.config.follow or project_id in self.config.follow

    def refusal(self, record: Record) -> str | None:
        """Why this node does not hold ``record`` (the follow rule), or None. Reads only the
        configuration, so worker threads may call it."""
        if not self.config.follow:  # every project: asked of each record a sync brings
            return None
        scope = scope_of(record)
        if scope != META_SCOPE and not self.follows(bytes.fromhex(scope)):
            return "not-followed: this node does not hold that project"
        return None

    def hello(self, stored_scopes: Iterable[str]) -> Hello:
        """What a sync session offers: the scopes held (following every project) or the
        followed ones, and always the meta scope."""
        follow = self.config.follow
        scopes = set(stored_scopes) if not follow else {p.hex() for p in follow}
        scopes.add(META_SCOPE)
        return Hello(follow_all=not follow, scopes=tuple(sorted(scopes)[:MAX_SCOPES]))

    def records_stored(self, records: Iterable[Record], source: str) -> list[Effect]:
        """Records were committed: subscribe to new followed projects; publish what was
        authored here or submitted to the API (gossip and sync brought the rest, and an
        import spreads by reconciliation)."""
        effects: list[Effect] = []
        for record in records:
            if record.kind == "project" and self.follows(record.id):
                effects += self._want_topic(project_topic(record.id))
                self.providers.follow(record.id)
            if source in ("local", "api"):
                effects.append(Publish(record))
        return effects

    def projects_listed(self, project_ids: Iterable[bytes]) -> list[Effect]:
        """The store holds these projects (some may have come in by ``commons import``)."""
        effects: list[Effect] = []
        for pid in project_ids:
            if self.follows(pid):
                effects += self._want_topic(project_topic(pid))
                self.providers.follow(pid)
        return effects

    def subscribed(self, topic: str) -> bool:
        """Whether ``topic`` is subscribed to (or about to be)."""
        return topic in self._topics

    def views_refreshed(self, now: float) -> list[Effect]:
        self._views_due = now + self.config.views_interval
        return []

    # ---------------------------------------------------------------------------- liveness

    def check_finished(
        self, peer: str, link: int, alive: bool, *, ping_refused: bool = False
    ) -> list[Effect]:
        """A check of connection ``link`` ended; ``ping_refused``: the peer does not serve
        ping (it said so, or identify left it out), so it was probed instead."""
        key = (peer, link)
        self._checking.discard(key)
        current = self._links.get(peer, 0) == link
        if ping_refused and current:
            self._no_ping.add(key)
        if alive:
            self._misses.pop(key, None)
            return []
        return self._missed(key)

    def link(self, peer: str) -> int:
        """The number of ``peer``'s current connection (checks of older ones are ignored)."""
        return self._links.get(peer, 0)

    # ---------------------------------------------------------------------------- helpers

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
        chosen = choose_dials(self._addresses.values(), self.connected_peers, self.config, now)
        return [Dial(addr=a.addr, source=a.source()) for a in chosen]

    def _asks(self, now: float) -> list[Effect]:
        short = len(self.connected_peers) < self.config.target_peers
        return list(self.exchange.asks(now, self.connected_peers, short))

    def _take_token(self, peer: str, now: float) -> bool:
        rate = float(self.config.gossip_rate)
        burst = 2.0 * rate
        tokens, last = self._buckets.pop(peer, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        if len(self._buckets) > self.config.max_rate_peers:
            self._buckets.popitem(last=False)
        return allowed

    def _remember_refusal(self, topic: str, key: bytes) -> None:
        self._refused[(topic, key)] = None
        if len(self._refused) > self.config.max_refused:
            self._refused.popitem(last=False)

    def _ban(self, peer: str, seconds: float, reason: str, now: float) -> list[Effect]:
        if self.banned(peer, now):
            return []
        if len(self._banned_until) >= self.config.max_bans:
            for gone in [p for p, until in self._banned_until.items() if until <= now]:
                del self._banned_until[gone]
            if len(self._banned_until) >= self.config.max_bans:
                del self._banned_until[min(self._banned_until, key=self._banned_until.__getitem__)]
        self._banned_until[peer] = now + seconds
        self._rejects.pop(peer, None)
        return [Ban(peer=peer, seconds=seconds, reason=reason)]

    def _want_topic(self, topic: str) -> list[Effect]:
        if topic in self._topics or topic in self._over_cap:
            return []
        if len(self._topics) >= self.config.max_subscriptions:
            self._over_cap.add(topic)
            log.warning("not subscribing to %s: %d topics already", topic, len(self._topics))
            return []
        self._topics.add(topic)
        return [Subscribe(topic)]

    def _relink(self, peer: str) -> None:
        """A connection to ``peer`` came or went: checks of the previous one no longer count."""
        number = self._links.get(peer, 0)
        self._misses.pop((peer, number), None)
        self._no_ping.discard((peer, number))
        self._links[peer] = number + 1
        if len(self._links) > self.config.max_links:
            for gone in [p for p in self._links if p not in self.connected_peers]:
                del self._links[gone]

    def _liveness_round(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        timeout = self.config.liveness_timeout
        for peer in sorted(self.connected_peers)[: self.config.max_peers]:
            key = (peer, self._links.get(peer, 0))
            if key in self._checking:
                # Still running: on a stalled connection py-libp2p may block, shielded from
                # cancellation, in the clean-up of a stream it failed to open.
                effects += self._missed(key)
            else:
                self._checking.add(key)
                by: Literal["ping", "probe"] = "probe" if key in self._no_ping else "ping"
                effects.append(Check(peer=peer, link=key[1], by=by, timeout=timeout))
        return effects

    def _missed(self, key: tuple[str, int]) -> list[Effect]:
        peer, number = key
        if self._links.get(peer, 0) != number:
            return []  # a check of a connection that is gone
        self._misses[key] = misses = self._misses.get(key, 0) + 1
        if misses % self.config.liveness_misses == 0:
            log.info("dropping the connection to %s: %d liveness checks unanswered", peer, misses)
            return [Hangup(peer=peer, reason="unresponsive")]
        return []


def peer_of(addr: str) -> str | None:
    """The peer id at the end of a ``.../p2p/<id>`` multiaddr, or None."""
    _, sep, rest = addr.rpartition("/p2p/")
    return rest.split("/")[0] if sep else None
