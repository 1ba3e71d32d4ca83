"""The private half of the libp2p adapter: building the host and working around py-libp2p.

Only ``node.net.transport`` imports this module; together they are the only importers of libp2p.
Everything here depends on internals of py-libp2p 0.8.1, which pyproject pins exactly; the
tests in tests/node/test_transport.py exercise each workaround.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import itertools
import logging
import os
import re
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub
import libp2p.stream_muxer.yamux.yamux
import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.broadcaster import PeerBroadcaster
from libp2p.discovery.mdns.listener import PeerListener
from libp2p.discovery.mdns.mdns import SERVICE_TYPE
from libp2p.discovery.mdns.utils import stringGen
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo as Libp2pPeerInfo
from libp2p.peer.peerstore import PeerStoreError, env_to_send_in_RPC
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import FLAG_SYN as YAMUX_FLAG_SYN
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import TYPE_PING as YAMUX_TYPE_PING
from libp2p.stream_muxer.yamux.yamux import YAMUX_HEADER_FORMAT, Yamux
from zeroconf import Zeroconf

logger = logging.getLogger(__name__)

# `import libp2p` sets its logger to propagate=False without handlers, so its warnings bypass
# the application's logging configuration: re-attach it, at WARNING.
_libp2p_logger = logging.getLogger("libp2p")
_libp2p_logger.propagate = True
_libp2p_logger.setLevel(logging.WARNING)

# libp2p logs these at ERROR for expected events: a peer lacks a protocol, is offline, or
# closes the connection (churn, our bans, shutdown). They are demoted to DEBUG.
_EXPECTED_ERRORS = {
    "libp2p.host.basic_host": r"Failed to open stream",
    "libp2p.transport.tcp.tcp": r"Failed to open TCP stream",
    "libp2p.protocol_muxer.multiselect_client": r"MultiselectClient handshake: \w+ failed",
    "libp2p.stream_muxer.yamux.yamux": (
        r"Error in handle_incoming for peer \S+: (ConnectionClosed|ClosedResource)"
    ),
}


class _DemoteExpectedErrors(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self._pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and self._pattern.match(str(record.msg)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


for _name, _pattern in _EXPECTED_ERRORS.items():
    logging.getLogger(_name).addFilter(_DemoteExpectedErrors(_pattern))

# libp2p's validation cache (300 s, rejects included) is keyed by message id, which for us is
# the payload hash: blind to the topic, and it would hide repeat offenders from our reject
# counter. Its check is `now - stamp > ttl`, so a negative ttl makes every entry stale.
_VALIDATION_CACHE_DISABLED_TTL = -1
MDNS_TTL_SECONDS = 120
#: Inbound connections py-libp2p may be handling at once; the real cap is the transport's.
UNLIMITED_INBOUND = 1 << 20
MDNS_CLEANUP_SECONDS = 60.0


def message_id(msg: rpc_pb2.Message) -> bytes:
    """Gossip message id: SHA-256 of the payload, i.e. our record id; the same on every node."""
    return hashlib.sha256(msg.data).digest()


@dataclass
class Outcome:
    """What happened to one message inside libp2p's ``push_msg``."""

    rejected: bool = False  # a validator of ours said no
    notified: bool = False  # accepted and due for local delivery


# libp2p runs push_msg in one task per message (inline for a local publish). Our validator and
# notify_subscriptions run inside it, so a ContextVar carries the outcome back to our wrapper.
current_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar(
    "commons_push_outcome", default=None
)
# Set by Transport.publish so that the wrapper reports what happened to our own message.
publish_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar(
    "commons_publish_outcome", default=None
)


# --------------------------------------------------------------------------------------------
# Per-message costs of py-libp2p 0.8.1 that Commons does without. Measured with py-spy at the
# relay of benchmark figure 5 (a line A - B - C at a few hundred records a second), each as a
# share of the relay's samples: the signed peer record py-libp2p attaches to every RPC, built
# anew for each (5 %) and verified anew on arrival (11 %); a Yamux window update after every
# read (9 %); an IDONTWANT to every mesh peer for every message (4 %, and as many extra RPCs
# to read at the peers). Nothing here changes what goes on the wire except that IDONTWANT is
# sent only for messages big enough to be worth it, as go-libp2p-pubsub does.

#: go-libp2p-pubsub's ``GossipSubIDontWantMessageThreshold``: smaller messages get no
#: IDONTWANT (a record is usually a few hundred bytes, about the size of the IDONTWANT).
IDONTWANT_MIN_BYTES = 1024
#: Seconds our own signed peer record is reused before it is rebuilt from the listen addresses.
SENDER_RECORD_REUSE = 10.0
#: Seconds a peer's signed peer record, once verified, is accepted again without verifying.
SENDER_RECORD_TRUST = 600.0
MAX_TRUSTED_SENDER_RECORDS = 4096

# The size of the message whose push_msg is running (IDONTWANT decisions need it).
current_message_size: contextvars.ContextVar[int] = contextvars.ContextVar(
    "commons_message_size", default=1 << 30
)
_trusted_records: OrderedDict[tuple[ID, bytes], float] = OrderedDict()


def _sender_record(host: IHost) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC``, reusing the envelope for ``SENDER_RECORD_REUSE`` seconds:
    upstream rebuilds the listen addresses from the sockets for every RPC."""
    now = time.monotonic()
    cached: tuple[float, bytes] | None = getattr(host, "_commons_sender_record", None)
    if cached is not None and cached[0] > now:
        return cached[1], False
    envelope, fresh = env_to_send_in_RPC(host)
    host._commons_sender_record = (now + SENDER_RECORD_REUSE, envelope)  # type: ignore[attr-defined]
    return envelope, fresh


def _consume_sender_record(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """``maybe_consume_signed_record``, verifying each peer's record once: the bytes of a
    signed record decide the result, so the same bytes from the same peer are accepted again
    without another signature check (re-stored in the peerstore every ten minutes)."""
    if not msg.HasField("senderRecord"):
        return True
    key = (peer_id, msg.senderRecord)
    now = time.monotonic()
    until = _trusted_records.get(key)
    if until is not None and until > now:
        return True
    if not maybe_consume_signed_record(msg, host, peer_id):
        return False
    _trusted_records[key] = now + SENDER_RECORD_TRUST
    _trusted_records.move_to_end(key)
    while len(_trusted_records) > MAX_TRUSTED_SENDER_RECORDS:
        _trusted_records.popitem(last=False)
    return True


def _install_rpc_shortcuts() -> None:
    """Point py-libp2p's pubsub modules at the two functions above (idempotent), and make
    Yamux send window updates by go-yamux's rule (once half the window has been read) rather
    than after every read: ``PY_YAMUX_RELEASE_ON_READ`` is py-libp2p's own switch. Yamux
    reads its ``PY_YAMUX_*`` settings from the environment on every read and write (2 % of
    the relay's samples): they are read once."""
    for module in (libp2p.pubsub.gossipsub, libp2p.pubsub.pubsub):
        module.env_to_send_in_RPC = _sender_record  # type: ignore[attr-defined]
        module.maybe_consume_signed_record = _consume_sender_record  # type: ignore[attr-defined]
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    yamux = libp2p.stream_muxer.yamux.yamux
    if not hasattr(yamux._py_yamux_env, "cache_info"):
        yamux._py_yamux_env = functools.lru_cache(maxsize=64)(yamux._py_yamux_env)
        yamux._py_yamux_env_set = functools.lru_cache(maxsize=64)(yamux._py_yamux_env_set)


#: Queued RPCs to one peer are sent as one RPC up to this size (go-libp2p-pubsub merges its
#: queue the same way, up to its 1 MiB message limit).
MERGE_MAX_BYTES = 64 * 1024
#: A peer is busy while each write to it follows the one before by less than this (seconds):
#: about 100 RPCs a second or more. A busy peer's next write waits ``HOLD`` for more RPCs to
#: join it, as Nagle's algorithm does for TCP: under a sustained flow each hop adds at most
#: ``HOLD`` of latency and sends fewer, larger RPCs (measured at a relay of 400 records a
#: second: 1.27 ms of CPU a record without the wait, 0.89 with 3 ms, 0.80 with 4 ms). A
#: quiet peer (gossip at tens of records a second) never waits.
BUSY_GAP = 0.010
HOLD = 0.004
#: RPCs a peer's outbound queue holds before libp2p drops more (py-libp2p's default: 32). A
#: record's RPC is a few hundred bytes, at most 64 KiB and some.
OUTBOUND_QUEUE_RPCS = 256
#: Bytes asked of the stream at once by the pubsub reader (see ``_BufferedStream``).
READ_CHUNK = 64 * 1024


async def _merged(queue: Any, first: rpc_pb2.RPC, held: list[rpc_pb2.RPC]) -> rpc_pb2.RPC:
    """``first`` with the RPCs queued behind it merged in (``MergeFrom`` appends the repeated
    fields: messages, subscriptions, control), up to ``MERGE_MAX_BYTES``; an RPC that would
    not fit is put in ``held`` for the next write.

    The queued RPCs are not changed: the merge is a new RPC. py-libp2p puts one RPC object in
    every peer's queue when it announces a subscription, so merging into it would send one
    peer's messages to all of them."""
    if not len(queue):
        return first
    merged: rpc_pb2.RPC | None = None
    size = first.ByteSize()
    while len(queue) and size < MERGE_MAX_BYTES:
        nxt = await queue.pop()  # returns at once: the queue is not empty
        if nxt is None:
            break
        extra = nxt.ByteSize()
        if size + extra > MERGE_MAX_BYTES:
            held.append(nxt)
            break
        if merged is None:
            merged = rpc_pb2.RPC()
            merged.CopyFrom(first)
        merged.MergeFrom(nxt)
        size += extra
    return first if merged is None else merged


def _widen(queue: Any) -> None:
    """Let a peer's outbound queue hold ``OUTBOUND_QUEUE_RPCS`` RPCs instead of 32.

    py-libp2p drops an RPC pushed to a full queue. With merged RPCs a relay receives up to
    hundreds of messages in one read and forwards them all before its sending loop runs
    again, so 32 overflowed in a burst of 200 (one message lost in a test); py-libp2p 0.8.1
    has no setting for the size, so the queue's own ``max_size`` is raised."""
    inner = getattr(queue, "_queue", None)
    if inner is not None and getattr(inner, "max_size", OUTBOUND_QUEUE_RPCS) < OUTBOUND_QUEUE_RPCS:
        inner.max_size = OUTBOUND_QUEUE_RPCS


class _BufferedStream:
    """The stream pubsub reads RPCs from, answering its small reads from one larger read.

    libp2p reads each RPC's varint length a byte at a time and then its body, three or more
    stream reads an RPC, each through the stream's lock and Yamux's buffer. Here one read
    takes whatever has arrived (up to ``READ_CHUNK``) and the small reads are served from it;
    everything else is the stream's own."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream
        self._data = b""
        self._pos = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if self._pos >= len(self._data):
            self._data = await self._stream.read(READ_CHUNK)
            self._pos = 0
            if not self._data:
                return b""
        end = len(self._data) if n is None else min(len(self._data), self._pos + n)
        out = self._data[self._pos : end]
        self._pos = end
        return out


class CommonsGossipSub(GossipSub):
    """GossipSub that sends IDONTWANT only for messages of ``IDONTWANT_MIN_BYTES`` or more."""

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        if current_message_size.get() < IDONTWANT_MIN_BYTES:
            return
        await super()._emit_idontwant_for_message(msg_id, topic_ids)


class CommonsPubsub(Pubsub):
    """Pubsub whose push_msg cannot crash the service and which delivers to our own inbox.

    libp2p's ``notify_subscriptions`` feeds a 32-slot channel per topic with ``send_nowait``
    (dropping silently when full) and loses the forwarding peer; we replace it with a flag and
    deliver after ``push_msg`` has validated and forwarded the message, awaiting our inbox.
    """

    on_delivered: Callable[[ID, rpc_pb2.Message], Awaitable[None]]
    on_error: Callable[[], None]

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        outcome = Outcome()
        token = current_outcome.set(outcome)
        size_token = current_message_size.set(len(msg.data))
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception:  # e.g. a malformed key in a remote message: never kill pubsub
            self.on_error()
            logger.warning("libp2p failed on a message from %s", msg_forwarder, exc_info=True)
            return
        finally:
            current_message_size.reset(size_token)
            current_outcome.reset(token)
        local = publish_outcome.get()
        if local is not None and msg_forwarder == self.my_id:
            local.rejected, local.notified = outcome.rejected, outcome.notified
        elif outcome.notified:
            await self.on_delivered(msg_forwarder, msg)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        outcome = current_outcome.get()
        if outcome is not None:
            outcome.notified = True

    async def continuously_read_stream(self, stream: INetStream) -> None:
        await super().continuously_read_stream(_BufferedStream(stream))  # type: ignore[arg-type]

    async def handle_sending_messages(self, peer_id: ID, stream: INetStream, queue: Any) -> None:
        """Upstream's per-peer sending loop, except that the RPCs queued when a write
        begins go out as one RPC (one Yamux frame, one Noise message, one read and parse at
        the peer) instead of one write each, and that a busy peer's writes wait ``HOLD`` for
        more to merge (see ``BUSY_GAP``)."""
        _widen(queue)
        held: list[rpc_pb2.RPC] = []
        last = -1.0
        try:
            while True:
                rpc = held.pop() if held else await queue.pop()
                if rpc is None:
                    return
                now = trio.current_time()
                if now - last < BUSY_GAP:
                    await trio.sleep(HOLD)
                rpc = await _merged(queue, rpc, held)
                if not await self.write_msg(stream, rpc):
                    return
                last = trio.current_time()
        except Exception:
            logger.debug("sending loop for %s ended with an error", peer_id, exc_info=True)
            self._handle_dead_peer(peer_id)


class ConnectionNotifee(INotifee):
    """Reports each connection opened (+1) or closed (-1); libp2p awaits this on the connection
    path, so the callback must not block."""

    def __init__(self, on_change: Callable[[str, int], None]) -> None:
        self._on_change = on_change

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._on_change(str(conn.muxed_conn.peer_id), +1)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._on_change(str(conn.muxed_conn.peer_id), -1)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


async def _never_dial() -> None:
    """Replaces the AutoConnector, which dials every peer that enters the peerstore."""


def build_host(
    *,
    seed: bytes,
    max_connections: int,
    dial_timeout: float,
    negotiation_timeout: float,
    degree: int,
    degree_low: int,
    degree_high: int,
    heartbeat_seconds: int,
    seen_ttl_seconds: int,
    max_inbound_rpc_bytes: int,
) -> tuple[IHost, GossipSub, CommonsPubsub]:
    private = Ed25519PrivateKey.from_bytes(seed)
    key_pair = KeyPair(private, private.get_public_key())
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},  # the default also offers plaintext
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(
            max_connections=max_connections,
            min_connections=0,
            low_watermark=0,
            high_watermark=max_connections,
            max_connections_per_peer=1,  # otherwise every dial waits 250 ms (happy eyeballs)
            dial_timeout=dial_timeout,
            outbound_stream_protocol_negotiation_timeout=negotiation_timeout,
            inbound_stream_protocol_negotiation_timeout=negotiation_timeout,
        ),
    )
    host.get_network().auto_connector.maybe_connect = _never_dial  # type: ignore[attr-defined]
    # py-libp2p 0.8.1 holds an inbound slot for the swarm's whole lifetime (the handler waits
    # for the swarm to finish before releasing it), so after max_connections inbound
    # connections, however short-lived, every new one is refused. The transport enforces
    # max_connections on live connections instead.
    host.get_network()._inbound_limiter = trio.CapacityLimiter(UNLIMITED_INBOUND)  # type: ignore[attr-defined]
    _install_rpc_shortcuts()
    _install_frame_events()
    gossip = CommonsGossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],  # the same order on every node
        degree=degree,
        degree_low=degree_low,
        degree_high=degree_high,
        heartbeat_interval=heartbeat_seconds,  # libp2p's default is 120 s
        spam_protection_enabled=False,  # drops >10 msg/s silently; the node has its own limits
        eclipse_protection_enabled=False,  # IP diversity means nothing on a LAN or loopback
    )
    pubsub = CommonsPubsub(
        host,
        gossip,
        seen_ttl=seen_ttl_seconds,
        strict_signing=True,  # the only mode that go/js peers and other py nodes accept
        msg_id_constructor=message_id,
        validation_cache_ttl=_VALIDATION_CACHE_DISABLED_TTL,
        validation_cache_size=1,
        max_inbound_rpc_size=max_inbound_rpc_bytes,
    )
    return host, gossip, pubsub


async def run_mdns(
    host: IHost,
    addrs: list[str],
    interfaces: tuple[str, ...],
    on_found: Callable[[str, list[str]], None],
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,  # trio-stubs (via libp2p) lacks TaskStatus
) -> None:
    """Announce ``addrs`` (dialable, wildcards expanded) for ``host`` and report peers found by
    mDNS until cancelled; never dials.

    We assemble libp2p's broadcaster and listener ourselves instead of ``enable_mDNS=True``:
    ``new_host`` builds ``Zeroconf()`` on every interface with no way to choose, and its
    registration is synchronous, stalling the trio loop for ~1.7 s. Zeroconf work runs in
    worker threads here; its callbacks arrive on a zeroconf thread and are handed to trio.
    """
    token = trio.lowlevel.current_trio_token()
    own_id = host.get_id()

    def found(info: Libp2pPeerInfo) -> None:  # on a zeroconf thread
        if info.peer_id == own_id:
            return
        addrs = [str(a) for a in info.addrs]
        with contextlib.suppress(trio.RunFinishedError):  # the transport is stopping
            trio.from_thread.run_sync(on_found, str(info.peer_id), addrs, trio_token=token)

    def start() -> tuple[Zeroconf, PeerBroadcaster, PeerListener]:
        zc = Zeroconf(interfaces=list(interfaces)) if interfaces else Zeroconf()
        name = f"{stringGen(63)}.{SERVICE_TYPE}"
        tcp_ports = (multiaddr.Multiaddr(a).value_for_protocol("tcp") for a in addrs)
        broadcaster = PeerBroadcaster(
            zeroconf=zc,
            service_type=SERVICE_TYPE,
            service_name=name,
            peer_id=str(own_id),
            port=int(next((p for p in tcp_ports if p), 0)),
            listen_addrs=addrs,  # not host=: it would announce 0.0.0.0 for a wildcard listen
        )
        listener = PeerListener(
            peerstore=host.get_peerstore(),
            zeroconf=zc,
            service_type=SERVICE_TYPE,
            service_name=name,
            ttl=MDNS_TTL_SECONDS,
        )
        return zc, broadcaster, listener

    def stop(zc: Zeroconf, broadcaster: PeerBroadcaster, listener: PeerListener) -> None:
        broadcaster.unregister()
        listener.stop()
        zc.close()

    peerDiscovery.register_peer_discovered_handler(found)
    try:
        parts = await trio.to_thread.run_sync(start)
        try:
            task_status.started()  # registering probes the LAN for ~1.6 s: do not wait for it
            await trio.to_thread.run_sync(parts[1].register)
            while True:
                await trio.sleep(MDNS_CLEANUP_SECONDS)
                try:  # bounds the listener's memory of services seen on the LAN
                    parts[2].cleanup_stale_entries(max_age=2 * MDNS_TTL_SECONDS)
                except Exception as exc:
                    logger.debug("mDNS cleanup failed: %r", exc)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(functools.partial(stop, *parts))
    finally:
        peerDiscovery.unregister_peer_discovered_handler(found)


def check_ports_free(listen: list[multiaddr.Multiaddr], error: type[Exception]) -> None:
    """Raise ``error`` if a fixed TCP port in ``listen`` is taken.

    libp2p listens with SO_REUSEPORT, so a second node on the same port starts "fine" and the
    kernel then splits inbound connections between the two. A plain bind detects it.
    """
    for addr in listen:
        names = [p.name for p in addr.protocols()]
        family = "ip6" if "ip6" in names else "ip4" if "ip4" in names else None
        if family is None or "tcp" not in names or int(addr.value_for_protocol("tcp")) == 0:
            continue
        ip, port = addr.value_for_protocol(family), int(addr.value_for_protocol("tcp"))
        with socket.socket(socket.AF_INET6 if family == "ip6" else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((str(ip), port))
            except OSError as exc:
                raise error(f"cannot listen on {addr}: {exc.strerror}") from exc


async def close_listeners(host: IHost) -> None:
    """Close the host's listening sockets.

    In 0.8.1, leaving ``host.run()`` skips this: the Swarm's cleanup runs in a cancelled
    scope and stops at its first checkpoint, so the socket kept accepting (and completing
    Noise handshakes for a stopped node) until trio.run ended, and the port stayed taken.
    """
    listeners: dict[str, Any] = getattr(host.get_network(), "listeners", {})
    for listener in list(listeners.values()):
        try:
            await listener.close()
        except Exception as exc:
            logger.debug("closing a listener: %r", exc)


def full_queues(pubsub: Pubsub, high_water: int, stuck: set[ID]) -> list[ID]:
    """Peers (not in ``stuck``) whose outbound RPC queue holds ``high_water`` or more RPCs.

    Forgets, in ``stuck``, peers that left or whose queue has drained since.
    """
    queues = pubsub.peer_queues
    stuck.difference_update([p for p in stuck if p not in queues or len(queues[p]) == 0])
    return [p for p, q in list(queues.items()) if len(q) >= high_water and p not in stuck]


# --------------------------------------------------------------------------------------------
# What a peer serves, and whether its connection is alive when it serves no ping. Ping
# (/ipfs/ping/1.0.0) is an opt-in service in js-libp2p and rust-libp2p; a Yamux ping is not:
# the Yamux spec has every implementation answer a PING frame flagged SYN with one flagged ACK,
# on the connection itself, whatever protocols the peer serves. py-libp2p 0.8.1 sends one only
# every 30 s (to measure the round trip), so we send our own when we want to know, and wait for
# any frame at all to arrive after it: the answer, gossip, anything. A stalled connection (a
# partition) delivers none.

#: Attribute of a secured connection: the trio.Event set when its next Yamux frame arrives.
_FRAME_EVENT = "_commons_frame_event"
_yamux_read_exactly = libp2p.stream_muxer.yamux.yamux.read_exactly  # type: ignore[attr-defined]
_ping_nonces = itertools.count(1 << 31)  # py-libp2p's own pings count up from 1


async def _read_exactly_noting_frames(reader: Any, n: int, *args: Any, **kwargs: Any) -> bytes:
    """Yamux's ``read_exactly`` (it reads every frame's header and body with it), which also
    wakes a probe waiting on that connection: one attribute lookup a frame otherwise."""
    data = await _yamux_read_exactly(reader, n, *args, **kwargs)
    event = getattr(reader, _FRAME_EVENT, None)
    if event is not None:
        event.set()
    return data


def _install_frame_events() -> None:
    libp2p.stream_muxer.yamux.yamux.read_exactly = _read_exactly_noting_frames  # type: ignore[attr-defined]


async def yamux_probe(host: IHost, peer_id: ID) -> bool:
    """Send a Yamux ping on the peer's connections and return True once any of them receives
    a frame; False at once if none is open. It waits without a bound: the caller sets one.

    The ping's answer also updates py-libp2p's round-trip estimate (it times an answer from
    the last ping sent), which is why the send time is set as its own pings set it."""
    conns = [c.muxed_conn for c in host.get_network().get_connections(peer_id)]
    muxed = [m for m in conns if isinstance(m, Yamux) and not m.is_closed]
    if not muxed:
        return False
    events = [_frame_event(m.secured_conn) for m in muxed]
    for m in muxed:
        nonce = next(_ping_nonces) % (1 << 32)
        await m._write_frame(
            struct.pack(YAMUX_HEADER_FORMAT, 0, YAMUX_TYPE_PING, YAMUX_FLAG_SYN, 0, nonce)
        )
        m._ping_sent_time = trio.current_time()
    async with trio.open_nursery() as nursery:
        for event in events:
            nursery.start_soon(_wait_then_cancel, event, nursery.cancel_scope)
    return True


def _frame_event(secured: Any) -> trio.Event:
    """The event the connection's next frame sets: shared by the probes waiting on it (it is
    unset, so whatever sets it arrives after each of them began)."""
    event: trio.Event | None = getattr(secured, _FRAME_EVENT, None)
    if event is None or event.is_set():
        event = trio.Event()
        setattr(secured, _FRAME_EVENT, event)
    return event


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def peer_protocols(host: IHost, peer_id: ID) -> list[str] | None:
    """The protocols the peer listed in its last identify message, or None before one came
    (or when it listed none): py-libp2p replaces the peerstore's list with each message."""
    try:
        protocols = host.get_peerstore().get_protocols(peer_id)
    except PeerStoreError:
        return None
    return [str(p) for p in protocols] or None


def protocol_refused(exc: BaseException) -> bool:
    """Whether ``new_stream`` failed because the peer answered "na" to every protocol offered
    (multistream-select's "not supported"), rather than for a broken or slow connection.

    py-libp2p 0.8.1 raises StreamFailure from a MultiselectClientError for both; only the
    message of the latter tells them apart."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, MultiselectClientError):
            return str(cause).startswith("protocols not supported")
        cause = cause.__cause__
    return False


def known_addrs(host: Any, peer_id: Any) -> list[Any]:
    """The addresses the peerstore holds for ``peer_id`` (none when it knows no such peer)."""
    data = host.get_peerstore().peer_data_map.get(peer_id)
    return [] if data is None else list(data.get_addrs())


def forget_addrs(host: Any, peer_id: Any, addrs: list[Any]) -> None:
    """Take ``addrs`` out of the peerstore's entry for ``peer_id``.

    ``BasicHost.connect`` files the addresses it is given before it dials; after a failed
    dial they would stay, be reported as the peer's once it connects some other way, and so
    reach our peer book. py-libp2p 0.8.1 can only clear a peer's addresses all at once."""
    if not addrs:
        return
    data = host.get_peerstore().peer_data_map.get(peer_id)
    if data is None:
        return
    keep = [a for a in data.get_addrs() if a not in addrs]
    data.clear_addrs()
    data.add_addrs(keep)


def forget_failed_dial(host: Any, peer_id: Any) -> None:
    """Lift py-libp2p's 60 s refusal to redial a peer whose last dial failed."""
    unblock = getattr(host.get_network(), "unblock_peer", None)
    if unblock is not None:
        unblock(peer_id)


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for inner in group.exceptions:
        leaves.extend(_leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner])
    return leaves


def raise_unwrapped(
    group: BaseExceptionGroup[Any], error: type[Exception], body: BaseException | None
) -> NoReturn:
    """Re-raise one exception for the groups that libp2p's nested nurseries build.

    ``body`` is what the caller's ``async with`` block raised, if anything. Alone, it leaves
    as itself, and so does anything that is not an Exception (Cancelled, KeyboardInterrupt);
    whatever libp2p raised becomes ``error``, chained to the group.
    """
    leaves = _leaves(group)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)] or leaves
    if len(real) == 1 and (real[0] is body or not isinstance(real[0], Exception)):
        leaf = real[0]
        context = leaf.__context__
        try:
            raise leaf
        finally:  # keep the leaf's own context rather than the group we unwrapped
            leaf.__context__ = context
    if all(isinstance(e, Exception) for e in real):
        ours = [e for e in real if e is not body]
        raise error(
            f"libp2p failed: {'; '.join(f'{type(e).__name__}: {e}' for e in ours)}"
        ) from group
    raise group
