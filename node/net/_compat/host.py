"""The host the transport runs: py-libp2p's, built with the node's settings and every patch of
this package applied; and the small read-only helpers the transport needs from libp2p.

Each patch lives in its own module of ``node.net._compat``, which says what it patches, why,
and how it fails on upgrade; tests/node/test_libp2p_patches.py fingerprints the upstream
code each one depends on.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from typing import Any, NoReturn

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from node.net._compat import frame_events, sender_record, yamux_env
from node.net._compat.auto_connector import disable_auto_connector
from node.net._compat.blacklist import BlacklistPubsub
from node.net._compat.buffered_reads import BufferedReadsPubsub
from node.net._compat.delivery import DeliveringPubsub
from node.net._compat.idontwant import CommonsGossipSub
from node.net._compat.inbound_limiter import lift_inbound_limit
from node.net._compat.merged_writes import MergedWritesPubsub
from node.trio_util import real_leaves, reraise

# libp2p's validation cache (300 s, rejects included) is keyed by message id, which for us is
# the payload hash: blind to the topic, and it would hide repeat offenders from our reject
# counter. Its check is `now - stamp > ttl`, so a negative ttl makes every entry stale.
_VALIDATION_CACHE_DISABLED_TTL = -1

#: SHA-256 of the upstream code this module's settings rely on (the stale check above).
UPSTREAM = {
    "libp2p.pubsub.pubsub.ValidationCache.get": (
        "b6ddbfeb1abc7c690c7dae9050818e5d08735208ae0387bcc2e00ec56eebf60a"
    ),
}


def message_id(msg: rpc_pb2.Message) -> bytes:
    """Gossip message id: SHA-256 of the payload, i.e. our record id; the same on every node."""
    return hashlib.sha256(msg.data).digest()


class CommonsPubsub(DeliveringPubsub, BufferedReadsPubsub, MergedWritesPubsub, BlacklistPubsub):
    """Pubsub with the delivery, buffered-read, merged-write and blacklist patches (in that
    order of the method resolution: each overrides different methods of ``Pubsub``)."""


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
    advertise: Callable[[list[str]], list[str]] | None = None,
) -> tuple[IHost, GossipSub, CommonsPubsub]:
    """The host, its GossipSub and Pubsub. ``advertise``, when given, chooses from the
    host's candidate addresses (its listen and observed ones, without ``/p2p/``) those it
    advertises in identify and in its signed peer record."""
    private = Ed25519PrivateKey.from_bytes(seed)
    key_pair = KeyPair(private, private.get_public_key())
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    factory = None
    if advertise is not None:
        choose = advertise

        def factory(candidates: list[multiaddr.Multiaddr]) -> list[multiaddr.Multiaddr]:
            return [multiaddr.Multiaddr(a) for a in choose([str(c) for c in candidates])]

    host = new_host(
        addrs_factory=factory,
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
    disable_auto_connector(host.get_network())
    lift_inbound_limit(host.get_network())
    sender_record.install()
    yamux_env.install()
    frame_events.install()
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


def mesh_of(pubsub: Pubsub) -> dict[str, set[ID]]:
    """The GossipSub mesh, topic -> peers, read directly: a renamed attribute must raise
    rather than read as an empty mesh."""
    router = pubsub.router
    if not isinstance(router, GossipSub):
        raise TypeError(f"pubsub runs {type(router).__name__}, not GossipSub")
    return router.mesh


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


def full_queues(pubsub: Pubsub, high_water: int, stuck: set[ID]) -> list[ID]:
    """Peers (not in ``stuck``) whose outbound RPC queue holds ``high_water`` or more RPCs.

    Forgets, in ``stuck``, peers that left or whose queue has drained since.
    """
    queues = pubsub.peer_queues
    stuck.difference_update([p for p in stuck if p not in queues or len(queues[p]) == 0])
    return [p for p, q in list(queues.items()) if len(q) >= high_water and p not in stuck]


def peer_protocols(host: IHost, peer_id: ID) -> list[str] | None:
    """The protocols the peer listed in its last identify message, or None before one came
    (or when it listed none): py-libp2p replaces the peerstore's list with each message."""
    try:
        protocols = host.get_peerstore().get_protocols(peer_id)
    except PeerStoreError:
        return None
    return [str(p) for p in protocols] or None


def remote_host(stream: INetStream) -> str | None:
    """The IP address a stream's connection comes from; None when unknown (or gone)."""
    try:
        remote = stream.get_remote_address()
    except Exception:
        return None
    return str(remote[0]) if remote else None


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


def raise_unwrapped(
    group: BaseExceptionGroup[Any], error: type[Exception], body: BaseException | None
) -> NoReturn:
    """Re-raise one exception for the groups that libp2p's nested nurseries build.

    ``body`` is what the caller's ``async with`` block raised, if anything. Alone, it leaves
    as itself, and so does anything that is not an Exception (Cancelled, KeyboardInterrupt);
    whatever libp2p raised becomes ``error``, chained to the group.
    """
    real = real_leaves(group)
    if len(real) == 1 and (real[0] is body or not isinstance(real[0], Exception)):
        reraise(real[0])
    if all(isinstance(e, Exception) for e in real):
        ours = [e for e in real if e is not body]
        raise error(
            f"libp2p failed: {'; '.join(f'{type(e).__name__}: {e}' for e in ours)}"
        ) from group
    raise group
