"""The libp2p adapter: with ``node.net._compat``, the only code that imports libp2p.

The rest of the node talks to the network in its own types: peer ids and multiaddrs are ``str``,
payloads ``bytes``, events frozen dataclasses, errors ``TransportError`` subclasses.
``open_transport(config)`` runs a py-libp2p 0.8.1 host (TCP, Noise only, Yamux only, one
connection per peer, no AutoConnector) with GossipSub 1.2/1.1, and stops it cleanly.

Gossip is best-effort (reconciliation provides completeness), but we remove the silent losses
we can. libp2p's 32-slot subscription buffers are bypassed: accepted messages go straight into
``messages`` (no reader task per subscription), waiting for room; beyond
``MAX_BLOCKED_DELIVERIES`` waiting deliveries we drop and count. ``publish`` pauses while a
peer's 32-RPC outbound queue is above ``PUBLISH_QUEUE_HIGH_WATER``, because libp2p drops RPCs
on a full queue (a burst of 200 delivered 17 without this, 200 with it).

Penalties: each message rejected (by our validator, or here for naming several topics) is
reported to the reject listener with the peer that forwarded it; whom to ban is the node's
decision (:mod:`node.service`). ``ban(peer, seconds)`` carries one out: pubsub blacklists the
peer (its messages are dropped before validation), it is disconnected, ``connect`` refuses it
and an inbound connection from it is closed at once, until the ban ends. GossipSub's own
scorer stays at its defaults (it gates nothing): py-libp2p's scorer departs from the spec and
would also punish honest relays during bursts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.address_validation import expand_wildcard_address

from node.net import _compat as compat
from node.net.addresses import Announcement, expand_wildcards
from node.net.dht import Dht
from node.net.relay import Relay, RelayRefused, RelaySettings, is_circuit, split_circuit
from node.net.stream import (
    ProtocolUnsupported,
    PublishRejected,
    Stream,
    StreamBroken,
    StreamClosed,
    StreamError,
    TransportError,
)
from protocol.signing import SigningKey

__all__ = [
    "Message",
    "PeerEvent",
    "PeerInfo",
    "ProtocolUnsupported",
    "PublishRejected",
    "Stream",
    "StreamBroken",
    "StreamClosed",
    "StreamError",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportStats",
    "open_transport",
]

logger = logging.getLogger(__name__)

MAX_INBOX_MESSAGES = 1024  # accepted gossip messages buffered in `messages`
MAX_BLOCKED_DELIVERIES = 256  # libp2p tasks allowed to wait on a full inbox before we drop
MAX_PEER_EVENTS = 256  # buffered in `peer_events`
MAX_DISCOVERED = 64  # buffered in `discovered`
MAX_MESSAGE_BYTES = 1_000_000  # payload; libp2p's RPC limit is 1 MiB including the envelope
MAX_INBOUND_RPC_BYTES = MAX_MESSAGE_BYTES + (64 << 10)
MAX_TOPIC_BYTES = 256
MAX_TOPICS = 256  # topics with a validator: subscribed or published to
MAX_INBOUND_STREAMS = 128  # stream handlers running at once; further streams are reset
MAX_BANNED_PEERS = 1024
PUBLISH_QUEUE_HIGH_WATER = 16  # of libp2p's 32-RPC per-peer outbound queue
MAX_PUBLISH_WAIT_SECONDS = 0.5  # then the queue's peer counts as stuck and is not waited for
PUBLISH_POLL_SECONDS = 0.002
STREAM_NEGOTIATION_TIMEOUT_SECONDS = 5.0
SHUTDOWN_TIMEOUT_SECONDS = 2.0
CONNECTION_AUDIT_SECONDS = 1.0


#: A transport on its own neither relays, nor tests its reachability, nor reserves a slot.
NO_RELAY = RelaySettings(reachability="public", reserve=False, hole_punch=False)


@dataclass(frozen=True, kw_only=True)
class TransportConfig:
    seed: bytes  # 32-byte Ed25519 private key seed: the node identity
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4710",)
    mdns: bool = False
    mdns_interfaces: tuple[str, ...] = ()  # () means every interface
    dht: Literal["server", "client", "off"] = "off"  # see node/net/dht.py
    dht_promote: bool = False  # client becomes server once found publicly reachable
    relay: RelaySettings = NO_RELAY  # see node/net/relay.py
    max_connections: int = 64
    dial_timeout_seconds: float = 5.0
    gossip_degree: int = 6
    gossip_degree_low: int = 4
    gossip_degree_high: int = 12
    heartbeat_seconds: int = 1
    seen_ttl_seconds: int = 120
    #: What to advertise instead of the listen addresses, and what never to advertise
    #: (see :mod:`node.net.addresses`).
    announce: tuple[str, ...] = ()
    no_announce: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(self.seed)}")
        if not self.listen:
            raise ValueError("listen must name at least one multiaddr")
        if not 0 < self.gossip_degree_low <= self.gossip_degree <= self.gossip_degree_high:
            raise ValueError("need 0 < gossip_degree_low <= gossip_degree <= gossip_degree_high")
        if min(self.max_connections, self.heartbeat_seconds) < 1:
            raise ValueError("max_connections and heartbeat_seconds must be >= 1")


@dataclass(frozen=True)
class Message:
    topic: str
    data: bytes
    from_peer: str  # the peer that forwarded it to us
    origin: str  # the peer that published it (libp2p checked its signature)


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    addrs: list[str]  # dialable: each ends in /p2p/<peer_id>


@dataclass(frozen=True)
class PeerEvent:
    kind: Literal["connected", "disconnected"]
    peer_id: str


@dataclass
class TransportStats:
    """Counters for /metrics; they only grow."""

    messages_accepted: int = 0  # passed our validator, received or published
    messages_rejected: int = 0  # failed it, including when it raised
    validator_errors: int = 0
    messages_delivered: int = 0  # put into `messages`
    messages_dropped: int = 0  # inbox full and MAX_BLOCKED_DELIVERIES already waiting
    bytes_delivered: int = 0
    messages_published: int = 0
    bytes_published: int = 0
    publish_waits_expired: int = 0  # a peer queue stayed above high water; it may drop
    pubsub_errors: int = 0  # exceptions inside libp2p's push_msg, contained
    connects: int = 0  # successful connect() calls
    dial_failures: int = 0
    peer_events_dropped: int = 0
    discoveries_dropped: int = 0
    handler_errors: int = 0
    inbound_streams_refused: int = 0
    bans: int = 0
    connections_refused: int = 0  # beyond max_connections

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def check_peer_addr(maddr: str) -> str:
    """The peer id at the end of ``maddr``; ``TransportError`` when it is not a multiaddr
    ending in ``/p2p/<peer id>`` (the only kind a node can dial)."""
    shown = maddr[:200]
    if "/p2p/" not in maddr:
        raise TransportError(f"{shown!r} has no /p2p/<peer id> at its end")
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
    except Exception as exc:
        raise TransportError(f"{shown!r} is not a multiaddr ending in /p2p/<peer id>") from exc
    return str(info.peer_id)


def _one_line(exc: BaseException) -> str:
    """The innermost cause of a libp2p failure, on one short line: the outer layers only
    repeat that a dial failed, and some messages run over several lines."""
    seen: set[int] = set()
    inner = exc
    while id(inner) not in seen:
        seen.add(id(inner))
        nested = inner.__cause__ or inner.__context__
        # Exception groups, and py-libp2p's MultiError (one error an address dialled).
        grouped = getattr(inner, "exceptions", None) or getattr(inner, "errors", None)
        if isinstance(grouped, list | tuple) and grouped and isinstance(grouped[0], BaseException):
            nested = grouped[0]
        if nested is None:
            break
        inner = nested
    text = " ".join(str(inner).split()) or type(inner).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _peer(peer_id: str) -> ID:
    try:
        return ID.from_base58(peer_id)
    except Exception as exc:
        raise ValueError(f"not a peer id: {peer_id!r}") from exc


def dialable(addr: str, peer_id: str) -> str:
    """``addr`` ending in ``/p2p/<peer_id>``: as it is if it names a peer already, else with
    that suffix appended (peerstores, mDNS and the store hold addresses without it)."""
    return addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id}"


def _dialable(peer_id: str, addrs: list[str]) -> list[str]:
    return list(dict.fromkeys(dialable(a, peer_id) for a in addrs))


def _check_topic(topic: str) -> None:
    if not topic or len(topic.encode()) > MAX_TOPIC_BYTES:
        raise ValueError(f"topic must have 1..{MAX_TOPIC_BYTES} bytes: {topic!r}")


#: ``fn(topic, data, from_peer)``: True accepts; False refuses and counts towards banning the
#: forwarder; None refuses without blame (see :meth:`Transport.set_validator`).
Validator = Callable[[str, bytes, str], bool | None]
RejectListener = Callable[[str], None]
StreamHandler = Callable[[Stream], Awaitable[None]]
_CLOSED = (trio.ClosedResourceError, trio.BrokenResourceError)


class Transport:
    """A running libp2p node seen through our own types; obtain one from ``open_transport``.

    ``messages``, ``peer_events`` and ``discovered`` are bounded trio receive channels; they
    close when the transport stops.
    """

    def __init__(self, config: TransportConfig, host: IHost, pubsub: compat.CommonsPubsub):
        self._config = config
        self._host = host
        self._pubsub = pubsub
        self.peer_id: str = str(host.get_id())
        self.stats = TransportStats()
        self._announcement = Announcement(self.peer_id, config.announce, config.no_announce)
        self._validator: Validator | None = None
        self._on_reject: RejectListener | None = None
        self._validated_topics: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._inbox, self.messages = trio.open_memory_channel[Message](MAX_INBOX_MESSAGES)
        self._events, self.peer_events = trio.open_memory_channel[PeerEvent](MAX_PEER_EVENTS)
        self._found, self.discovered = trio.open_memory_channel[PeerInfo](MAX_DISCOVERED)
        self._blocked_deliveries = 0
        self._inbound_streams = 0
        self._connections: dict[str, int] = {}
        self._stuck: set[ID] = set()  # peers whose queue did not drain in time
        self._banned_until: dict[str, float] = {}
        self.dht = Dht(host, config.dht)  # before any connection: identify must list it
        self.relay = Relay(host, config.relay, on_reachability=self._reachability)
        compat.circuit.advertise_relayed(host, self.relay.relayed_addrs)
        pubsub.on_delivered = self._deliver
        pubsub.on_error = self._count_pubsub_error

    # ----- connections -------------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        """The actual listen addresses (with the chosen port), each ending in /p2p/<id>; a
        wildcard (0.0.0.0, ::) is expanded to this machine's interface addresses."""
        addrs = self._host.get_transport_addrs()
        return _dialable(self.peer_id, [str(e) for a in addrs for e in expand_wildcard_address(a)])

    def advertised_addrs(self) -> list[str]:
        """The addresses this node tells its peers to dial, each ending in /p2p/<id>: its
        listen addresses, or ``announce`` in their place, less ``no_announce``."""
        direct = self._announcement.full(
            expand_wildcards(map(str, self._host.get_transport_addrs()))
        )
        return direct + [f"{a}/p2p/{self.peer_id}" for a in self.relay.relayed_addrs()]

    async def connect(self, maddr: str) -> str:
        """Dial ``maddr``, which must end in /p2p/<id>, and return that peer id.

        Returns at once when already connected. Raises TransportError. A successful return
        does not promise the peer keeps the connection (it may be full or ban us)."""
        check_peer_addr(maddr)
        if is_circuit(maddr):
            return await self._connect_relayed(maddr)
        info = info_from_p2p_addr(multiaddr.Multiaddr(maddr))
        peer_id = str(info.peer_id)
        if peer_id == self.peer_id:
            raise TransportError(f"refusing to dial ourselves at {maddr}")
        if self._is_banned(peer_id):
            raise TransportError(f"peer {peer_id} is banned for forwarding rejected messages")
        # py-libp2p remembers a peer whose dial failed for 60 s and refuses to dial it again
        # meanwhile; our service decides when to retry (with its own back-off), and a peer
        # that restarted must be reachable at once.
        compat.forget_failed_dial(self._host, info.peer_id)
        before = compat.known_addrs(self._host, info.peer_id)
        try:
            with trio.fail_after(self._config.dial_timeout_seconds + 1.0):
                await self._host.connect(info)
        except Exception as exc:  # SwarmException, OSError, Noise errors, TooSlowError, ...
            self.stats.dial_failures += 1
            # An address that failed is not the peer's: it must not be remembered as one.
            new = [a for a in info.addrs if a not in before]
            compat.forget_addrs(self._host, info.peer_id, new)
            raise TransportError(f"could not connect to {maddr}: {_one_line(exc)}") from exc
        self.stats.connects += 1
        return peer_id

    async def _connect_relayed(self, maddr: str) -> str:
        """Dial ``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<target>``: the relay first, then
        a circuit through it (see :mod:`node.net.relay`)."""
        try:
            relay_addr, relay, target = split_circuit(maddr)
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        if target in (self.peer_id, relay) or self._is_banned(target):
            raise TransportError(f"refusing to dial {target} through {relay}")
        if _peer(target) in self._host.get_connected_peers():
            return target
        await self.connect(relay_addr)
        try:
            await self.relay.dial(relay, target)
        except Exception as exc:  # RelayRefused, SwarmException, TooSlowError, ...
            self.stats.dial_failures += 1
            why = str(exc) if isinstance(exc, RelayRefused) else _one_line(exc)
            raise TransportError(f"could not connect to {maddr}: {why}") from exc
        self.stats.connects += 1
        return target

    def is_relayed(self, peer_id: str) -> bool:
        """Whether every connection to the peer runs through a relay (False when none)."""
        return compat.circuit.relayed(self._host, _peer(peer_id))

    def _reachability(self, verdict: str) -> None:
        if verdict == "public" and self._config.dht_promote and self.dht.mode == "client":
            self._spawn(self._promote_dht)

    async def _promote_dht(self) -> None:
        # Then identify tells our peers that we serve the DHT now; those that connect later,
        # or meet us in a query, add us to their routing tables.
        await self.dht.promote()
        await self.relay.push_identify()

    async def disconnect(self, peer_id: str) -> None:
        """Close every connection to the peer; its "disconnected" event follows."""
        await self._host.disconnect(_peer(peer_id))
        self._audit_connections()

    def connected_peers(self) -> list[PeerInfo]:
        """Connected peers with their known listen addresses, sorted by peer id."""
        peers = []
        for pid in self._host.get_connected_peers():
            try:
                addrs = [str(a) for a in self._host.get_peerstore().addrs(pid)]
            except Exception:  # PeerStoreError: unknown or expired
                addrs = []
            peers.append(PeerInfo(str(pid), _dialable(str(pid), addrs)))
        return sorted(peers, key=lambda p: p.peer_id)

    def _on_connection(self, peer_id: str, delta: int) -> None:
        # One event per peer, not per connection (simultaneous dials can open two). A banned
        # peer is dropped and never reported.
        count = self._connections.get(peer_id, 0)
        if delta > 0:
            if self._is_banned(peer_id):
                self._spawn(self._drop_peer, peer_id)
                return
            if count == 0 and len(self._connections) >= self._config.max_connections:
                # Full: py-libp2p's own inbound cap is disabled (it never frees a slot).
                self.stats.connections_refused += 1
                logger.info("refusing peer %s: %d peers connected", peer_id, len(self._connections))
                self._spawn(self._drop_peer, peer_id)
                return
            self._connections[peer_id] = count + 1
            if count == 0:
                self._emit(PeerEvent("connected", peer_id))
                self._spawn(self.dht.peer_connected, peer_id)
                self.relay.peer_connected()
        elif count > 1:
            self._connections[peer_id] = count - 1
        elif count == 1:  # 0: already reported by _audit_connections
            del self._connections[peer_id]
            self._emit(PeerEvent("disconnected", peer_id))

    def _audit_connections(self) -> None:
        # libp2p notifies "disconnected" only after a 0.1 s sleep in the closing task; when
        # that task is cancelled the event is lost. Trust the connection table instead.
        live = {str(p) for p in self._host.get_connected_peers()}
        for peer_id in [p for p in self._connections if p not in live]:
            del self._connections[peer_id]
            self._emit(PeerEvent("disconnected", peer_id))

    async def _audit_forever(self) -> None:
        while True:
            await trio.sleep(CONNECTION_AUDIT_SECONDS)
            self._audit_connections()

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._events.send_nowait(event)
        except (trio.WouldBlock, *_CLOSED):
            self.stats.peer_events_dropped += 1

    def _on_discovered(self, peer_id: str, addrs: list[str]) -> None:
        try:
            self._found.send_nowait(PeerInfo(peer_id, _dialable(peer_id, addrs)))
        except (trio.WouldBlock, *_CLOSED):
            self.stats.discoveries_dropped += 1

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is not None:
            with suppress(RuntimeError):  # the nursery is closing: we are shutting down
                self._nursery.start_soon(fn, *args)

    # ----- penalties ---------------------------------------------------------------------

    def ban(self, peer_id: str, seconds: float) -> None:
        """Blacklist the peer's gossip, disconnect it and refuse it for ``seconds``.

        Idempotent while the ban lasts: py-libp2p's teardown of a blacklisted peer is started
        once (and survives the peer's own teardown meanwhile: ``_compat.blacklist``).
        """
        pid = _peer(peer_id)
        until = trio.current_time() + seconds
        if self._is_banned(peer_id):  # a longer ban (the operator's) extends this one
            self._banned_until[peer_id] = max(self._banned_until[peer_id], until)
            return
        if peer_id not in self._banned_until and len(self._banned_until) >= MAX_BANNED_PEERS:
            oldest = min(self._banned_until, key=self._banned_until.__getitem__)
            self._unban(oldest)
        self._banned_until[peer_id] = until
        self.stats.bans += 1
        logger.warning(
            "banning peer %s for %s", peer_id, f"{seconds:.0f} s" if seconds < 1e12 else "ever"
        )
        self._pubsub.add_to_blacklist(pid)
        self._spawn(self._drop_peer, peer_id)

    def unban(self, peer_id: str) -> bool:
        """Lift a ban at once (``commons admin unban``); False if the peer was not banned."""
        if not self._is_banned(peer_id):
            return False
        self._unban(peer_id)
        logger.info("peer %s is no longer banned", peer_id)
        return True

    def banned_peers(self) -> list[str]:
        return sorted(p for p in list(self._banned_until) if self._is_banned(p))

    def _is_banned(self, peer_id: str) -> bool:
        until = self._banned_until.get(peer_id)
        if until is not None and trio.current_time() >= until:
            self._unban(peer_id)
            return False
        return until is not None

    def _unban(self, peer_id: str) -> None:
        del self._banned_until[peer_id]
        self._pubsub.remove_from_blacklist(_peer(peer_id))

    async def _drop_peer(self, peer_id: str) -> None:
        try:
            await self.disconnect(peer_id)
        except Exception as exc:
            logger.debug("disconnecting banned peer %s: %r", peer_id, exc)

    # ----- gossip ------------------------------------------------------------------------

    def set_validator(self, fn: Validator) -> None:
        """Install ``fn(topic, data, from_peer) -> accept?``.

        It runs synchronously inside libp2p, before forwarding, on every message received or
        published on our topics. Anything but ``True``, or an exception, rejects; a
        rejection counts towards banning the forwarder, except when ``fn`` returns ``None``:
        a refusal without blame (a copy of a message already judged, which GossipSub's own
        IWANT may fetch again, or one over the forwarder's rate limit, which an honest relay
        may reach during a burst). A sync
        validator is cheaper than libp2p's async path (a nursery and a semaphore per message)
        and our validation is CPU work anyway; the wrapper makes it safe.
        """
        self._validator = fn

    def set_reject_listener(self, fn: RejectListener) -> None:
        """Install ``fn(peer_id)``, called (inside libp2p, so it must not block or raise) for
        each message rejected that another peer forwarded: the node decides on bans."""
        self._on_reject = fn

    def _ensure_validator(self, topic: str) -> None:
        if topic not in self._validated_topics:
            if len(self._validated_topics) >= MAX_TOPICS:
                raise ValueError(f"more than MAX_TOPICS={MAX_TOPICS} topics")
            self._validated_topics.add(topic)
            self._pubsub.set_topic_validator(topic, partial(self._validate, topic), False)

    def _validate(self, topic: str, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        from_peer = str(forwarder)
        fn = self._validator
        verdict: bool | None = False
        try:
            if len(msg.topicIDs) == 1:
                verdict = True if fn is None else fn(topic, msg.data, from_peer)
        except Exception:
            self.stats.validator_errors += 1
            logger.warning("validator raised on a message from %s", from_peer, exc_info=True)
            verdict = False
        if verdict is True:
            self.stats.messages_accepted += 1
            return True
        self.stats.messages_rejected += 1
        outcome = compat.current_outcome.get()
        if outcome is not None:
            outcome.rejected = True
        if from_peer != self.peer_id and verdict is not None:
            logger.debug("rejected a message on %s forwarded by %s", topic, from_peer)
            if self._on_reject is not None:
                try:
                    self._on_reject(from_peer)
                except Exception:
                    logger.warning("reject listener raised on %s", from_peer, exc_info=True)
        return False

    async def subscribe(self, topic: str) -> None:
        _check_topic(topic)
        self._ensure_validator(topic)
        await self._pubsub.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self._pubsub.unsubscribe(topic)

    def mesh_peers(self, topic: str) -> list[str]:
        """Peers in our GossipSub mesh for ``topic``: they receive our messages eagerly."""
        return sorted(str(p) for p in compat.mesh_of(self._pubsub).get(topic, ()))

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` on ``topic`` (we need not be subscribed). Our own validator runs
        first: PublishRejected if it refuses. A payload already seen within
        ``seen_ttl_seconds`` is silently not sent again (the id is its hash). Our own
        messages are not echoed into ``messages``. Delivery stays best-effort."""
        _check_topic(topic)
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        self._ensure_validator(topic)
        await self._wait_for_queue_room()
        outcome = compat.Outcome()
        token = compat.publish_outcome.set(outcome)
        try:
            await self._pubsub.publish(topic, data)
        finally:
            compat.publish_outcome.reset(token)
        if outcome.rejected:
            raise PublishRejected(f"our validator rejected a {len(data)}-byte message on {topic}")
        if outcome.notified:
            self.stats.messages_published += 1
            self.stats.bytes_published += len(data)

    async def _wait_for_queue_room(self) -> None:
        # libp2p's publish never yields and its per-peer queues drop RPCs when full: a burst
        # of 200 publishes delivered 17 of them. Wait for the senders, not for a stuck peer.
        await trio.lowlevel.checkpoint()
        deadline = trio.current_time() + MAX_PUBLISH_WAIT_SECONDS
        while full := compat.full_queues(self._pubsub, PUBLISH_QUEUE_HIGH_WATER, self._stuck):
            if trio.current_time() >= deadline:
                self.stats.publish_waits_expired += 1
                self._stuck.update(full)
                return
            await trio.sleep(PUBLISH_POLL_SECONDS)

    async def _deliver(self, forwarder: ID, msg: rpc_pb2.Message) -> None:
        for topic in msg.topicIDs:
            if topic in self._pubsub.topic_ids:
                await self._put(Message(topic, msg.data, str(forwarder), str(ID(msg.from_id))))

    async def _put(self, item: Message) -> None:
        # Backpressure, bounded: a full inbox makes libp2p's per-message task wait (it has
        # already forwarded the message), up to MAX_BLOCKED_DELIVERIES of them; then drop.
        try:
            self._inbox.send_nowait(item)
        except trio.WouldBlock:
            if self._blocked_deliveries >= MAX_BLOCKED_DELIVERIES:
                self.stats.messages_dropped += 1
                logger.warning("inbox full: dropped a message from %s", item.from_peer)
                return
            self._blocked_deliveries += 1
            try:
                await self._inbox.send(item)
            except _CLOSED:
                return
            finally:
                self._blocked_deliveries -= 1
        except _CLOSED:
            return
        self.stats.messages_delivered += 1
        self.stats.bytes_delivered += len(item.data)

    def _count_pubsub_error(self) -> None:
        self.stats.pubsub_errors += 1

    # ----- streams -----------------------------------------------------------------------

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id``. The stream is closed when ``handler`` returns and reset if
        it raises; the exception is logged and counted and never reaches libp2p."""

        async def run(net_stream: INetStream) -> None:
            stream = Stream(net_stream, str(net_stream.muxed_conn.peer_id), protocol_id)
            if self._inbound_streams >= MAX_INBOUND_STREAMS:
                self.stats.inbound_streams_refused += 1
                await stream.reset()
                return
            self._inbound_streams += 1
            try:
                await handler(stream)
            except Exception:
                self.stats.handler_errors += 1
                logger.warning(
                    "%s handler failed for %s", protocol_id, stream.peer_id, exc_info=True
                )
                await stream.reset()
            else:
                await stream.close()
            finally:
                self._inbound_streams -= 1

        self._host.set_stream_handler(TProtocol(protocol_id), run)

    async def open_stream(self, peer_id: str, protocol_id: str) -> Stream:
        """Open a stream to a connected peer (this never dials). Raises TransportError."""
        pid = _peer(peer_id)
        if pid not in self._host.get_connected_peers():
            raise TransportError(f"not connected to {peer_id}")
        try:
            net_stream = await self._host.new_stream(pid, [TProtocol(protocol_id)])
        except Exception as exc:  # StreamFailure (e.g. protocol not supported), SwarmException
            if compat.protocol_refused(exc):
                raise ProtocolUnsupported(f"{peer_id} does not serve {protocol_id}") from exc
            raise TransportError(f"could not open {protocol_id} to {peer_id}: {exc}") from exc
        return Stream(net_stream, peer_id, protocol_id)

    def remove_stream_handler(self, protocol_id: str) -> None:
        """Stop serving ``protocol_id``: peers asking for it from now on are told it is not
        supported. Identify messages sent from now on no longer list it."""
        self._host.remove_stream_handler(TProtocol(protocol_id))

    def offers(self, peer_id: str, protocol_id: str) -> bool | None:
        """Whether the peer serves ``protocol_id``, by the protocols it listed in its last
        identify message; None before one arrived (identify runs just after connecting)."""
        listed = compat.peer_protocols(self._host, _peer(peer_id))
        return None if listed is None else protocol_id in listed

    async def probe(self, peer_id: str) -> bool:
        """Whether the connection to ``peer_id`` still carries traffic, whatever the peer
        serves: send a Yamux ping (every Yamux implementation answers one) and return True
        once any frame arrives after it; False at once if not connected. The caller bounds
        the wait (a stalled connection never answers). Raises TransportError."""
        try:
            return await compat.yamux_probe(self._host, _peer(peer_id))
        except Exception as exc:  # the connection broke while we wrote
            raise TransportError(f"could not probe {peer_id}: {exc}") from exc

    async def _shutdown(self) -> None:
        await compat.close_listeners(self._host)  # first, so that nobody new gets in
        for pid in list(self._host.get_connected_peers()):
            try:
                await self._host.disconnect(pid)
            except Exception as exc:
                logger.debug("disconnecting %s at shutdown: %r", pid, exc)
        for channel in (self._inbox, self._events, self._found):
            channel.close()


@asynccontextmanager
async def open_transport(config: TransportConfig) -> AsyncIterator[Transport]:
    """Run the host, Pubsub and GossipSub (and mDNS if configured) for the block's duration.

    On exit our tasks are cancelled, every peer is disconnected (shielded, at most
    ``SHUTDOWN_TIMEOUT_SECONDS``), then GossipSub, Pubsub and the host stop, in that order.
    Exceptions leave as plain exceptions, libp2p's as ``TransportError``; never as groups.
    """
    try:
        listen = [multiaddr.Multiaddr(a) for a in config.listen]
    except Exception as exc:
        raise ValueError(f"bad listen multiaddr in {config.listen!r}") from exc
    compat.check_ports_free(listen, TransportError)
    announcement = Announcement(
        SigningKey(config.seed).peer_id, config.announce, config.no_announce
    )  # a bad entry is refused before anything listens
    host, gossip, pubsub = compat.build_host(
        seed=config.seed,
        max_connections=config.max_connections,
        dial_timeout=config.dial_timeout_seconds,
        negotiation_timeout=STREAM_NEGOTIATION_TIMEOUT_SECONDS,
        degree=config.gossip_degree,
        degree_low=config.gossip_degree_low,
        degree_high=config.gossip_degree_high,
        heartbeat_seconds=config.heartbeat_seconds,
        seen_ttl_seconds=config.seen_ttl_seconds,
        max_inbound_rpc_bytes=MAX_INBOUND_RPC_BYTES,
        advertise=(
            (lambda found: announcement.select(expand_wildcards(found)))
            if config.announce or config.no_announce
            else None
        ),
    )
    transport = Transport(config, host, pubsub)
    host.get_network().register_notifee(compat.ConnectionNotifee(transport._on_connection))
    body: BaseException | None = None  # what the caller's block raised
    try:
        async with (
            host.run(listen),
            background_trio_service(pubsub),
            background_trio_service(gossip),  # exits first
        ):
            await pubsub.wait_until_ready()
            try:
                async with trio.open_nursery() as nursery:
                    transport._nursery = nursery
                    nursery.start_soon(transport._audit_forever)
                    await nursery.start(transport.dht.run)
                    await nursery.start(transport.relay.run)
                    if config.mdns:
                        await nursery.start(
                            compat.run_mdns,
                            host,
                            transport.listen_addrs(),
                            config.mdns_interfaces,
                            transport._on_discovered,
                        )
                    try:
                        yield transport
                    except BaseException as exc:
                        body = exc
                        raise
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                transport._nursery = None
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + SHUTDOWN_TIMEOUT_SECONDS
                    await transport._shutdown()
    except BaseExceptionGroup as group:
        compat.raise_unwrapped(group, TransportError, body)
