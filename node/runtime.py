"""The running node: a reactor around the pure :class:`~node.service.NodeService`.

``open_node(home, options)`` is an async context manager that starts everything and yields a
:class:`Node`; leaving it stops everything in order (tasks, API, transport, store)
and removes ``node.json``. ``run_node`` runs one until SIGINT/SIGTERM.

The node decides nothing here. Its tasks feed the service what happened (peer events, dial
and sync outcomes, gossip verdicts, stored records, liveness answers, ticks) and
:meth:`Node._execute` carries out the effects it returns: tasks for dials, syncs and checks,
the gossip queues (:mod:`node.gossip`), bans and hang-ups on the transport, and store work in
worker threads, never on the trio thread.

Start order: store -> transport (listening) -> validator, sync handler -> worker tasks ->
the service's start (meta topic subscribed, offline records queued) -> API -> known
addresses -> ticks -> ``node.json``. Nothing is acknowledged before it is committed: authoring
through the node stores the record (one transaction), then queues it for gossip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import trio

from node import exchange
from node.clock import now_ms
from node.gossip import Gossip
from node.handle import FOREVER, NodeHandle
from node.home import Home
from node.liveness import Prober
from node.memory import fix_mmap_threshold, freeze_heap, thaw_heap
from node.metrics import Metrics
from node.moderation import effective_policy
from node.net.dht import DhtStats
from node.net.relay import RelaySettings
from node.net.transport import (
    ProtocolUnsupported,
    Stream,
    Transport,
    TransportConfig,
    TransportError,
    open_transport,
)
from node.policy import Policy
from node.providers import DhtConfig
from node.service import (
    REJECTS,
    AskPeers,
    Ban,
    Check,
    Dial,
    Effect,
    FindProviders,
    Hangup,
    ListProjects,
    NodeService,
    NoteDialFailure,
    Provide,
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
from node.store.sqlite import Store, StoreError
from node.store_work import StoreWork
from node.sync.ingest import Ingestor
from node.sync.syncer import Syncer
from node.sync.verifier import Verifier
from node.trio_util import open_unwrapping_nursery
from node.views.cache import STALE_SECONDS, ViewCache
from node.views.follow import Follow
from node.views.maker import AnswerMaker
from protocol import peers as peers_protocol
from protocol import sync as sync_protocol
from protocol.errors import ProtocolError
from protocol.record import Record
from protocol.signing import SigningKey
from protocol.validation import project_topic

if TYPE_CHECKING:
    from node.api.app import ApiSockets
    from node.api.front import Demand, Front, Fronts, GateProcess

__all__ = ["Node", "NodeOptions", "open_node", "run_node"]

log = logging.getLogger(__name__)


@dataclass
class NodeOptions:
    listen: list[str] = field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/4710"])
    bootstrap: list[str] = field(default_factory=list)
    #: Addresses advertised instead of the listen ones, and never advertised.
    announce: list[str] = field(default_factory=list)
    no_announce: list[str] = field(default_factory=list)
    api: str | None = "127.0.0.1:4711"
    #: Hold the API address through the API's gate (:mod:`node.api.gate`), so that while the
    #: node is busy (a catch-up, a big import) the API's front process (:mod:`node.api.front`)
    #: answers ``ledger`` and ``shares`` while the node's own interpreter is taken.
    api_front: bool = True
    mdns: bool = True
    follow: list[bytes] = field(default_factory=list)
    seed: bool = False
    #: Peer exchange (``/commons/peers/1``): False neither asks peers nor answers them.
    peer_exchange: bool = True
    max_peers: int = 32
    sync_interval: float = 30.0
    gossip_rate: int = 1000
    #: The DHT of project providers: "server", "client" or "off"; None: server for a seed,
    #: client otherwise (``commons node run --dht``).
    dht: str | None = None
    #: Relaying for others, reachability and reservations (config.toml's ``[relay]``); None:
    #: a seed relays, and the node takes itself for reachable and never reserves.
    relay: RelaySettings | None = None
    #: The service's other tunables (the fields above override their counterparts in it).
    tuning: ServiceConfig = field(default_factory=ServiceConfig)
    #: config.toml's ``[policy]`` (the blocks made with ``commons admin`` are added at start).
    policy: Policy = field(default_factory=Policy)

    @property
    def fronted(self) -> bool:
        """Whether the API address is held by its gate, and the views answered by a front
        process while the node is busy (an API, and ``api_front``)."""
        return bool(self.api) and self.api_front

    def dht_mode(self) -> Literal["server", "client", "off"]:
        mode = self.dht or ("server" if self.seed else "client")
        if mode not in ("server", "client", "off"):
            raise ValueError(f"dht must be server, client or off, not {mode!r}")
        return mode  # type: ignore[return-value]

    def service_config(self) -> ServiceConfig:
        dht = self.tuning.dht or DhtConfig()
        return dataclasses.replace(
            self.tuning,
            follow=frozenset(self.follow),
            target_peers=min(self.tuning.target_peers, self.max_peers),
            max_peers=self.max_peers,
            sync_interval=self.sync_interval,
            gossip_rate=self.gossip_rate,
            dht=None if self.dht_mode() == "off" else dht,
            max_pending_asks=self.tuning.max_pending_asks if self.peer_exchange else 0,
        )


class Node(NodeHandle):
    """A running node: its parts and the reactor. Called from the node's trio loop."""

    def __init__(
        self,
        *,
        home: Home,
        key: SigningKey,
        store: Store,
        transport: Transport,
        options: NodeOptions,
        nursery: trio.Nursery,
        policy: Policy | None = None,
        views: ViewCache | None = None,
    ) -> None:
        self.home = home
        self.key = key
        self.store = store
        self.transport = transport
        self.options = options
        self.nursery = nursery
        self.metrics = Metrics()
        self.views = views or ViewCache(store, follow=Follow(options.follow))
        self.follow = self.views.follow
        self.peer_id = transport.peer_id
        self.service = NodeService(
            our_peer=self.peer_id,
            rng=random.Random(),
            config=options.service_config(),
            policy=options.policy if policy is None else policy,
        )
        self.verifier = Verifier(self.metrics)
        self.ingestor = Ingestor(
            store,
            now_ms=now_ms,
            metrics=self.metrics,
            accept=self.service.refusal,
            verifier=self.verifier,
            policy=lambda: self.service.policy,
        )
        #: Told of records expected or received in bulk: whether the API's front process is
        #: wanted (None: no front for this node).
        self.demand: Demand | None = None
        if options.fronted:
            from node.api.front import Demand

            self.demand = Demand()
            self.ingestor.loaded = self.demand.note
        self.work = StoreWork(store, self.views, self.service, self._execute)
        self.syncer = Syncer(
            store,
            self.ingestor,
            self.metrics,
            self.work.hello,
            on_misbehaviour=self._misbehaved,
            served=lambda: self.service.policy.filter_served(),
        )
        self.gossip = Gossip(
            transport=transport,
            service=self.service,
            store=store,
            ingestor=self.ingestor,
            metrics=self.metrics,
            execute=self._execute,
        )
        self.liveness = Prober(
            transport, self.metrics, nursery, current=self.service.link, report=self._checked
        )
        self.api_url: str | None = None
        self.front: Front | None = None
        #: The API's gate process, while it holds the API address (:mod:`node.api.gate`).
        self.gate: GateProcess | None = None
        self.started = time.time()
        #: Reconciliation sessions under way, and records the last finished one received
        #: (None before any finished): ``status`` reports catching up from them.
        self._syncing = 0
        self._last_sync_received: int | None = None
        self._synced_at: dict[str, float] = {}
        self._ever_synced = False
        self._wake_at = 0.0
        self._admin_lock = trio.Lock()
        self.ingestor.on_new(self._stored)
        self.register_gauges()
        if (dht := transport.dht).mode != "off":
            self._dht_gauges(dht.routing_table_size, dht.stats)

    def _dht_gauges(self, size: Callable[[], int], stats: DhtStats) -> None:
        """The DHT's figures kept elsewhere: its routing table, what the adapter refused,
        and what the budget deferred or the plan skipped (:mod:`node.providers`)."""
        plan = self.service.providers
        gauges: dict[str, Callable[[], dict[tuple[tuple[str, str], ...], float]]] = {
            "commons_dht_routing_table_peers": lambda: {(): float(size())},
            "commons_dht_answers_refused_total": lambda: {
                (("reason", r),): float(n) for r, n in stats.answers_refused.items()
            },
            "commons_dht_providers_refused_total": lambda: {(): float(stats.providers_refused)},
            "commons_dht_ops_deferred_total": lambda: {
                (("op", op),): float(n) for op, n in plan.deferred.items()
            },
            "commons_dht_lookups_skipped_total": lambda: {(): float(plan.skipped)},
        }
        for name, fn in gauges.items():
            self.metrics.gauge(name, fn)

    # ---------------------------------------------------------------------------- the reactor

    def _execute(self, effects: Iterable[Effect]) -> None:
        """Carry out the service's effects; whatever waits runs in a task or a worker."""
        start = self.nursery.start_soon
        for effect in effects:
            if isinstance(effect, Publish):
                self.gossip.publish_soon(effect.record)
            elif isinstance(effect, StartSync):
                start(self._background_sync, effect.peer, effect.reason)
            elif isinstance(effect, Dial):
                self.metrics.inc("commons_dials_total", source=effect.source)
                start(self._dial, effect.addr)
            elif isinstance(effect, AskPeers):
                start(self._ask_peers, effect.peer, effect.want)
            elif isinstance(effect, Provide):
                start(self._provide, effect)
            elif isinstance(effect, FindProviders):
                start(self._find_providers, effect)
            elif isinstance(effect, Reachability):
                _log_reachability(effect)
            elif isinstance(effect, Check):
                self.liveness.check_soon(effect)
            elif isinstance(effect, WakeAt):
                self._wake_at = effect.when
            elif isinstance(effect, Subscribe):
                self.gossip.subscribe_soon(effect.topic)
            elif isinstance(effect, Ban):
                if effect.reason != REJECTS:  # a sync peer that broke the protocol
                    self.metrics.inc("commons_peers_dropped_total", reason=effect.reason)
                self.transport.ban(effect.peer, effect.seconds)
            elif isinstance(effect, Hangup):
                self.metrics.inc("commons_peers_dropped_total", reason=effect.reason)
                start(self._hang_up, effect.peer)
            elif isinstance(effect, RememberPeer):
                self.work.write_soon(self.store.remember_peer, effect.peer, effect.addrs, now_ms())
            elif isinstance(effect, NoteDialFailure):
                self.work.write_soon(self.store.peer_failure, effect.peer, now_ms())
            elif isinstance(effect, ListProjects):
                start(self.work.list_projects)
            elif isinstance(effect, RefreshViews):
                start(self.work.refresh_views, effect)
            elif isinstance(effect, PublishUnpublished):
                start(self.gossip.publish_unpublished, effect.batch)

    async def _start(self) -> None:
        """The service's start; the meta topic is subscribed before anything else runs."""
        for effect in self.service.started(trio.current_time()):
            if isinstance(effect, Subscribe):
                await self.gossip.subscribe(effect.topic)
            else:
                self._execute([effect])

    async def _ticker(self) -> None:
        while True:
            self._execute(self.service.tick(trio.current_time()))
            await trio.sleep_until(self._wake_at)

    def _front_serving(self, front: Front | None) -> None:
        """The API's front process answers the views (``front``), or no longer does (None).
        While it does, the node's own views make again only the answers they were asked for
        (the dashboard, the other calls)."""
        self.front = front
        self.work.held_only = front is not None

    async def _prepare_own_views(self) -> None:
        """Make the node's views ready to answer again (every followed project's, as at
        start) before the front stops answering them."""
        self.work.held_only = False
        await trio.to_thread.run_sync(_prepare_views, self.views)

    def _stored(self, records: list[Record], source: str) -> None:
        self.views.note_stored(records)
        self._execute(self.service.records_stored(records, source))

    def _checked(self, peer: str, link: int, alive: bool, ping_refused: bool) -> None:
        self._execute(self.service.check_finished(peer, link, alive, ping_refused=ping_refused))

    def _misbehaved(self, peer: str, exc: ProtocolError) -> None:
        """A sync peer sent garbage or invalid records: the service bans it."""
        log.warning("dropping peer %s: it broke the sync protocol (%s)", peer, exc)
        code = exc.code.split(":")[0]
        self._execute(self.service.sync_misbehaved(peer, code, trio.current_time()))

    # ---------------------------------------------------------------------------- sync

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

    # ---------------------------------------------------------------------------- peers

    async def _dial(self, addr: str) -> None:
        now = trio.current_time()
        try:
            peer = await self.transport.connect(addr)
        except (TransportError, ValueError) as exc:
            # One line when the peer becomes unreachable (the service says when), not a line
            # for every retry of the back-off.
            log.debug("dial %s failed: %s", addr, exc)
            self._execute(self.service.dial_failed(addr, now, reason=str(exc)))
            return
        self._execute(self.service.dial_succeeded(addr, peer, trio.current_time()))

    async def _ask_peers(self, peer: str, want: int) -> None:
        accept_local = self.service.config.offer_local
        addrs = await exchange.ask(
            self.transport, peer, want, self.metrics, accept_local=accept_local
        )
        new, over = self.service.peers_offered(peer, addrs, trio.current_time())
        self.metrics.inc("commons_peers_learned_total", new)
        if over:
            self.metrics.inc("commons_peer_addrs_refused_total", over, reason="over-cap")

    async def _provide(self, effect: Provide) -> None:
        if self.transport.dht.mode != "off":
            ok = await self.transport.dht.provide(effect.key)
            self.metrics.inc("commons_dht_provides_total", outcome="ok" if ok else "failed")
            self.service.providers.provided(effect.project, ok, trio.current_time())

    async def _find_providers(self, effect: FindProviders) -> None:
        if self.transport.dht.mode == "off":
            return
        followers = len(self.transport.mesh_peers(project_topic(effect.project)))
        if self.service.providers.skip_lookup(effect.project, followers):
            return
        found = await self.transport.dht.find_providers(effect.key, effect.count)
        self.metrics.inc("commons_dht_lookups_total", outcome="found" if found else "none")
        listing = [(p.peer_id, p.addrs) for p in found]
        connected = self.service.connected_peers
        now = trio.current_time()
        addrs = self.service.providers.found(effect.project, listing, self.peer_id, connected, now)
        for addr in addrs:
            self.service.address_learned(addr, provider=True)
        self.metrics.inc("commons_dht_providers_found_total", len(found))
        if addrs:  # dialled from the next tick
            log.info("found %d providers of project %s", len(found), effect.project.hex()[:16])

    async def _serve_peers(self, stream: Stream) -> None:
        def offer(asker: str, local: bool, want: int) -> list[str]:
            listing = [(p.peer_id, p.addrs) for p in self.transport.connected_peers()]
            return self.service.exchange.offer(asker, local, want, listing)

        await exchange.serve(stream, offer, self.metrics)

    async def _hang_up(self, peer: str) -> None:
        with trio.move_on_after(self.service.config.liveness_timeout):
            with contextlib.suppress(TransportError):
                await self.transport.disconnect(peer)

    async def _peer_events(self) -> None:
        async for event in self.transport.peer_events:
            now, peer = trio.current_time(), event.peer_id
            if event.kind == "connected":
                info = [p.addrs for p in self.transport.connected_peers() if p.peer_id == peer]
                self._execute(self.service.connected(peer, now, info[0] if info else ()))
            else:
                self._execute(self.service.disconnected(peer, now))
            self.liveness.relinked(peer)

    async def _discovered(self) -> None:
        async for info in self.transport.discovered:
            for addr in info.addrs:
                self.service.address_learned(addr, peer=info.peer_id)


#: Seconds a thread runs before another waiting for the interpreter's lock gets it (5 ms
#: by default; see ``open_node``).
SWITCH_INTERVAL = 0.001

#: Seconds the API waits at start for the views made by ``_warming``, at most.
WARM_WAIT = 3.0


def _prepare_views(views: ViewCache) -> None:
    """Make the answers that come from the tallies (the first ledger page and the shares of
    every followed project while keys are their own persons), in a worker thread."""
    try:
        views.refresh(views.follow.follows, 0)
    except StoreError as exc:  # the first call will say so when asked
        log.warning("could not prepare the views: %s", exc)


@asynccontextmanager
async def _warming(views: ViewCache) -> AsyncIterator[trio.Event]:
    """Prepare the views (:func:`_prepare_views`) while the node starts its transport; the
    event is set when they are made.

    They cost per participant, not per record (about 0.3 s for 20,000 participants on a
    loaded 2-core machine): the API opens once they are made (at most ``WARM_WAIT`` seconds
    later), so that its first ``ledger`` or ``shares`` answers as fast as any later one
    instead of making them while the caller waits."""
    done = trio.Event()

    async def run() -> None:
        try:
            await trio.to_thread.run_sync(_prepare_views, views)
        finally:
            done.set()

    async with open_unwrapping_nursery() as nursery:
        nursery.start_soon(run)
        yield done


def _fronts(node: Node, sockets: ApiSockets, gate: GateProcess | None) -> Fronts | None:
    """Who answers the views while the node is busy (:class:`node.api.front.Fronts`), if
    anyone: the front is given the node's inner address, its store, the followed projects and
    the views' timing."""
    if node.demand is None or sockets.inner is None or gate is None:
        return None
    from node.api.front import Fronts

    inner = sockets.inner.getsockname()[:2]
    tuning = node.options.service_config()

    async def configure(front: Front) -> None:
        await front.configure(
            inner,
            node.home.store_path,
            follow=node.options.follow,
            views_interval=tuning.views_interval,
            budget=tuning.warm_records,
        )

    return Fronts(gate, node.demand, configure, node._front_serving, node._prepare_own_views)


@asynccontextmanager
async def open_node(home: Home, options: NodeOptions) -> AsyncIterator[Node]:
    """Start a node for ``home``; stop it (and remove node.json) when the block exits."""
    fix_mmap_threshold()
    # A sync keeps worker threads busy in Python (validating, tallying); the event loop that
    # answers the API then waits up to the switch interval for the interpreter's lock at
    # every wake-up. A shorter interval hands it over sooner.
    sys.setswitchinterval(SWITCH_INTERVAL)
    key = home.signing_key()
    api_sockets: ApiSockets | None = None
    gate: GateProcess | None = None
    if options.api:
        # Bound before anything starts (a taken port stops the start at once), and the API's
        # gate started first thing: its few imports run while the node starts.
        from node.api.app import bind_api

        api_sockets = bind_api(options.api, front=options.fronted)
        if options.fronted:
            from node.api.front import spawn_gate

            assert api_sockets.inner is not None
            gate = await spawn_gate(api_sockets.public, api_sockets.inner.getsockname()[:2])
    store: Store | None = None
    reader: Store | None = None
    maker: AnswerMaker | None = None
    try:
        store = Store.open(home.store_path)
        # The views read through a connection of their own, in one read transaction each
        # time they make a project's answers (``ViewCache``): a sync's commits never wait for
        # them, and their answers are never made from two states of the store.
        reader = Store.open(home.store_path)
        policy = await trio.to_thread.run_sync(_start_policy, options.policy, store)
        config = TransportConfig(
            seed=key.seed,
            listen=tuple(options.listen),
            mdns=options.mdns,
            max_connections=options.max_peers,
            dht=options.dht_mode(),
            dht_promote=options.dht is None and options.dht_mode() == "client",
            relay=options.relay
            or RelaySettings(
                hop=options.seed, reachability="public", reserve=False, hole_punch=False
            ),
            announce=tuple(options.announce),
            no_announce=tuple(options.no_announce),
        )
        maker = AnswerMaker(home.store_path)
        views = ViewCache(
            store,
            follow=Follow(options.follow),
            stale_seconds=STALE_SECONDS,
            reader=reader,
            maker=maker,
        )
        async with (
            _warming(views) as warmed,
            open_transport(config) as transport,
            open_unwrapping_nursery() as nursery,
        ):
            node = Node(
                home=home,
                key=key,
                store=store,
                transport=transport,
                options=options,
                nursery=nursery,
                policy=policy,
                views=views,
            )
            _apply_bans(transport, await trio.to_thread.run_sync(store.bans))
            transport.set_validator(node.gossip.validate)
            transport.set_reject_listener(node.gossip.rejected)
            transport.set_stream_handler(sync_protocol.PROTOCOL_ID, node.syncer.serve)
            if options.peer_exchange:  # else askers are told the protocol is unsupported
                transport.set_stream_handler(peers_protocol.PROTOCOL_ID, node._serve_peers)
            for task in (
                node.verifier.run,
                node.gossip.run_reader,
                node.gossip.run_subscriber,
                node.gossip.run_publisher,
                node._peer_events,
                node._discovered,
                node.work.run,
            ):
                nursery.start_soon(task)
            await node._start()
            if api_sockets is not None:
                from node.api.app import serve_api

                with trio.move_on_after(WARM_WAIT):
                    await warmed.wait()
                fronts = _fronts(node, api_sockets, gate)
                node.api_url = await nursery.start(serve_api, node, api_sockets, gate, fronts)
            for addr in options.bootstrap:
                node.service.address_learned(addr, bootstrap=True)
            for peer, addrs in await trio.to_thread.run_sync(store.known_peers):
                for addr in addrs:
                    node.service.address_learned(addr, peer=peer)
            nursery.start_soon(node._ticker)
            home.write_node_info(node.node_info())
            # A relay reservation adds an address (`commons id` reads node.json's list).
            transport.relay.on_addrs_changed = lambda: home.write_node_info(node.node_info())
            log.info(
                "node %s listening on %s, API %s",
                node.peer_id,
                ", ".join(transport.listen_addrs()),
                node.api_url or "off",
            )
            if options.announce or options.no_announce:
                log.info("advertising %s", ", ".join(transport.advertised_addrs()) or "nothing")
            try:
                yield node
            finally:
                home.remove_node_info()
                nursery.cancel_scope.cancel()
    finally:
        home.remove_node_info()
        if gate is not None:  # stopped by the API already, unless it never served
            await gate.close()
        if api_sockets is not None:
            api_sockets.close()
        if maker is not None:
            maker.close()
        if reader is not None:
            reader.close()
        if store is not None:
            store.close()


def _start_policy(configured: Policy, store: Store) -> Policy:
    """The policy in force: config.toml's and the operator's stored blocks. Refused ids it no
    longer refuses (a block taken out of config.toml) are forgotten, so they sync again."""
    policy = effective_policy(configured, store)
    released = store.release_refused(policy.still_refused)
    if released:
        log.info("%d records refused before are no longer blocked: sync may fetch them", released)
    return policy


def _apply_bans(transport: Transport, bans: list[tuple[str, int | None]]) -> None:
    """Enforce the operator's bans kept in the store (``commons admin ban``)."""
    now = now_ms()
    for peer, until in bans:
        transport.ban(peer, FOREVER if until is None else max(0.0, (until - now) / 1000))


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


async def run_node(home: Home, options: NodeOptions) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly.

    The process's node: what its imports made (about 90,000 objects, py-libp2p's above all)
    is left out of the garbage collector's full passes first (``freeze_heap``), before the
    node makes anything of its own, so nothing it later drops is frozen."""
    freeze_heap()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_node(home, options) as node:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    log.info("received %s, stopping node %s", name, node.peer_id)
                    break
    finally:
        thaw_heap()
