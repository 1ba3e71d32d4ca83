"""Patch: circuit relay v2 (``/libp2p/circuit/relay/0.2.0/hop`` and ``.../stop``) served by
py-libp2p 0.8.1's ``CircuitV2Protocol`` with four defects mended, and the client half (reserve
a slot, dial through a relay) written here on the library's wire helpers.

Why: a node behind NAT accepts no connection; a seed it reaches can relay for it (see
``node/net/relay.py``). The library's relay server works on the wire, but:

- ``_handle_reserve`` reserves for the peer id the *message* names, so any peer could take
  slots in others' names: here a reservation is always for the peer on the connection;
- a reservation outlives its peer's connection until it expires (an hour), so departed
  peers hold the slots: reservations of peers no longer connected are dropped before a new
  one is judged (the spec makes a reservation valid only while connected);
- nothing bounds the hop streams open at once, nor how often a peer may ask: here at most
  ``max_hop_streams`` run at once (more are reset), a peer without a reservation may ask
  once every ``reserve_interval`` seconds (refused with RESERVATION_REFUSED otherwise), and
  a peer may ask for ``circuits_per_minute`` circuits a minute (RESOURCE_LIMIT_EXCEEDED);
- nothing is counted: reservations, circuits and bytes relayed are counted here.

The library's client (``CircuitV2Transport``) reserves a slot on every relay it dials
*through*, sleeps up to 10 s between attempts to pick a relay, and has no timeout on a
CONNECT answer; the two client calls here do one exchange each, under the caller's timeout.

Upstream bug: the four above, in ``libp2p.relay.circuit_v2.protocol`` and ``resources``.

How: ``CommonsCircuitRelay`` subclasses ``CircuitV2Protocol`` and wraps ``_handle_reserve``,
``_handle_hop_stream``, ``_handle_connect`` and ``_relay_data`` (counting each read through
a thin proxy). On upgrade: ``UPSTREAM`` fingerprints the overridden methods and the
resource manager's fields read here; tests/node/test_relay.py exercises reservation,
refusal and relayed dials end to end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.connection_types import ConnectionType
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeerId
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.protocol import STOP_PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode, to_proto_status
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg

__all__ = [
    "HOP_PROTOCOL_ID",
    "STOP_PROTOCOL_ID",
    "CommonsCircuitRelay",
    "HopStats",
    "RelayLimits",
    "RelayRefused",
    "advertise_relayed",
    "dial_and_verify",
    "dial_through",
    "held_reservations",
    "relayed",
    "reserve",
]

UPSTREAM = {
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol.__init__": (
        "4e75d071bd9e3d3e7fa9dd056b9e814629406bfe47dc4c2d9468049d1ca5aba9"
    ),
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol._handle_reserve": (
        "d794e2be5efb276fb30f71386379e4788e68668fd4a334d222eae79723bc7278"
    ),
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol._handle_hop_stream": (
        "a28ce9cea89206612b646a81086bc7dd5210a3800831274e29b7b5d4fb4241d9"
    ),
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol._handle_connect": (
        "4ad19b34934a7dfc56b9e38c1a210f8bfffe3ab2187fb1546107673b78ff3828"
    ),
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol._relay_data": (
        "2edf345c0da2cad07208f4ab81eda43edb9c16bc3afc9cc4717488b95b498104"
    ),
    "libp2p.relay.circuit_v2.protocol.CircuitV2Protocol.handle_incoming_connection": (
        "07149e966eb5d9f6a7bbb0f4f9517b71f492a18eaf607ddbaa6049f30ef2e2ae"
    ),
    "libp2p.network.connection.swarm_connection.SwarmConn.set_transport_info": (
        "00b345acdda70b2adfe141d219937c5d1c919ef9ac0fbdc843e1a0c762463c9a"
    ),
    "libp2p.host.basic_host.BasicHost.get_addrs": (
        "9d79f88eb0d4824b5afc8df259d18ba847a7cdbe92673d34c22a783ab96e03df"
    ),
    "libp2p.relay.circuit_v2.resources.RelayResourceManager.can_accept_reservation": (
        "5bf930c99b151c8b5fd3a5233951277f779005205556151efe93f8fe1e340d35"
    ),
}

#: Most peers remembered for the reservation rate limit (the oldest are forgotten first).
MAX_RESERVE_CLOCKS = 4096

_STATUS_NAMES = {
    StatusCode.RESERVATION_REFUSED: "reservation refused",
    StatusCode.RESOURCE_LIMIT_EXCEEDED: "over the relay's limits (its slots, circuits or rate)",
    StatusCode.PERMISSION_DENIED: "permission denied",
    StatusCode.CONNECTION_FAILED: "connection failed",
    StatusCode.NO_RESERVATION: "the target has no reservation on this relay",
    StatusCode.MALFORMED_MESSAGE: "malformed message",
    StatusCode.UNEXPECTED_MESSAGE: "unexpected message",
}


class RelayRefused(Exception):
    """The relay answered, and said no; the message says why (its status, in words)."""


@dataclass
class HopStats:
    """What the relay (hop) side did; counters only grow."""

    reservations: dict[str, int] = field(default_factory=dict)  # outcome -> count
    circuits: dict[str, int] = field(default_factory=dict)  # outcome -> count
    bytes_relayed: int = 0
    hop_streams_refused: int = 0

    def count(self, table: dict[str, int], outcome: str) -> None:
        table[outcome] = table.get(outcome, 0) + 1


class _CountingReader:
    """A stream proxy that counts the bytes read through it (the relay's own reads)."""

    def __init__(self, stream: INetStream, stats: HopStats) -> None:
        self._stream = stream
        self._stats = stats

    async def read(self, n: int | None = None) -> bytes:
        data = await self._stream.read(n)
        self._stats.bytes_relayed += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class CommonsCircuitRelay(CircuitV2Protocol):
    """The relay service: the stop role always (accepting circuits to us), the hop role
    (relaying for others) when ``allow_hop``."""

    def __init__(
        self,
        host: IHost,
        limits: RelayLimits,
        *,
        allow_hop: bool,
        max_hop_streams: int,
        reserve_interval: float,
        circuits_per_minute: int,
    ) -> None:
        super().__init__(host, limits, allow_hop=allow_hop)
        self.stats = HopStats()
        self._max_hop_streams = max_hop_streams
        self._hop_streams = 0
        self._reserve_interval = reserve_interval
        self._last_reserve: dict[ID, float] = {}
        self._circuits_per_minute = circuits_per_minute
        self._circuit_clock: dict[ID, list[float]] = {}  # source -> its CONNECTs this minute

    async def _handle_hop_stream(self, stream: INetStream) -> None:
        if self._hop_streams >= self._max_hop_streams:
            self.stats.hop_streams_refused += 1
            await stream.reset()
            return
        self._hop_streams += 1
        try:
            await super()._handle_hop_stream(stream)
        finally:
            self._hop_streams -= 1

    async def _handle_reserve(self, stream: INetStream, msg: HopMessage) -> None:
        msg.ClearField("peer")  # a reservation is for the peer on the connection, never another
        peer = stream.muxed_conn.peer_id
        manager = self.resource_manager
        for other in list(manager._reservations):
            if other != peer and manager.get_reservation(other) is None:
                del manager._reservations[other]  # expired, or its peer left
        renewal = manager.has_reservation(peer)
        now = trio.current_time()
        last = self._last_reserve.get(peer)
        if not renewal and last is not None and now - last < self._reserve_interval:
            self.stats.count(self.stats.reservations, "rate_limited")
            await write_delimited_msg(
                stream,
                HopMessage(
                    type=HopMessage.STATUS,
                    status=to_proto_status(StatusCode.RESERVATION_REFUSED),
                ),
            )
            return
        self._last_reserve.pop(peer, None)  # the most recent last, for the trimming below
        self._last_reserve[peer] = now
        while len(self._last_reserve) > MAX_RESERVE_CLOCKS:
            del self._last_reserve[next(iter(self._last_reserve))]
        await super()._handle_reserve(stream, msg)
        if manager.has_reservation(peer):
            self.stats.count(self.stats.reservations, "renewed" if renewal else "accepted")
        else:
            self.stats.count(self.stats.reservations, "full")

    async def _handle_connect(self, stream: INetStream, msg: HopMessage) -> None:
        source = stream.muxed_conn.peer_id
        now = trio.current_time()
        recent = [t for t in self._circuit_clock.get(source, ()) if now - t < 60.0]
        if len(recent) >= self._circuits_per_minute:
            self.stats.count(self.stats.circuits, "rate_limited")
            await self._send_status(
                stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, "too many circuits a minute"
            )
            await stream.close()  # not reset: the status must reach the peer first
            return
        self._circuit_clock.pop(source, None)  # the most recent last, for the trimming below
        self._circuit_clock[source] = [*recent, now]
        while len(self._circuit_clock) > MAX_RESERVE_CLOCKS:
            del self._circuit_clock[next(iter(self._circuit_clock))]
        target = ID(msg.peer.id) if msg.HasField("peer") else None
        if target is None or not self.resource_manager.can_accept_connection(target):
            self.stats.count(self.stats.circuits, "no_reservation")
        else:
            self.stats.count(self.stats.circuits, "opened")
        await super()._handle_connect(stream, msg)

    async def _relay_data(
        self,
        src_stream: INetStream,
        dst_stream: INetStream,
        peer_id: ID,
        deadline: float | None = None,
        circuit_data_limit: list[int] | None = None,
    ) -> None:
        counted: Any = _CountingReader(src_stream, self.stats)
        await super()._relay_data(counted, dst_stream, peer_id, deadline, circuit_data_limit)


def held_reservations(relay: CircuitV2Protocol) -> int:
    """Reservations ``relay`` holds at present (of connected peers, not expired)."""
    manager = relay.resource_manager
    return sum(1 for p in list(manager._reservations) if manager.get_reservation(p))


def _refusal(resp: HopMessage) -> str | None:
    """Why the relay said no, or None when it said OK."""
    status = resp.status if resp.HasField("status") else StatusCode.UNUSED
    if resp.type == HopMessage.STATUS and status == StatusCode.OK:
        return None
    try:
        return _STATUS_NAMES.get(StatusCode(status), f"status {status}")
    except ValueError:
        return f"status {status}"


async def reserve(host: IHost, relay: ID, within: float) -> int:
    """Reserve (or renew) a slot on ``relay``, a connected peer; return when it expires
    (Unix seconds). RelayRefused when the relay says no; other exceptions when the stream
    fails; trio.TooSlowError after ``within`` seconds."""
    with trio.fail_after(within):
        stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
        try:
            await write_delimited_msg(stream, HopMessage(type=HopMessage.RESERVE))
            resp = await read_delimited_msg(stream, HopMessage)
        finally:
            await stream.close()
    reason = _refusal(resp)
    if reason is not None:
        raise RelayRefused(reason)
    expire = int(resp.reservation.expire) if resp.HasField("reservation") else 0
    if expire <= time.time():
        raise RelayRefused("the reservation the relay granted has already expired")
    return expire


async def dial_through(host: IHost, relay: ID, target: ID, within: float) -> None:
    """Open a circuit to ``target`` through ``relay`` (a connected peer) and make it a
    connection to ``target`` (Noise proves the peer id, Yamux multiplexes), registered with
    the swarm like a direct one. RelayRefused when the relay says no."""
    circuit = multiaddr.Multiaddr(f"/p2p/{relay}/p2p-circuit/p2p/{target}")
    with trio.fail_after(within):
        stream = await host.new_stream(relay, [HOP_PROTOCOL_ID])
        try:
            connect = HopMessage(type=HopMessage.CONNECT, peer=CircuitPeerId(id=target.to_bytes()))
            await write_delimited_msg(stream, connect)
            resp = await read_delimited_msg(stream, HopMessage)
            reason = _refusal(resp)
            if reason is not None:
                raise RelayRefused(reason)
            raw = RawConnection(
                stream=stream,
                initiator=True,
                connection_type=ConnectionType.RELAYED,
                addresses=[circuit],
            )
            conn: Any = await host.upgrade_outbound_connection(raw, target)
            # The swarm cannot tell a circuit from its stream (the listener side tags its
            # own, in ``handle_incoming_connection``): without this the connection would
            # pass for a direct one, and DCUtR would never try to upgrade it.
            conn.set_transport_info([circuit], ConnectionType.RELAYED)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await stream.reset()
            raise


def advertise_relayed(host: IHost, extra: Callable[[], list[str]]) -> None:
    """Make ``host.get_addrs()`` (what identify and the signed peer record advertise) end
    with the relayed addresses ``extra()`` returns, each ``.../p2p-circuit``.

    ``BasicHost.get_addrs`` cuts each address at its first ``/p2p/`` and appends ours, which
    turns ``<relay addr>/p2p/<relay>/p2p-circuit`` into the relay's own address with our id:
    so they are added after it, on the instance."""
    direct = host.get_addrs
    suffix = f"/p2p/{host.get_id()}"

    def get_addrs() -> list[multiaddr.Multiaddr]:
        return [*direct(), *(multiaddr.Multiaddr(a + suffix) for a in extra())]

    host.get_addrs = get_addrs  # type: ignore[method-assign]


def relayed(host: IHost, peer: ID) -> bool:
    """Whether every connection to ``peer`` runs through a relay (False when none)."""
    conns = host.get_network().get_connections(peer)
    return bool(conns) and all(
        any("/p2p-circuit" in str(a) for a in (c.get_transport_addresses() or ())) for c in conns
    )


async def dial_and_verify(host: IHost, addr: multiaddr.Multiaddr, peer: ID, within: float) -> bool:
    """Whether a fresh TCP connection to ``addr`` reaches ``peer`` (the Noise handshake
    proves its id); the connection is closed at once and never joins the swarm, which
    already holds one to ``peer`` (``host.connect`` would just return that one)."""
    swarm: Any = host.get_network()
    raw = None
    try:
        with trio.fail_after(within):
            transport = swarm.transport_manager.transport_for_dialing(addr)
            if transport is None:
                return False
            raw = await transport.dial(addr)
            secured = await swarm.upgrader.upgrade_security(raw, True, peer)
            await secured.close()
            return True
    except Exception:
        return False
    finally:
        if raw is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0), suppress(Exception):
                await raw.close()
