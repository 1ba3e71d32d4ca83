"""What the node offers its front ends: the operations the HTTP API (and through it
``commons`` while a node runs) calls on a running :class:`node.runtime.Node`.

:class:`NodeHandle` holds them apart from the reactor: it reads the node's parts and feeds
the store through the :class:`~node.ingest.Ingestor`, whose listener tells the service what
was stored (so authored records are published); it decides nothing.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

import trio

from node import __version__
from node.authoring import Authored, AuthoringError, prepare
from node.clock import now_ms
from node.home import Home
from node.metrics import Metrics, process_metrics
from node.moderation import (
    BlockOutcome,
    ModerationError,
    add_ban,
    bans_json,
    block,
    blocks_json,
    check_not_configured,
    check_peer,
    parse_duration,
    parse_key,
    unblock,
)
from node.net.transport import Transport, TransportError, TransportStats
from node.service import NodeService
from node.store.sqlite import Store
from node.sync.ingest import Ingestor, IngestResult
from node.sync.syncer import Syncer, SyncResult
from node.views.cache import ViewCache
from node.views.follow import Follow
from protocol import sync as sync_protocol
from protocol.errors import InvalidRecord, ProtocolError
from protocol.record import Record
from protocol.signing import SigningKey

if TYPE_CHECKING:
    from node.api.front import Front
    from node.runtime import NodeOptions

__all__ = ["NodeHandle"]

#: Whole-session bound on one sync; catch-up of 100,000 records fits well inside it.
SYNC_TIMEOUT = 600.0
#: ``commons_peer_sync_age_seconds`` shows at most this many peers (the most lagging), so a
#: seed with hundreds of peers does not export hundreds of series.
MAX_PEER_SERIES = 32
#: Peers whose last reconciliation time is remembered; beyond it, disconnected ones are dropped.
MAX_SYNCED_PEERS = 1024


def transport_metric(stat: str) -> str:
    """The /metrics name of a :class:`TransportStats` field: a counter, its unit last
    (``bytes_delivered`` is ``commons_transport_delivered_bytes_total``)."""
    if stat.startswith("bytes_"):
        stat = stat.removeprefix("bytes_") + "_bytes"
    return f"commons_transport_{stat}_total"


def build_labels() -> tuple[tuple[str, str], ...]:
    """``commons_build_info``'s labels: what runs, for telling nodes apart after an upgrade."""
    try:
        libp2p = metadata.version("libp2p")
    except metadata.PackageNotFoundError:
        libp2p = "unknown"
    return (("libp2p", libp2p), ("python", platform.python_version()), ("version", __version__))


#: Seconds of a ban without an end (the transport keeps bans by their end).
FOREVER = float("inf")


class NodeHandle:
    """The front ends' operations; :class:`node.runtime.Node` provides the parts below.
    Called from the node's trio loop."""

    home: Home
    key: SigningKey
    options: NodeOptions
    peer_id: str
    store: Store
    transport: Transport
    service: NodeService
    ingestor: Ingestor
    metrics: Metrics
    syncer: Syncer
    views: ViewCache
    follow: Follow
    api_url: str | None
    #: The API's front process, while it answers the views (:mod:`node.api.front`).
    front: Front | None
    #: When the node started (``time.time()``), for ``status``.
    started: float
    #: Reconciliation sessions under way, and records the last finished one received
    #: (None before any finished): ``status`` reports catching up from them.
    _syncing: int
    _last_sync_received: int | None
    #: When (``time.monotonic()``) each peer's last reconciliation finished well, for the
    #: per-peer lag in /metrics and for readiness.
    _synced_at: dict[str, float]
    _ever_synced: bool
    #: One moderation change at a time: each makes the next policy from the one in force.
    _admin_lock: trio.Lock

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
                now_ms=now_ms(),
            )
        )
        result = await self.ingestor.store_valid([(0, authored.record)], source="local")
        if result.rejected:  # a block, or a limit, of this node's own policy
            raise AuthoringError(result.rejected[0][1])
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

    def status(self) -> dict[str, Any]:
        # Read off the views' connection: the store's own waits for a sync's transaction
        # (1.2-1.7 s a call during a catch-up of a million records).
        latest = self.views.latest()
        return {
            "peer_id": self.peer_id,
            "running": True,
            "peers": len(self.transport.connected_peers()),
            "records": latest.count(),
            "projects": len(latest.project_ids()),
            "version": __version__,
            "listen": self.transport.listen_addrs(),
            "addrs": self.transport.advertised_addrs(),
            "api": self.api_url,
            "started": int(self.started * 1000),
            "uptime_seconds": round(time.time() - self.started, 1),
            "seed": self.options.seed,
            "follow": sorted(p.hex() for p in self.follow.projects or ()),
            "syncing": self._syncing,
            "catching_up": self.catching_up,
            "reachability": self.transport.relay.reachability,
            "relays": sorted(self.transport.relay.reservations()),
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {
                "peer_id": p.peer_id,
                "addrs": list(p.addrs),
                "relayed": self.transport.is_relayed(p.peer_id),
            }
            for p in self.transport.connected_peers()
        ]

    def node_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "peer_id": self.peer_id,
            "addrs": self.transport.advertised_addrs(),
            "api": self.api_url,
            "follow": self.follow.to_json(),
        }

    async def _sync_with(self, peer: str) -> SyncResult:
        self._syncing += 1
        try:
            with trio.fail_after(SYNC_TIMEOUT):
                stream = await self.transport.open_stream(peer, sync_protocol.PROTOCOL_ID)
                result = await self.syncer.run_client(stream)
        finally:
            self._syncing -= 1
        self._last_sync_received = result.received
        self._note_synced(peer)
        return result

    def _note_synced(self, peer: str) -> None:
        self._ever_synced = True
        self._synced_at.pop(peer, None)  # re-inserted last: the dict stays oldest first
        self._synced_at[peer] = time.monotonic()
        if len(self._synced_at) > MAX_SYNCED_PEERS:
            connected = {p.peer_id for p in self.transport.connected_peers()}
            for old in [p for p in self._synced_at if p not in connected]:
                del self._synced_at[old]
            while len(self._synced_at) > MAX_SYNCED_PEERS:  # all connected: forget the oldest
                del self._synced_at[next(iter(self._synced_at))]

    @property
    def alone(self) -> bool:
        """Whether the node runs alone by configuration: it was given no bootstrap address
        (the first seed of a community), so it has nobody it must sync with to be ready."""
        return not self.options.bootstrap

    def readiness(self) -> dict[str, Any]:
        """``GET /readyz``: ready when the store is open, the node listens, and it finished a
        reconciliation with at least one peer since it started or runs :attr:`alone`."""
        checks = {
            "store": not self.store.closed,
            "listening": bool(self.transport.listen_addrs()),
            "synced": self._ever_synced or self.alone,
        }
        return {"ready": all(checks.values()), **checks, "alone": self.alone}

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

    # ---------------------------------------------------------------- moderation (admin API)

    async def admin_block(self, kind: str, key: str, *, purge: bool, on: bool) -> dict[str, Any]:
        """Block (``on``) or unblock a project or an author; a block may purge what is held.
        The new policy applies at once to gossip, sync, the API and what sync serves."""
        which, raw = parse_key(kind, key)
        async with self._admin_lock:
            policy = self.service.policy
            if not on:
                check_not_configured(policy, which, raw)
            # The new policy first: whatever is judged from now on follows it, and the store
            # work waits for a batch judged before (see Admission.exclusive), so a block's
            # purge cannot miss it, nor can an unblock's release be undone by it.
            self.service.policy_changed(policy.with_block(which, raw, on))
            if on:
                run = partial(block, self.store, policy, which, raw, purge=purge)
            else:
                run = partial(unblock, self.store, policy, which, raw)
            try:
                outcome: BlockOutcome = await trio.to_thread.run_sync(
                    self.ingestor.admit.exclusive, run
                )
            except BaseException:
                self.service.policy_changed(policy)
                raise
            self.service.policy_changed(outcome.policy)
        if on and outcome.records:
            self.views.forget()  # the purged projects' results are stale
            if self.front is not None:
                await self.front.forget()
        if not on and not outcome.changed:
            raise ModerationError(f"{key} is not blocked", status=404)
        return outcome.to_json(which, raw, blocked=on)

    async def admin_blocks(self) -> list[dict[str, Any]]:
        return await trio.to_thread.run_sync(blocks_json, self.store, self.service.policy)

    async def admin_ban(self, peer: str, duration: str | None) -> dict[str, Any]:
        """Ban a peer (for ``duration``, or for ever), kept in the store across restarts."""
        peer = check_peer(peer)
        seconds = parse_duration(duration)
        until = await trio.to_thread.run_sync(add_ban, self.store, peer, seconds)
        self.transport.ban(peer, seconds if seconds is not None else FOREVER)
        return {"peer": peer, "until": until}

    async def admin_unban(self, peer: str) -> dict[str, Any]:
        peer = check_peer(peer)
        held = await trio.to_thread.run_sync(self.store.remove_ban, peer)
        lifted = self.transport.unban(peer)
        self.service.unbanned(peer)
        if not (held or lifted):
            raise ModerationError(f"peer {peer} is not banned", status=404)
        return {"peer": peer, "banned": False}

    async def admin_bans(self) -> list[dict[str, Any]]:
        return await trio.to_thread.run_sync(bans_json, self.store)

    def register_gauges(self) -> None:
        """The gauges /metrics reads at each scrape."""
        self.metrics.gauge(
            "commons_records",
            lambda: {(("kind", k),): float(v) for k, v in self.store.count_by_kind().items()},
        )
        self.metrics.gauge(
            "commons_peers", lambda: {(): float(len(self.transport.connected_peers()))}
        )
        labels = build_labels()
        self.metrics.gauge("commons_build_info", lambda: {labels: 1.0})
        self.metrics.gauge("commons_ready", lambda: {(): float(self.readiness()["ready"])})
        self.metrics.gauge("commons_peer_sync_age_seconds", self._sync_ages)
        for stat in (f.name for f in dataclasses.fields(TransportStats)):
            self.metrics.gauge(transport_metric(stat), partial(self._transport_stat, stat))
        self.metrics.gauge("commons_relay_reachable", self._reachable)
        self.metrics.gauge("commons_relay_reservations", self._relay_reservations)
        relay = self.transport.relay.stats
        hop = self.transport.relay.service.stats
        for metric, table in (
            ("commons_relay_reservations_made_total", relay.reservations_made),
            ("commons_relay_circuits_dialled_total", relay.circuits_dialled),
            ("commons_relay_dialbacks_asked_total", relay.dialbacks_asked),
            ("commons_relay_dialbacks_served_total", relay.dialbacks_served),
            ("commons_relay_hop_reservations_total", hop.reservations),
            ("commons_relay_hop_circuits_total", hop.circuits),
        ):
            self.metrics.gauge(metric, partial(_by_outcome, table))
        if (dcutr := self.transport.relay.dcutr) is not None:
            metric, table = "commons_relay_dcutr_total", dcutr.stats.outcomes
            self.metrics.gauge(metric, partial(_by_outcome, table))
        self.metrics.gauge("commons_relay_hop_bytes_total", lambda: {(): float(hop.bytes_relayed)})
        self.metrics.gauge(
            "commons_relay_hop_streams_refused_total",
            lambda: {(): float(hop.hop_streams_refused)},
        )
        for name in process_metrics():
            self.metrics.gauge(name, partial(_process_metric, name))

    def _reachable(self) -> dict[tuple[tuple[str, str], ...], float]:
        verdict = self.transport.relay.reachability
        return {(): {"public": 1.0, "private": 0.0}.get(verdict, -1.0)}

    def _relay_reservations(self) -> dict[tuple[tuple[str, str], ...], float]:
        relay = self.transport.relay
        return {
            (("role", "client"),): float(len(relay.reservations())),
            (("role", "relay"),): float(relay.hop_reservations()),
        }

    def _transport_stat(self, stat: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {(): float(getattr(self.transport.stats, stat))}

    def _sync_ages(self) -> dict[tuple[tuple[str, str], ...], float]:
        """Seconds since each connected peer's last good reconciliation: the most lagging
        :data:`MAX_PEER_SERIES` of them (a peer never synced with is not listed)."""
        now = time.monotonic()
        connected = {p.peer_id for p in self.transport.connected_peers()}
        # A scrape runs in a worker thread while the trio thread updates the dict: iterate
        # over a copy (dict.copy is one step under the GIL).
        synced = self._synced_at.copy()
        ages = sorted(
            ((now - at, peer) for peer, at in synced.items() if peer in connected),
            reverse=True,
        )
        return {(("peer", peer),): round(age, 3) for age, peer in ages[:MAX_PEER_SERIES]}


def _by_outcome(table: dict[str, int]) -> dict[tuple[tuple[str, str], ...], float]:
    return {(("outcome", k),): float(v) for k, v in table.copy().items()}


def _process_metric(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    value = process_metrics().get(name)
    return {} if value is None else {(): value}
