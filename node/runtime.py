"""The running node: one trio nursery that owns the network, gossip, syncer, API and jobs.

``open_node(home, options)`` is an async context manager that starts everything and yields a
:class:`Node`; leaving it stops everything in order (tasks, API, transport, store) and removes
``node.json``. ``run_node`` runs one until SIGINT/SIGTERM.

Start order: store -> transport (listening) -> validator, sync handler, subscriptions ->
worker tasks -> API -> publish what was authored offline -> dial bootstrap and remembered
peers -> ``node.json``. Nothing is acknowledged before it is committed: authoring through
the node stores the record (one transaction), then queues it for gossip.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from node import __version__
from node.authoring import Authored, prepare
from node.clock import now_ms as _now_ms
from node.home import Home
from node.liveness import Liveness
from node.memory import fix_mmap_threshold
from node.metrics import Metrics
from node.net.transport import (
    Message,
    PeerEvent,
    ProtocolUnsupported,
    Transport,
    TransportConfig,
    TransportError,
    dialable,
    open_transport,
)
from node.service import Dial, Effect, Reachability, Service, StartSync
from node.store.sqlite import Store, StoreError
from node.sync.ingest import Ingestor, IngestResult
from node.sync.syncer import Syncer, SyncResult
from node.sync.verifier import Verifier
from node.trio_util import open_unwrapping_nursery
from node.views.cache import ViewCache
from node.views.follow import Follow
from protocol import sync as sync_protocol
from protocol.errors import InvalidRecord, ProtocolError
from protocol.record import Record
from protocol.signing import SigningKey
from protocol.validation import (
    META_SCOPE,
    META_TOPIC,
    project_topic,
    scope_of,
    topic_of,
    validate_message,
)

__all__ = ["Node", "NodeOptions", "open_node", "run_node"]

log = logging.getLogger(__name__)

#: Whole-session bound on one sync; catch-up of 100,000 records fits well inside it.
SYNC_TIMEOUT = 600.0
#: Seconds a peer that broke the sync protocol is refused.
SYNC_BAN = 300.0
#: Gossip messages stored per transaction.
GOSSIP_BATCH = 256
#: Seconds: while gossip batches are stored this close together (40 a second or more), the
#: reader waits ``GOSSIP_LINGER`` before each for more to join it (at a relay of 400 records
#: a second: 1.07 -> 0.94 ms of CPU a record, system time halved, by fewer commits and
#: fsyncs). At the tens of records a second of ordinary gossip it never waits.
GOSSIP_BUSY_GAP = 0.025
GOSSIP_LINGER = 0.02
#: Validated-but-not-yet-stored gossip records kept for the reader (by id).
MAX_VALIDATED_CACHE = 4096
#: Gossip refused for good, remembered by (topic, message id): GossipSub does not mark a
#: refused message seen, so each IHAVE naming it makes us ask for it again (IWANT), and every
#: copy would be parsed, verified, logged and counted again. Keyed by topic too, because a
#: valid record sent first on a wrong topic must still be accepted on its own. A record
#: refused only for a timestamp too far ahead is not remembered (time may lift that).
MAX_REFUSED_CACHE = 4096
#: Records waiting to be published.
MAX_PUBLISH_QUEUE = 100_000
#: Records authored offline published at start, per batch.
UNPUBLISHED_BATCH = 500
#: Topics subscribed to at most (py-libp2p validators per topic are kept in memory).
MAX_SUBSCRIPTIONS = 250
#: Seconds between service ticks.
TICK = 0.5
#: Seconds between checks for projects that need a topic subscription.
SUBSCRIPTION_REFRESH = 10.0
#: Records of followed projects decoded and folded in the background after start.
WARM_RECORDS = 60_000
#: Seconds after start before that warming begins (peers and sync come first).
WARM_DELAY = 0.5
#: Seconds between the background checks for projects to fold and view snapshots to write.
VIEWS_TICK = 2.0
#: Seconds a stopping node spends at most starting snapshot writes (docs/INTERFACES.md allows the
#: whole stop 5 s; one 55,000-record project takes about 0.1 s).
SNAPSHOT_STOP_SECONDS = 2.0


@dataclass
class NodeOptions:
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4710"])
    bootstrap: list[str] = field(default_factory=list)
    api: str | None = "127.0.0.1:4711"
    mdns: bool = True
    follow: list[bytes] = field(default_factory=list)
    seed: bool = False
    max_peers: int = 32
    sync_interval: float = 30.0
    gossip_rate: int = 1000


class _RateLimiter:
    """A token bucket per peer: ``rate`` messages a second, bursts of ``2 * rate``."""

    MAX_PEERS = 1024

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.burst = 2.0 * rate
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, peer: str, now: float) -> bool:
        tokens, last = self._buckets.pop(peer, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, now)
        if len(self._buckets) > self.MAX_PEERS:
            self._buckets.popitem(last=False)
        return allowed


class Node:
    """A running node. Methods are called from the node's trio loop (API handlers, tasks)."""

    def __init__(
        self,
        *,
        home: Home,
        key: SigningKey,
        store: Store,
        transport: Transport,
        options: NodeOptions,
        nursery: trio.Nursery,
    ) -> None:
        self.home = home
        self.key = key
        self.store = store
        self.transport = transport
        self.options = options
        self.nursery = nursery
        self.metrics = Metrics()
        self.follow = Follow(options.follow)
        self.views = ViewCache(store, follow=self.follow)
        self.peer_id = transport.peer_id
        self.verifier = Verifier(self.metrics)
        self.ingestor = Ingestor(
            store, now_ms=_now_ms, metrics=self.metrics, accept=self._accept, verifier=self.verifier
        )
        self.syncer = Syncer(
            store, self.ingestor, self.metrics, self.hello, on_misbehaviour=self._misbehaved
        )
        self.service = Service(
            our_peer=self.peer_id,
            rng=random.Random(),
            target_peers=min(8, options.max_peers),
            sync_interval=options.sync_interval,
        )
        self.api_url: str | None = None
        self.started = time.time()
        #: Reconciliation sessions under way, and records the last finished one received
        #: (None before any finished): ``status`` reports catching up from them.
        self._syncing = 0
        self._last_sync_received: int | None = None
        self._rate = _RateLimiter(options.gossip_rate)
        self._validated: OrderedDict[bytes, Record] = OrderedDict()
        self._refused: OrderedDict[tuple[str, bytes], None] = OrderedDict()  # (topic, id)
        self._publishing: bytes | None = None  # the stored record _publisher is publishing
        self._publish_send, self._publish_recv = trio.open_memory_channel[Record](MAX_PUBLISH_QUEUE)
        self._subscribed: set[str] = set()
        self._subscribe_send, self._subscribe_recv = trio.open_memory_channel[str](1024)
        self.liveness = Liveness(transport, self.metrics, nursery, options.max_peers)
        self.ingestor.on_new(self._on_new_records)
        self._register_gauges()

    # ---------------------------------------------------------------------------- follow rules

    def follows(self, project_id: bytes) -> bool:
        return self.follow.follows(project_id)

    def _accept(self, record: Record) -> str | None:
        scope = scope_of(record)
        if scope != META_SCOPE and not self.follows(bytes.fromhex(scope)):
            return "not-followed: this node does not hold that project"
        return None

    def hello(self) -> sync_protocol.Hello:
        listed = self.follow.projects
        scopes = set(self.store.scopes()) if listed is None else {p.hex() for p in listed}
        scopes.add(META_SCOPE)
        ordered = sorted(scopes)[: sync_protocol.MAX_SCOPES]
        return sync_protocol.Hello(follow_all=listed is None, scopes=tuple(ordered))

    # ---------------------------------------------------------------------------- gossip

    def _validate(self, topic: str, data: bytes, from_peer: str) -> bool | None:
        """The GossipSub validator: runs inside libp2p for every message, must not raise.

        None refuses without blaming the forwarder (``Transport.set_validator``): a message
        over its rate limit, and a copy of one already refused (our own IWANT may fetch it
        again); only a refusal on the message's merits counts towards a ban."""
        if from_peer == self.peer_id and data == self._publishing:
            # Our own publish of a record from our store: validated when it was stored
            # (libp2p runs validators on local publishes too; this saved 60 us a record).
            return True
        if from_peer != self.peer_id and not self._rate.allow(from_peer, time.monotonic()):
            self.metrics.inc("commons_gossip_rejected_total", reason="rate-limited")
            return None
        key = (topic, _sha256(data))
        if key in self._refused:
            self.metrics.inc("commons_gossip_refused_again_total")
            return None
        try:
            record = validate_message(topic, data, now_ms=_now_ms())
        except InvalidRecord as exc:
            self.metrics.inc("commons_gossip_rejected_total", reason=exc.code.split(":")[0])
            log.info("refused gossip from %s on %s: %s", from_peer, topic, exc)
            if exc.code != "future-timestamp":  # the only refusal that time may lift
                self._remember_refusal(key)
            return False
        reason = self._accept(record)
        if reason is not None:
            self.metrics.inc("commons_gossip_rejected_total", reason="not-followed")
            self._remember_refusal(key)
            return False
        self._validated[record.id] = record
        if len(self._validated) > MAX_VALIDATED_CACHE:
            self._validated.popitem(last=False)
        return True

    def _remember_refusal(self, key: tuple[str, bytes]) -> None:
        """Refuse these bytes on this topic at once from now on (see ``MAX_REFUSED_CACHE``)."""
        self._refused[key] = None
        if len(self._refused) > MAX_REFUSED_CACHE:
            self._refused.popitem(last=False)

    async def _gossip_reader(self) -> None:
        """Store accepted gossip in batches: whatever arrived together, one transaction.

        While gossip arrives steadily (the batch before was stored less than
        ``GOSSIP_BUSY_GAP`` ago), wait ``GOSSIP_LINGER`` for more to join the batch: one
        commit and one fsync for several records. Forwarding is not delayed (libp2p forwards
        once our validator accepts); only the local commit waits.
        """
        last = -math.inf
        async for message in self.transport.messages:
            if trio.current_time() - last < GOSSIP_BUSY_GAP:
                await trio.sleep(GOSSIP_LINGER)
            batch = [message]
            while len(batch) < GOSSIP_BATCH:
                try:
                    batch.append(self.transport.messages.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._store_gossip(batch)
            last = trio.current_time()

    async def _store_gossip(self, batch: Sequence[Message]) -> None:
        good: list[tuple[int, Record]] = []
        for i, message in enumerate(batch):
            if message.origin == self.peer_id:
                continue  # our own publication, stored before it was published
            record = self._validated.pop(_sha256(message.data), None)
            if record is None:
                try:  # validated by us already, but evicted from the cache since
                    record = validate_message(message.topic, message.data, now_ms=_now_ms())
                except InvalidRecord:
                    continue
            good.append((i, record))
        if good:
            result = await self.ingestor.store_valid(good, source="gossip")
            self.metrics.inc("commons_gossip_accepted_total", len(result.new))

    def _on_new_records(self, records: list[Record], source: str) -> None:
        """After a commit: subscribe to new projects; queue locally authored records."""
        for record in records:
            if record.kind == "project" and self.follows(record.id):
                self._queue_subscribe(project_topic(record.id))
            if source in ("local", "api"):
                # On a full queue the record stays unpublished in the store; the next start
                # publishes it, and reconciliation spreads it meanwhile.
                with contextlib.suppress(trio.WouldBlock):
                    self._publish_send.send_nowait(record)

    def _queue_subscribe(self, topic: str) -> None:
        if topic in self._subscribed:
            return
        self._subscribed.add(topic)
        try:
            self._subscribe_send.send_nowait(topic)
        except trio.WouldBlock:
            self._subscribed.discard(topic)

    async def _subscriber(self) -> None:
        async for topic in self._subscribe_recv:
            if len(self._subscribed) > MAX_SUBSCRIPTIONS:
                log.warning("not subscribing to %s: %d topics already", topic, MAX_SUBSCRIPTIONS)
                continue
            try:
                await self.transport.subscribe(topic)
            except (TransportError, ValueError) as exc:
                log.warning("cannot subscribe to %s: %s", topic, exc)

    async def _publisher(self) -> None:
        async for record in self._publish_recv:
            batch = [record]
            while len(batch) < GOSSIP_BATCH:
                try:
                    batch.append(self._publish_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            published = []
            for r in batch:
                topic = topic_of(r)
                self._publishing = r.raw
                try:
                    await self.transport.publish(topic, r.raw)
                    published.append(r.id)
                    self.metrics.inc("commons_published_total")
                except TransportError as exc:
                    log.warning("could not publish record %s: %s", r.id.hex()[:16], exc)
                finally:
                    self._publishing = None
            if published:
                await trio.to_thread.run_sync(self.store.mark_published, published)

    async def _publish_offline_records(self) -> None:
        """Queue the records authored while no node ran (``published = 0`` in the store)."""
        seen: set[bytes] = set()
        while True:
            records = [r for r in self.store.unpublished(UNPUBLISHED_BATCH) if r.id not in seen]
            if not records:
                return
            for record in records:
                seen.add(record.id)
                await self._publish_send.send(record)
            if len(records) < UNPUBLISHED_BATCH:
                return

    def _misbehaved(self, peer: str, exc: ProtocolError) -> None:
        """A sync peer sent garbage or invalid records: drop it and refuse it for a while."""
        log.warning("dropping peer %s: it broke the sync protocol (%s)", peer, exc)
        self.metrics.inc("commons_peers_dropped_total", reason=exc.code.split(":")[0])
        # Two sessions with one peer (ours on connecting and `commons sync`, say) can fail
        # together; banning twice made py-libp2p tear the peer down twice, and the second
        # teardown's KeyError stopped Pubsub and with it the whole node.
        if peer not in self.transport.banned_peers():
            self.transport.ban(peer, SYNC_BAN)

    # ---------------------------------------------------------------------------- authoring

    async def author(self, action: str, fields: dict[str, Any]) -> Record:
        """Sign a record with the node's key, store it (committed), then queue it for gossip.

        Raises ``AuthoringError`` for bad fields, and ``NoEffect`` for a record that would
        have no effect unless ``fields`` says ``force`` (see :func:`node.authoring.prepare`).
        """
        return (await self.author_checked(action, fields)).record

    async def author_checked(self, action: str, fields: dict[str, Any]) -> Authored:
        """:meth:`author`, also saying why a forced record will not count."""
        # Judging the effect may fold the project: a worker thread, like the view calls.
        authored: Authored = await trio.to_thread.run_sync(
            partial(
                prepare,
                action,
                fields,
                views=self.views,
                key=self.key,
                follow=self.follow,
                now_ms=_now_ms(),
            )
        )
        await self.ingestor.store_valid([(0, authored.record)], source="local")
        return authored

    async def submit(self, raw: bytes) -> tuple[Record, bool]:
        """Store and gossip an externally signed record. Raises ``InvalidRecord``."""
        result: IngestResult = await self.ingestor.ingest([raw], source="api")
        if result.rejected:
            _, reason = result.rejected[0]
            code, _, message = reason.partition(": ")
            raise InvalidRecord(code, message or reason)
        if result.new:
            return result.new[0], True
        return result.duplicates[0], False

    async def submit_many(self, raws: list[bytes]) -> IngestResult:
        """Store and gossip a batch of externally signed records (one commit for all).

        Each record is judged on its own: the valid ones are stored, the others come back in
        ``rejected`` with their reasons."""
        return await self.ingestor.ingest(raws, source="api")

    # ---------------------------------------------------------------------------- peers, sync

    def _execute(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, StartSync):
                self.nursery.start_soon(self._background_sync, effect.peer, effect.reason)
            elif isinstance(effect, Dial):
                self.nursery.start_soon(self._dial, effect.addr)
            elif isinstance(effect, Reachability):
                _log_reachability(effect)

    async def _background_sync(self, peer: str, reason: str) -> None:
        ok = unsupported = False
        try:
            result = await self._sync_with(peer)
            ok = True
            if result.received or result.sent:
                log.info(
                    "sync with %s (%s): received %d, sent %d records in %d rounds",
                    peer,
                    reason,
                    result.received,
                    result.sent,
                    result.rounds,
                )
        except ProtocolUnsupported:
            # A gossip-only peer: the service does not ask it again on this connection.
            unsupported = True
            log.info("peer %s does not serve %s: gossip only", peer, sync_protocol.PROTOCOL_ID)
        except (ProtocolError, TransportError) as exc:
            log.info("sync with %s (%s) failed: %s", peer, reason, exc)
        finally:
            now = trio.current_time()
            self._execute(self.service.sync_finished(peer, ok, now, unsupported=unsupported))

    async def _sync_with(self, peer: str) -> SyncResult:
        self._syncing += 1
        try:
            with trio.fail_after(SYNC_TIMEOUT):
                stream = await self.transport.open_stream(peer, sync_protocol.PROTOCOL_ID)
                result = await self.syncer.run_client(stream)
        finally:
            self._syncing -= 1
        self._last_sync_received = result.received
        return result

    @property
    def catching_up(self) -> bool:
        """True while a reconciliation is under way and the node has not yet seen one end
        with nothing new: a node that just started, or whose last sync still brought records."""
        return self._syncing > 0 and self._last_sync_received != 0

    async def sync_now(self, maddr: str | None = None) -> dict[str, int]:
        """``commons sync``: reconcile now with one peer (dialled first) or all connected."""
        if maddr:
            peers = [await self.transport.connect(maddr)]
        else:  # every connected peer that has not said it serves no sync
            connected = self.transport.connected_peers()
            peers = [p.peer_id for p in connected if self.service.speaks_sync(p.peer_id)]
        totals = {"peers": 0, "received": 0, "sent": 0}
        errors: list[str] = []

        async def one(peer: str) -> None:
            try:
                result = await self._sync_with(peer)
            except (ProtocolError, TransportError, trio.TooSlowError) as exc:
                errors.append(f"{peer}: {exc}")
                return
            totals["peers"] += 1
            totals["received"] += result.received
            totals["sent"] += result.sent

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(one, peer)
        if errors and not totals["peers"]:
            raise TransportError("; ".join(errors[:3]))
        return totals

    async def _dial(self, addr: str) -> None:
        now = trio.current_time()
        try:
            peer = await self.transport.connect(addr)
        except (TransportError, ValueError) as exc:
            # One line when the peer becomes unreachable (the service says when), not a line
            # for every retry of the back-off.
            log.debug("dial %s failed: %s", addr, exc)
            self._execute(self.service.dial_failed(addr, now, reason=str(exc)))
            failed = _peer_of(addr)
            if failed is not None:
                # The address book forgets a peer after repeated failures.
                self.store.peer_failure(failed, _now_ms())
            return
        self._execute(self.service.dial_succeeded(addr, peer, trio.current_time()))

    async def _peer_events(self) -> None:
        async for event in self.transport.peer_events:
            await self._on_peer_event(event)

    async def _on_peer_event(self, event: PeerEvent) -> None:
        now = trio.current_time()
        if event.kind == "connected":
            self._execute(self.service.connected(event.peer_id, now))
            addrs = next(
                (p.addrs for p in self.transport.connected_peers() if p.peer_id == event.peer_id),
                [],
            )
            if addrs:
                self.store.remember_peer(event.peer_id, addrs, _now_ms())
                # A peer that dialled us is redialled by us too if the connection is lost.
                for addr in addrs:
                    self.service.add_address(addr, peer=event.peer_id)
        else:
            self._execute(self.service.disconnected(event.peer_id, now))
        self.liveness.relink(event.peer_id)

    async def _discovered(self) -> None:
        async for info in self.transport.discovered:
            for addr in info.addrs:
                self.service.add_address(dialable(addr, info.peer_id), peer=info.peer_id)

    async def _ticker(self) -> None:
        next_refresh = trio.current_time() + SUBSCRIPTION_REFRESH
        while True:
            now = trio.current_time()
            self._execute(self.service.tick(now))
            if now >= next_refresh:
                next_refresh = now + SUBSCRIPTION_REFRESH
                self._refresh_subscriptions()
            await trio.sleep(TICK)

    async def _warm_views(self) -> None:
        """Keep the views of the followed projects ready and their snapshots written.

        Shortly after start, fold (in a worker thread) the followed projects whose results
        are held neither in memory nor as a current snapshot in the store, smallest first
        while their records add up to at most ``WARM_RECORDS``: the first ``ledger`` or
        ``shares`` of a project then answers in milliseconds instead of a second or more
        (about 10 microseconds a record to decode). Decoded records take about 0.9 KB each,
        so a project beyond the budget is left to its first call, and a project whose stored
        snapshot is current is not decoded at all, keeping an idle node small. After records
        were stored, fold again the projects among those whose results were held or stored
        (not the ones only being caught up on). The folds (these and those of calls) are written as
        snapshots a little later (``node.views.cache`` debounces per project) and, when the node
        stops, within ``SNAPSHOT_STOP_SECONDS``: the first call after the next start then
        reads the snapshot instead of decoding the project.
        """
        try:
            await trio.sleep(WARM_DELAY)
            seen: tuple[int, int] | None = None
            while True:
                try:
                    version = await trio.to_thread.run_sync(self.store.version)
                    if version != seen:
                        first = seen is None
                        seen = version
                        refresh = partial(self.views.refresh, shown_only=not first)
                        await trio.to_thread.run_sync(refresh, self.follows, WARM_RECORDS)
                        if first:  # reading every project's key went through the whole index
                            await trio.to_thread.run_sync(self.store.release_memory)
                    if self.views.unsaved():
                        await trio.to_thread.run_sync(self.views.save_snapshots)
                except StoreError as exc:
                    log.warning("warming the views or writing their snapshots failed: %s", exc)
                await trio.sleep(VIEWS_TICK)
        finally:
            with trio.CancelScope(shield=True):
                await self._save_snapshots_at_stop()

    async def _save_snapshots_at_stop(self) -> None:
        """Write the snapshots of folds newer than the stored ones (the node is stopping)."""
        if not self.views.unsaved():
            return
        save = partial(self.views.save_snapshots, force=True, max_seconds=SNAPSHOT_STOP_SECONDS)
        try:
            written = await trio.to_thread.run_sync(save)
        except StoreError as exc:
            log.warning("writing the view snapshots at stop failed: %s", exc)
            return
        log.info("wrote %d view snapshots before stopping", written)

    def _refresh_subscriptions(self) -> None:
        """Subscribe to projects that reached the store some other way (``commons import``
        while the node runs writes to the store directly)."""
        for pid in self.store.project_ids():
            if self.follows(pid):
                self._queue_subscribe(project_topic(pid))

    # ---------------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "running": True,
            "peers": len(self.transport.connected_peers()),
            "records": self.store.count(),
            "projects": len(self.store.project_ids()),
            "version": __version__,
            "listen": self.transport.listen_addrs(),
            "api": self.api_url,
            "started": int(self.started * 1000),
            "uptime_seconds": round(time.time() - self.started, 1),
            "seed": self.options.seed,
            "follow": sorted(p.hex() for p in self.follow.projects or ()),
            "syncing": self._syncing,
            "catching_up": self.catching_up,
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": p.peer_id, "addrs": list(p.addrs)} for p in self.transport.connected_peers()
        ]

    def node_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "peer_id": self.peer_id,
            "addrs": self.transport.listen_addrs(),
            "api": self.api_url,
            "follow": self.follow.to_json(),
        }

    def _register_gauges(self) -> None:
        self.metrics.gauge(
            "commons_records",
            lambda: {(("kind", k),): float(v) for k, v in self.store.count_by_kind().items()},
        )
        self.metrics.gauge(
            "commons_peers", lambda: {(): float(len(self.transport.connected_peers()))}
        )


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@asynccontextmanager
async def open_node(home: Home, options: NodeOptions) -> AsyncIterator[Node]:
    """Start a node for ``home``; stop it (and remove node.json) when the block exits."""
    fix_mmap_threshold()
    key = home.signing_key()
    store = Store.open(home.store_path)
    try:
        config = TransportConfig(
            seed=key.seed,
            listen=tuple(options.listen),
            mdns=options.mdns,
            max_connections=options.max_peers,
        )
        async with open_transport(config) as transport, open_unwrapping_nursery() as nursery:
            node = Node(
                home=home,
                key=key,
                store=store,
                transport=transport,
                options=options,
                nursery=nursery,
            )
            transport.set_validator(node._validate)
            transport.set_stream_handler(sync_protocol.PROTOCOL_ID, node.syncer.serve)
            await transport.subscribe(META_TOPIC)
            node._subscribed.add(META_TOPIC)
            for pid in store.project_ids():
                if node.follows(pid):
                    node._queue_subscribe(project_topic(pid))
            for task in (
                node.verifier.run,
                node._gossip_reader,
                node._subscriber,
                node._publisher,
                node._peer_events,
                node._discovered,
            ):
                nursery.start_soon(task)
            if options.api:
                from node.api.app import serve_api

                node.api_url = await nursery.start(serve_api, node, options.api)
            for addr in options.bootstrap:
                node.service.add_address(addr, peer=_peer_of(addr), bootstrap=True)
            for peer, addrs in store.known_peers():
                for addr in addrs:
                    node.service.add_address(dialable(addr, peer), peer=peer)
            nursery.start_soon(node._publish_offline_records)
            nursery.start_soon(node._ticker)
            nursery.start_soon(node.liveness.run)
            nursery.start_soon(node._warm_views)
            home.write_node_info(node.node_info())
            log.info(
                "node %s listening on %s, API %s",
                node.peer_id,
                ", ".join(transport.listen_addrs()),
                node.api_url or "off",
            )
            try:
                yield node
            finally:
                home.remove_node_info()
                nursery.cancel_scope.cancel()
    finally:
        home.remove_node_info()
        store.close()


def _log_reachability(change: Reachability) -> None:
    if change.reachable:
        how = f"at {change.addr}" if change.addr else "(it connected to us)"
        log.info("peer %s is reachable again %s", change.peer, how)
    else:
        log.info(
            "peer %s is unreachable (%s): retrying with back-off, quietly until it answers",
            change.peer,
            change.reason or change.addr,
        )


def _peer_of(addr: str) -> str | None:
    _, sep, rest = addr.rpartition("/p2p/")
    return rest.split("/")[0] if sep else None


async def run_node(home: Home, options: NodeOptions) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_node(home, options) as node:
            async for signum in signals:
                log.info("received %s, stopping node %s", signal.Signals(signum).name, node.peer_id)
                break
