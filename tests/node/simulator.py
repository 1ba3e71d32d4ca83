"""A seeded, deterministic simulator: many real :class:`~node.service.NodeService`s and real
sync sessions in virtual time, over a modelled network, with no I/O.

    scripts/simulate --seed 7 --nodes 1000         # one scenario, its properties checked
    scripts/simulate --nodes 40                    # a random seed, printed first

What is real: every node's decisions (``NodeService``, fed the same past-tense inputs as the
runtime feeds it, its effects carried out as the runtime would), the records (signed, from
``protocol.testing``) and reconciliation (two ``protocol.sync_session`` sessions driven
against each other frame by frame, over ``protocol.negentropy`` item lists).

What is modelled: the network. A connection is a pair of node indices; a message or frame
takes ``latency`` plus up to ``jitter`` seconds, and a gossip delivery is lost with
probability ``loss``. GossipSub is modelled as flooding to the connected peers subscribed to
the topic, each node forwarding a message the first time it accepts it (its seen cache;
a refused message is not marked seen, as in GossipSub). A partition, and a stalled node,
leave connections open but carrying nothing, as a cut cable does: only liveness notices.
A restart closes the node's connections at once (the peers see them reset), keeps its store
and address book, and starts a fresh service. A sync session runs in one go when it starts;
its records land (and the service hears it ended) a round trip per frame exchange later, if
the connection still carries traffic then. Signatures are not verified again (the pool's
records are valid); anything else a peer sends is parsed by ``protocol.validation``.

Everything random comes from one ``random.Random(seed)``, and nothing iterates a set of
strings, so a seed replays exactly: a failing property names the command that repeats it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # run as a script: the repository root holds node/, protocol/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.service import (
    AskPeers,
    Ban,
    Check,
    Dial,
    Effect,
    Hangup,
    ListProjects,
    NodeService,
    NoteDialFailure,
    Publish,
    PublishUnpublished,
    Reachability,
    RefreshViews,
    RememberPeer,
    ServiceConfig,
    StartSync,
    Subscribe,
    WakeAt,
)
from node.sync.items import MessageMemo
from protocol import negentropy
from protocol.errors import InvalidRecord, ProtocolError
from protocol.record import Record
from protocol.sync import Frame
from protocol.sync_session import (
    NEED_FRAME,
    ClientSession,
    Done,
    ItemsReleased,
    NeedItems,
    NeedRecords,
    Reconciled,
    RecordsReceived,
    ServerSession,
    is_misbehaviour,
)
from protocol.testing import RecordFactory
from protocol.validation import parse_record, scope_of, topic_of

Kind = Literal["full", "gossip-only", "spammer", "forger", "liar"]

#: Seconds a stream open waits on a stalled connection (the transport's negotiation timeout).
STALLED_STREAM = 5.0
#: A sync peer sending this, or a flooder gossiping it, sends bytes that are no record.
GARBAGE = b"\xc1 not a record"


@dataclass(frozen=True)
class Net:
    latency: float = 0.02
    jitter: float = 0.02
    loss: float = 0.0
    dial_timeout: float = 5.0


@dataclass(frozen=True)
class Gossip:
    topic: str
    key: bytes
    origin: int
    verdict: Record | InvalidRecord


@dataclass(eq=False)
class SimNode:
    index: int
    kind: Kind
    config: ServiceConfig
    peer_id: str = ""
    addr: str = ""
    service: NodeService | None = None  # None while down
    life: int = 0  # incarnation: events of a previous life are dropped
    stalled: bool = False
    records: dict[bytes, Record] = field(default_factory=dict)  # the store, kept over restarts
    unpublished: dict[bytes, Record] = field(default_factory=dict)
    book: dict[str, tuple[str, ...]] = field(default_factory=dict)  # the address book
    bootstrap: list[str] = field(default_factory=list)
    conns: dict[int, None] = field(default_factory=dict)  # connected nodes, in order
    topics: set[str] = field(default_factory=set)
    seen: set[bytes] = field(default_factory=set)
    wake: float = float("inf")
    _scopes: dict[str, int] = field(default_factory=dict)  # records a scope: its version too
    _storage: dict[str, negentropy.Storage] = field(default_factory=dict)
    _memo: MessageMemo = field(default_factory=MessageMemo)

    def __post_init__(self) -> None:
        # Base58 peer ids and private IPv4 addresses, as peer exchange checks them.
        self.peer_id = _PEER_PREFIX + f"{self.index:011d}".translate(_TO_BASE58)
        i = self.index
        self.addr = f"/ip4/10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/tcp/4710/p2p/{self.peer_id}"

    @property
    def up(self) -> bool:
        return self.service is not None

    def add(self, record: Record) -> bool:
        """Store ``record``; False if it was held already."""
        if record.id in self.records:
            return False
        self.records[record.id] = record
        scope = _scope(record)
        self._scopes[scope] = self._scopes.get(scope, 0) + 1
        self._storage.pop(scope, None)
        return True

    def storage(self, scope: str) -> negentropy.Storage:
        """The scope's negentropy item list, built once per version (as ``ItemCache`` does)."""
        held = self._storage.get(scope)
        if held is None:
            items = [(r.ts, i) for i, r in self.records.items() if _scope(r) == scope]
            held = self._storage[scope] = negentropy.Storage(items)
        return held

    def scopes(self) -> dict[str, int]:
        return dict(self._scopes)

    # A sync session's memo (``protocol.sync_session.Memo``): messages at the scope's version.
    def get(self, scope: str, key: bytes) -> bytes | None:
        return self._memo.get(scope, (self._scopes.get(scope, 0), 0), key)

    def put(self, scope: str, key: bytes, message: bytes) -> None:
        self._memo.put(scope, (self._scopes.get(scope, 0), 0), key, message)


@dataclass
class Stats:
    forwards: Counter[tuple[int, bytes]] = field(default_factory=Counter)
    duplicates: int = 0
    rejects: Counter[tuple[int, int, str]] = field(default_factory=Counter)  # (by, of, why)
    bans: list[tuple[int, int, str]] = field(default_factory=list)  # (by, whom, reason)
    hangups: list[tuple[int, int]] = field(default_factory=list)
    #: Reachability changes the nodes reported (each logs one line): (by, its life, peer,
    #: reachable); a restarted node starts a new life and knows nothing of the last one.
    reachability: list[tuple[int, int, str, bool]] = field(default_factory=list)
    syncs: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    events: int = 0
    learned: int = 0  # addresses learned by peer exchange


_SCOPES: dict[bytes, str] = {}


def _scope(record: Record) -> str:
    scope = _SCOPES.get(record.id)
    if scope is None:
        scope = _SCOPES[record.id] = scope_of(record)
    return scope


_PEER_PREFIX = "12D3KooWsimPeerNumber"
_TO_BASE58 = str.maketrans("0123456789", "abcdefghij")
_FROM_BASE58 = str.maketrans("abcdefghij", "0123456789")


def addr_index(addr: str) -> int:
    a, b, c = (int(x) for x in addr.split("/")[2].split(".")[1:])
    return a << 16 | b << 8 | c


@cache
def spam_pool(count: int) -> tuple[Record, ...]:
    """Valid records a spammer floods with (profiles, each a new message)."""
    f = RecordFactory()
    return _registered(tuple(f.profile("spammer", name=f"Spam {n}") for n in range(count)))


@cache
def record_pool(projects: int, contributions: int) -> tuple[Record, ...]:
    """Signed records, the same for every run: each project, then its contributions."""
    f = RecordFactory()
    out: list[Record] = []
    for p in range(projects):
        project = f.project(f"founder{p}", name=f"Project {p}")
        out.append(project)
        out += f.many_contributions(f"crew{p}", project, contributions)
    return _registered(tuple(out))


def _registered(pool: tuple[Record, ...]) -> tuple[Record, ...]:
    """``pool``, its records known by id from now on: the sync model reads a pool record's
    bytes back as the record itself (:func:`_known`) instead of parsing them again."""
    _POOL_BY_ID.update((r.id, r) for r in pool)
    return pool


class Simulation:
    """N nodes, one event queue, one rng. ``run_until(t)`` advances virtual time."""

    def __init__(
        self,
        seed: int,
        kinds: Sequence[Kind],
        *,
        net: Net | None = None,
        config: ServiceConfig | None = None,
        follow: dict[int, frozenset[bytes]] | None = None,
        degree: int = 3,
        flood_rate: float = 50.0,
        spam: int = 0,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.net = net or Net()
        self.flood_rate = flood_rate
        self.spam = spam
        self.forged: set[bytes] = set()
        config = config or ServiceConfig()
        self.now = 0.0
        self.stats = Stats()
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._trace = hashlib.sha256()
        self.side: dict[int, int] = {}  # partition: node -> side (absent: side 0)
        self.bans: dict[tuple[int, int], float] = {}  # (by, whom) -> until
        self.synced_with: set[tuple[int, int]] = set()  # (client, server) sessions started
        follow = follow or {}
        self.nodes = [
            SimNode(i, kind, replace(config, follow=follow.get(i, frozenset())))
            for i, kind in enumerate(kinds)
        ]
        for node in self.nodes[1:]:  # each joins through a few who came before it
            earlier = self.rng.sample(range(node.index), min(degree, node.index))
            node.bootstrap = [self.nodes[j].addr for j in earlier]
        for node in self.nodes:
            self.at(self.rng.random(), self.start, node.index)

    # ------------------------------------------------------------------------ the event loop

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, fn, args))

    def run_until(self, until: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= until:
            when, _, fn, args = heapq.heappop(queue)
            self.now = when
            self.stats.events += 1
            fn(*args)
        self.now = until

    def delay(self) -> float:
        return self.net.latency + self.net.jitter * self.rng.random()

    def fingerprint(self) -> str:
        """A digest of every effect carried out, and of each node's final records."""
        digest = self._trace.copy()
        for node in self.nodes:
            digest.update(b"".join(sorted(node.records)))
        return digest.hexdigest()

    def _note(self, i: int, effect: Effect) -> None:
        """Add what changes the network's course to the trace (not ticks and checks)."""
        if isinstance(effect, Publish):
            what = effect.record.id.hex()
        elif isinstance(effect, Dial | StartSync | Hangup | Ban | Subscribe):
            what = repr(effect)
        else:
            return
        self._trace.update(f"{self.now:.6f} {i} {what}\n".encode())

    # ------------------------------------------------------------------------ lives

    def start(self, i: int) -> None:
        node = self.nodes[i]
        if node.up:
            return
        node.life += 1
        node.seen, node.topics, node.wake = set(), set(), float("inf")
        node.service = NodeService(
            our_peer=node.peer_id, rng=random.Random(self.rng.random()), config=node.config
        )
        self.execute(i, node.service.started(self.now))
        for addr in node.bootstrap:
            node.service.address_learned(addr, bootstrap=True)
        for peer, addrs in node.book.items():
            for addr in addrs:
                node.service.address_learned(addr, peer=peer)
        self.tick(i, node.life)
        if node.kind in ("spammer", "forger"):
            self.at(self.now + 1.0, self.flood, i, node.life, 0)

    def stop(self, i: int) -> None:
        """The process ends: its connections reset at once."""
        node = self.nodes[i]
        for j in list(node.conns):
            self.disconnect(i, j)
        node.service = None

    def restart(self, i: int, downtime: float) -> None:
        self.stop(i)
        self.at(self.now + downtime, self.start, i)

    def tick(self, i: int, life: int) -> None:
        node = self.nodes[i]
        if node.service is None or node.life != life:
            return
        node.wake = float("inf")
        self.execute(i, node.service.tick(self.now))

    # ------------------------------------------------------------------------ the network

    def carries(self, i: int, j: int) -> bool:
        """Whether traffic between ``i`` and ``j`` gets through (both up, not stalled, on
        the same side of a partition)."""
        a, b = self.nodes[i], self.nodes[j]
        return (
            a.up
            and b.up
            and not a.stalled
            and not b.stalled
            and self.side.get(i, 0) == self.side.get(j, 0)
        )

    def linked(self, i: int, j: int) -> bool:
        return j in self.nodes[i].conns and self.carries(i, j)

    def partition(self, sides: dict[int, int]) -> None:
        self.side = dict(sides)

    def heal(self) -> None:
        self.side = {}

    def banned(self, i: int, j: int) -> bool:
        return self.bans.get((i, j), -1.0) > self.now or self.bans.get((j, i), -1.0) > self.now

    def connect(self, i: int, j: int) -> None:
        a, b = self.nodes[i], self.nodes[j]
        a.conns[j] = None
        b.conns[i] = None
        assert a.service is not None
        assert b.service is not None
        self.execute(i, a.service.connected(b.peer_id, self.now, (b.addr,)))
        self.execute(j, b.service.connected(a.peer_id, self.now, (a.addr,)))

    def disconnect(self, i: int, j: int) -> None:
        for x, y in ((i, j), (j, i)):
            node = self.nodes[x]
            if node.conns.pop(y, ()) is None and node.service is not None:
                self.execute(x, node.service.disconnected(self.nodes[y].peer_id, self.now))

    def dial(self, i: int, life: int, addr: str) -> None:
        node, j = self.nodes[i], addr_index(addr)
        if node.service is None or node.life != life:
            return
        other = self.nodes[j]
        if j in node.conns:
            self.execute(i, node.service.dial_succeeded(addr, other.peer_id, self.now))
        elif (
            self.carries(i, j)
            and not self.banned(i, j)
            and len(other.conns) < other.config.max_peers
        ):
            self.connect(i, j)
            self.execute(i, node.service.dial_succeeded(addr, other.peer_id, self.now))
        else:
            self.execute(i, node.service.dial_failed(addr, self.now))

    # ------------------------------------------------------------------------ gossip

    def publish(self, i: int, message: Gossip) -> None:
        node = self.nodes[i]
        node.seen.add(message.key)
        self.forward(i, message, came_from=None)

    def forward(self, i: int, message: Gossip, came_from: int | None) -> None:
        self.stats.forwards[(i, message.key)] += 1
        for j in self.nodes[i].conns:
            if j != came_from and message.topic in self.nodes[j].topics:
                if self.net.loss and self.rng.random() < self.net.loss:
                    continue
                self.at(self.now + self.delay(), self.deliver, i, j, message)

    def deliver(self, i: int, j: int, message: Gossip) -> None:
        node = self.nodes[j]
        if not self.linked(j, i) or node.service is None:
            return
        self.stats.deliveries += 1
        if message.key in node.seen:
            self.stats.duplicates += 1
            return
        sender = self.nodes[i].peer_id
        service = node.service
        refused = service.gossip_arrived(message.topic, message.key, sender, self.now)
        if refused is None:
            refused = service.gossip_validated(message.topic, message.key, message.verdict)
        if refused is not None:
            self.stats.rejects[(j, i, refused)] += 1
            if service.blames(refused):  # the transport reports the reject
                self.execute(j, service.gossip_rejected(sender, self.now))
            return
        node.seen.add(message.key)
        self.forward(j, message, came_from=i)
        record = message.verdict
        assert isinstance(record, Record)
        if node.add(record):
            self.execute(j, service.records_stored([record], "gossip"))

    def author(self, i: int, record: Record) -> None:
        """A person authors ``record`` at node ``i`` (through its API, or offline if down)."""
        node = self.nodes[i]
        node.add(record)
        if node.service is None:
            node.unpublished[record.id] = record
        else:
            self.execute(i, node.service.records_stored([record], "local"))

    def flood(self, i: int, life: int, sent: int) -> None:
        """A spammer gossips valid records of its own at ``flood_rate`` a second, a forger
        forged ones at a fifth of it, to every peer, until none is left to take them."""
        node = self.nodes[i]
        if node.service is None or node.life != life:
            return
        if node.kind == "spammer":
            spam = spam_pool(self.spam)
            if sent >= len(spam):
                return
            record = spam[sent]
            message = Gossip(topic_of(record), record.id, i, record)
            rate = self.flood_rate
        else:
            key = self.rng.randbytes(32)
            self.forged.add(key)
            forged = InvalidRecord("bad-signature", "the signature does not verify")
            message = Gossip("/commons/meta/1", key, i, forged)
            rate = self.flood_rate / 5
        node.seen.add(message.key)
        for j in node.conns:
            self.at(self.now + self.delay(), self.deliver, i, j, message)
        self.at(self.now + 1.0 / rate, self.flood, i, life, sent + 1)

    # ------------------------------------------------------------------------ effects

    def execute(self, i: int, effects: Iterable[Effect]) -> None:
        node = self.nodes[i]
        for effect in effects:
            self._note(i, effect)
            if isinstance(effect, WakeAt):
                if effect.when < node.wake:
                    node.wake = effect.when
                    self.at(effect.when, self.tick, i, node.life)
            elif isinstance(effect, Dial):
                j = addr_index(effect.addr)
                wait = 2 * self.delay() if self.carries(i, j) else self.net.dial_timeout
                self.at(self.now + wait, self.dial, i, node.life, effect.addr)
            elif isinstance(effect, StartSync):
                self.start_sync(i, effect.peer)
            elif isinstance(effect, AskPeers):
                j = self.index_of(effect.peer)
                self.at(self.now + 2 * self.delay(), self.answer_ask, i, node.life, j, effect.want)
            elif isinstance(effect, Check):
                self.check(i, effect)
            elif isinstance(effect, Publish):
                self.publish(i, Gossip(topic_of(effect.record), effect.record.id, i, effect.record))
            elif isinstance(effect, Subscribe):
                node.topics.add(effect.topic)
            elif isinstance(effect, Hangup | Ban):
                j = self.index_of(effect.peer)
                if isinstance(effect, Ban):
                    self.bans[(i, j)] = self.now + effect.seconds
                    self.stats.bans.append((i, j, effect.reason))
                else:
                    self.stats.hangups.append((i, j))
                self.disconnect(i, j)
            elif isinstance(effect, PublishUnpublished):
                for record in node.unpublished.values():
                    self.publish(i, Gossip(topic_of(record), record.id, i, record))
                node.unpublished.clear()
            elif isinstance(effect, ListProjects):
                assert node.service is not None
                ids = [r.id for r in node.records.values() if r.kind == "project"]
                self.execute(i, node.service.projects_listed(ids))
            elif isinstance(effect, RefreshViews):
                self.at(self.now + 0.01, self.views_done, i, node.life)
            elif isinstance(effect, RememberPeer):
                node.book[effect.peer] = effect.addrs
            elif isinstance(effect, Reachability):
                self.stats.reachability.append((i, node.life, effect.peer, effect.reachable))
            elif not isinstance(effect, NoteDialFailure):
                raise AssertionError(f"an effect the simulator does not know: {effect!r}")

    def answer_ask(self, i: int, life: int, j: int, want: int) -> None:
        """Peer exchange: ``j`` answers ``i``'s ask (nothing if the link carries nothing)."""
        node, other = self.nodes[i], self.nodes[j]
        if node.service is None or node.life != life:
            return
        addrs: list[str] = []
        if other.service is not None and self.carries(i, j) and j in node.conns:
            listing = [(self.nodes[k].peer_id, (self.nodes[k].addr,)) for k in other.conns]
            addrs = other.service.exchange.offer(node.peer_id, True, want, listing)
        self.stats.learned += node.service.peers_offered(other.peer_id, addrs, self.now)[0]

    def index_of(self, peer: str) -> int:
        return int(peer.removeprefix(_PEER_PREFIX).translate(_FROM_BASE58))

    def views_done(self, i: int, life: int) -> None:
        node = self.nodes[i]
        if node.service is not None and node.life == life:
            self.execute(i, node.service.views_refreshed(self.now))

    def check(self, i: int, check: Check) -> None:
        j = self.index_of(check.peer)
        if self.linked(i, j):
            refused = check.by == "ping" and self.nodes[j].kind == "gossip-only"
            self.at(
                self.now + 2 * self.delay(),
                self.checked,
                i,
                self.nodes[i].life,
                check,
                True,
                refused,
            )
        else:
            self.at(
                self.now + check.timeout, self.checked, i, self.nodes[i].life, check, False, False
            )

    def checked(self, i: int, life: int, check: Check, alive: bool, refused: bool) -> None:
        node = self.nodes[i]
        if node.service is not None and node.life == life:
            effects = node.service.check_finished(
                check.peer, check.link, alive, ping_refused=refused
            )
            self.execute(i, effects)

    # ------------------------------------------------------------------------ sync

    def start_sync(self, i: int, peer: str) -> None:
        j, life = self.index_of(peer), self.nodes[i].life
        if not self.linked(i, j):
            self.at(self.now + STALLED_STREAM, self.sync_ended, i, life, j, None)
        elif self.nodes[j].kind == "gossip-only":
            self.at(self.now + 2 * self.delay(), self.sync_ended, i, life, j, "unsupported")
        else:
            self.synced_with.add((i, j))
            outcome = reconcile(self.nodes[i], self.nodes[j], self.rng)
            wait = outcome.exchanges * 2 * self.delay()
            self.at(self.now + wait, self.sync_landed, i, life, j, self.nodes[j].life, outcome)

    def sync_landed(self, i: int, life: int, j: int, other_life: int, outcome: Outcome) -> None:
        client, server = self.nodes[i], self.nodes[j]
        if not (self.linked(i, j) and client.life == life and server.life == other_life):
            self.sync_ended(i, life, j, "broken")
            return
        for node, got in ((client, outcome.to_client), (server, outcome.to_server)):
            new = [r for r in got if node.add(r)]
            if new and node.service is not None:
                self.execute(node.index, node.service.records_stored(new, "sync"))
        if outcome.error is not None and is_misbehaviour(outcome.error):
            assert client.service is not None
            code = outcome.error.code.split(":")[0]
            self.execute(i, client.service.sync_misbehaved(server.peer_id, code, self.now))
        self.sync_ended(i, life, j, None if outcome.error is None else outcome.error.code)

    def sync_ended(self, i: int, life: int, j: int, failure: str | None) -> None:
        node = self.nodes[i]
        if node.service is None or node.life != life:
            return
        self.stats.syncs[failure or "ok"] += 1
        peer, unsupported = self.nodes[j].peer_id, failure == "unsupported"
        effects = node.service.sync_finished(
            peer, failure is None, self.now, unsupported=unsupported
        )
        self.execute(i, effects)


@dataclass
class Outcome:
    exchanges: int = 0  # frame round trips
    to_client: list[Record] = field(default_factory=list)
    to_server: list[Record] = field(default_factory=list)
    error: ProtocolError | None = None


def reconcile(client: SimNode, server: SimNode, rng: random.Random) -> Outcome:
    """Run a real client session against a real server session, frames passed in memory."""
    assert client.service is not None
    assert server.service is not None
    outcome = Outcome()
    c = ClientSession(client.service.hello(client.scopes()), memo=client)
    s = ServerSession(server.service.hello(server.scopes()), memo=server)
    to_server: list[Frame] = []
    to_client: list[Frame] = []
    try:
        while True:
            c_done = _drive(c, client, to_client, outcome.to_client, rng)
            to_server += c.frames_to_send()
            s_done = _drive(s, server, to_server, outcome.to_server, rng)
            to_client += s.frames_to_send()
            outcome.exchanges += 1
            if c_done and s_done:
                return outcome
            if (c_done and not to_server) or not (to_server or to_client):
                raise AssertionError("the sessions are stuck")
    except ProtocolError as exc:
        outcome.error = exc
        return outcome


def _drive(
    session: ClientSession | ServerSession,
    node: SimNode,
    inbox: list[Frame],
    received: list[Record],
    rng: random.Random,
) -> bool:
    """Answer ``session`` until it needs a frame not yet sent; True when it is done."""
    while True:
        event = session.next_event()
        if event is NEED_FRAME:
            if not inbox:
                return False
            session.receive_frame(inbox.pop(0))
        elif isinstance(event, NeedItems):
            storage = node.storage(event.scope)
            if node.kind == "liar" and isinstance(session, ServerSession):
                # It claims a record it does not have.
                storage = negentropy.Storage([*storage, (1, rng.randbytes(32))])
            session.give_items(event.scope, storage)
        elif isinstance(event, NeedRecords):
            held = [node.records[i].raw if i in node.records else GARBAGE for i in event.ids]
            session.give_records(held)
        elif isinstance(event, RecordsReceived):
            new, refused = _ingest(node, event.records, received)
            session.records_ingested(new=new, refused=refused)
        elif isinstance(event, Done):
            return True
        else:
            assert isinstance(event, Reconciled | ItemsReleased)


def _ingest(node: SimNode, raws: Sequence[bytes], received: list[Record]) -> tuple[int, list[str]]:
    assert node.service is not None
    new, refused = 0, []
    for raw in raws:
        try:
            record = _known(raw) or parse_record(raw, now_ms=None)
        except InvalidRecord as exc:
            refused.append(f"{exc.code}: {exc.message}")
            continue
        reason = node.service.refusal(record)
        if reason is not None:
            refused.append(reason)
        elif record.id not in node.records and all(r.id != record.id for r in received):
            received.append(record)
            new += 1
    return new, refused


_POOL_BY_ID: dict[bytes, Record] = {}


def _known(raw: bytes) -> Record | None:
    record = _POOL_BY_ID.get(hashlib.sha256(raw).digest())
    return record if record is not None and record.raw == raw else None
