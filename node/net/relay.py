"""Reaching nodes behind NAT: circuit relay v2, and a dial-back test of our own reachability.

A node behind a home router accepts no connection. Three parts fix that, all bounded:

- **Relay (hop)**: a seed relays for others (``hop = true``, the default with ``--seed``):
  at most ``max_reservations`` peers hold a slot at once, each circuit carries at most
  ``max_circuit_bytes`` and lasts at most ``max_circuit_seconds``, a reservation lasts
  ``reservation_seconds`` unless renewed, a peer without a slot may ask once every
  ``RESERVE_INTERVAL_SECONDS`` and any peer for ``CIRCUITS_PER_MINUTE`` circuits a minute
  (see ``_compat/circuit.py`` for the library's defects mended).
- **Reachability**: a node asks up to ``DIALBACK_PEERS`` connected peers to dial it back
  (``/commons/dialback/1``): each opens a *fresh* TCP connection to the asker's observed IP
  at the ports it listens on and runs the Noise handshake, which proves the asker is there.
  Why our own and not py-libp2p 0.8.1's AutoNAT: its server answers a dial-back with
  ``host.connect``, which returns the connection the request came over, so every node is
  judged public; and it needs four agreeing servers, which a member knowing one seed never
  has. The dial-back only ever dials the asker's own IP (no amplification against others),
  never over a relayed connection, and at most ``DIALBACKS_PER_MINUTE`` times a minute.
  Verdict: public when any peer reached us, private when every peer that answered could
  not; ``reachability`` in the config forces either.
- **Hole punching**: where both ends serve DCUtR, a relayed connection is upgraded to a
  direct one when a plain dial or a simultaneous dial through both NATs works (py-libp2p's,
  bounded in ``_compat/dcutr.py``); the relayed connection is then closed.
- **Reservation (client)**: a private node reserves a slot on up to ``MAX_RELAYS``
  connected peers that serve the hop protocol, renews each at three quarters of its life,
  and advertises ``<relay address>/p2p/<relay>/p2p-circuit`` (identify, hence peer exchange
  and the DHT's provider records, and ``commons id``); after a change it pushes identify to
  its peers, so that those already connected learn the address at once.

Dialling ``.../p2p/<relay>/p2p-circuit/p2p/<target>`` connects to the relay first, then asks
it for a circuit; the circuit becomes an ordinary connection (Noise, Yamux), on which gossip
and reconciliation run as on a direct one.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import multiaddr
import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.identity.identify_push.identify_push import push_identify_to_peers
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from node.net import _compat as compat
from node.net._compat import circuit
from node.net._compat.dcutr import CommonsDCUtR

__all__ = [
    "DIALBACK_PROTOCOL",
    "HOP_PROTOCOL",
    "Relay",
    "RelayRefused",
    "RelaySettings",
    "RelayStats",
    "is_circuit",
    "split_circuit",
]

log = logging.getLogger(__name__)

HOP_PROTOCOL = str(circuit.HOP_PROTOCOL_ID)
DIALBACK_PROTOCOL = "/commons/dialback/1"
RelayRefused = circuit.RelayRefused

MAX_RELAYS = 2  # relays a private node reserves on at once
MAX_HOP_STREAMS = 64  # hop streams a relay serves at once; more are reset
RESERVE_INTERVAL_SECONDS = 10.0  # a peer without a slot asks a relay at most this often
CIRCUITS_PER_MINUTE = 12  # circuits one peer may ask a relay for
RESERVE_RETRY_SECONDS = 60.0  # we ask a relay that refused us again after this
RESERVE_TIMEOUT_SECONDS = 10.0
CIRCUIT_TIMEOUT_SECONDS = 10.0
RELAY_CHECK_SECONDS = 2.0  # how often the reservations are looked after
RENEW_AT = 0.75  # of a reservation's life
MAX_RELAY_ADDRS = 2  # direct addresses of one relay used to build our relayed addresses

DIALBACK_PEERS = 3
DIALBACK_TIMEOUT_SECONDS = 5.0
DIALBACK_FIRST_SECONDS = 1.0  # after the first connection
DIALBACK_RECHECK_SECONDS = 600.0
DIALBACK_RETRY_SECONDS = 30.0  # while nobody answered
DIALBACKS_PER_MINUTE = 30  # that we serve, over all askers
DIALBACK_PEER_INTERVAL_SECONDS = 30.0  # that we serve to one asker
MAX_DIALBACK_PORTS = 4
_DIALBACK_ANSWERS = {1: "reachable", 0: "unreachable", 2: "refused"}

Reachability = Literal["unknown", "public", "private"]


@dataclass(frozen=True, kw_only=True)
class RelaySettings:
    """What config.toml's ``[relay]`` sets (docs/OPERATING.md)."""

    hop: bool = False  # relay for others
    max_reservations: int = 16
    max_circuits_per_peer: int = 4
    max_circuit_seconds: int = 3600
    max_circuit_bytes: int = 64 << 20
    reservation_seconds: int = 3600
    #: "auto": the dial-back test decides; "public"/"private" force the verdict.
    reachability: Literal["auto", "public", "private"] = "auto"
    #: Reserve a slot when found private (off: never use a relay for ourselves).
    reserve: bool = True
    #: Try to turn relayed connections into direct ones (DCUtR, ``_compat/dcutr.py``).
    hole_punch: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_reservations",
            "max_circuits_per_peer",
            "max_circuit_seconds",
            "max_circuit_bytes",
            "reservation_seconds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"relay {name} must be at least 1")
        if self.reachability not in ("auto", "public", "private"):
            raise ValueError("relay reachability must be auto, public or private")


@dataclass
class RelayStats:
    """Counters for /metrics (they only grow), by outcome."""

    reservations_made: dict[str, int] = field(default_factory=dict)  # ours, on relays
    circuits_dialled: dict[str, int] = field(default_factory=dict)
    dialbacks_asked: dict[str, int] = field(default_factory=dict)
    dialbacks_served: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def count(table: dict[str, int], outcome: str) -> None:
        table[outcome] = table.get(outcome, 0) + 1


def is_circuit(addr: str) -> bool:
    return "/p2p-circuit" in addr


def split_circuit(addr: str) -> tuple[str, str, str]:
    """``(relay address, relay peer id, target peer id)`` of a relayed address
    ``<relay addr>/p2p/<relay>/p2p-circuit/p2p/<target>``; ValueError otherwise."""
    head, sep, tail = addr.partition("/p2p-circuit/p2p/")
    relay = head.rpartition("/p2p/")[2]
    if not sep or "/p2p/" not in head or not relay or not tail or "/" in tail:
        raise ValueError(f"{addr[:200]!r} is not <relay address>/p2p/<relay>/p2p-circuit/p2p/<id>")
    return head, relay, tail


class Relay:
    """One node's relay service, reservations and reachability; build it before the host
    connects to anyone (identify must list the protocols), run it with :meth:`run`."""

    def __init__(
        self,
        host: IHost,
        settings: RelaySettings,
        *,
        on_reachability: Callable[[Reachability], None] | None = None,
    ) -> None:
        self.settings = settings
        self._host = host
        self.stats = RelayStats()
        self.service = circuit.CommonsCircuitRelay(
            host,
            circuit.RelayLimits(
                duration=settings.max_circuit_seconds,
                data=settings.max_circuit_bytes,
                max_circuit_conns=settings.max_circuits_per_peer,
                max_reservations=settings.max_reservations,
                reservation_ttl=settings.reservation_seconds,
            ),
            allow_hop=settings.hop,
            max_hop_streams=MAX_HOP_STREAMS,
            reserve_interval=RESERVE_INTERVAL_SECONDS,
            circuits_per_minute=CIRCUITS_PER_MINUTE,
        )
        #: Hole punching; built now, so that identify lists its protocol from the start.
        self.dcutr = CommonsDCUtR(host) if settings.hole_punch else None
        forced = settings.reachability
        self.reachability: Reachability = "unknown" if forced == "auto" else forced
        self._on_reachability = on_reachability
        self._reserved: dict[str, float] = {}  # relay peer id -> expiry (Unix seconds)
        self._refused_at: dict[str, float] = {}  # relay peer id -> trio time of last refusal
        self._last_reason: dict[str, str] = {}
        self._served: list[float] = []  # trio times of dial-backs served this minute
        self._served_to: dict[str, float] = {}
        self._reserve_wake = trio.Event()
        self._probe_wake = trio.Event()
        #: Called (on the trio thread, must not block) when our relayed addresses changed.
        self.on_addrs_changed: Callable[[], None] | None = None
        host.set_stream_handler(TProtocol(DIALBACK_PROTOCOL), self._serve_dialback)

    # ----- state ------------------------------------------------------------------------

    def reservations(self) -> dict[str, float]:
        """Our live reservations: relay peer id -> expiry (Unix seconds)."""
        now = time.time()
        return {r: e for r, e in self._reserved.items() if e > now}

    def relayed_addrs(self) -> list[str]:
        """``<relay addr>/p2p/<relay>/p2p-circuit`` for each live reservation of a connected
        relay (the host appends ``/p2p/<us>``)."""
        out: list[str] = []
        connected = {str(p) for p in self._host.get_connected_peers()}
        for relay in self.reservations():
            if relay not in connected:
                continue
            direct = [a for a in compat.known_addrs(self._host, ID.from_base58(relay))]
            usable = [str(a) for a in direct if "/tcp/" in str(a) and not is_circuit(str(a))]
            for addr in usable[:MAX_RELAY_ADDRS]:
                base = addr.partition("/p2p/")[0]
                out.append(f"{base}/p2p/{relay}/p2p-circuit")
        return out

    def hop_reservations(self) -> int:
        return circuit.held_reservations(self.service) if self.settings.hop else 0

    def _set_reachability(self, verdict: Reachability) -> None:
        if verdict == self.reachability:
            return
        log.info("reachability: %s (was %s)", verdict, self.reachability)
        self.reachability = verdict
        self._reserve_wake.set()
        if self._on_reachability is not None:
            self._on_reachability(verdict)

    # ----- running ----------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(background_trio_service(self.service))
            if self.dcutr is not None:
                await stack.enter_async_context(background_trio_service(self.dcutr))
            nursery = await stack.enter_async_context(trio.open_nursery())
            if self.settings.reachability == "auto":
                nursery.start_soon(self._probe_forever)
            if self.settings.reserve:
                nursery.start_soon(self._reserve_forever)
            task_status.started()
            await trio.sleep_forever()

    def peer_connected(self) -> None:
        """A peer connected: a probe or a reservation waiting for one may go ahead."""
        self._reserve_wake.set()
        self._probe_wake.set()

    # ----- reservations (client) --------------------------------------------------------

    def _offers_hop(self, peer: ID) -> bool:
        listed = compat.peer_protocols(self._host, peer)
        return listed is not None and HOP_PROTOCOL in listed

    async def _reserve_forever(self) -> None:
        while True:
            with trio.move_on_after(RELAY_CHECK_SECONDS):
                await self._reserve_wake.wait()
            self._reserve_wake = trio.Event()
            if self.reachability != "private":
                if self._reserved:
                    self._reserved.clear()
                    await self._addrs_changed()
                continue
            if await self._look_after_reservations():
                await self._addrs_changed()

    async def _addrs_changed(self) -> None:
        if self.on_addrs_changed is not None:
            try:
                self.on_addrs_changed()
            except Exception:
                log.warning("on_addrs_changed failed", exc_info=True)
        await self.push_identify()

    async def _look_after_reservations(self) -> bool:
        """Renew what is due, drop what is gone, reserve on new relays; True if our
        relayed addresses changed."""
        now, clock = time.time(), trio.current_time()
        connected = {str(p): p for p in self._host.get_connected_peers()}
        changed = False
        for relay, at in list(self._refused_at.items()):  # bounded by the peers of a minute
            if clock - at >= RESERVE_RETRY_SECONDS:
                del self._refused_at[relay]
                self._last_reason.pop(relay, None)
        for relay, expire in list(self._reserved.items()):
            if relay not in connected or expire <= now:
                del self._reserved[relay]
                changed = True
        for relay, expire in list(self._reserved.items()):
            life = self.settings.reservation_seconds
            if expire - now < life * (1 - RENEW_AT):
                changed |= await self._reserve(relay, connected[relay], renewal=True)
        candidates = sorted(
            r
            for r, pid in connected.items()
            if r not in self._reserved
            and clock - self._refused_at.get(r, -1e9) >= RESERVE_RETRY_SECONDS
            and self._offers_hop(pid)
        )
        for relay in candidates[: max(0, MAX_RELAYS - len(self._reserved))]:
            changed |= await self._reserve(relay, connected[relay], renewal=False)
        return changed

    async def _reserve(self, relay: str, pid: ID, *, renewal: bool) -> bool:
        try:
            expire = await circuit.reserve(self._host, pid, RESERVE_TIMEOUT_SECONDS)
        except circuit.RelayRefused as exc:
            outcome, reason = "refused", str(exc)
        except trio.TooSlowError:
            outcome, reason = "timeout", "no answer in time"
        except Exception as exc:
            outcome, reason = "failed", f"{type(exc).__name__}: {exc}"
        else:
            self.stats.count(self.stats.reservations_made, "renewed" if renewal else "ok")
            self._reserved[relay] = float(expire)
            if not renewal:
                log.info("reserved a relay slot on %s until %s", relay, time.ctime(expire))
            return not renewal
        self.stats.count(self.stats.reservations_made, outcome)
        self._refused_at[relay] = trio.current_time()
        self._last_reason[relay] = reason
        log.info("relay %s gave us no slot: %s", relay, reason)
        return self._reserved.pop(relay, None) is not None

    async def reserve_now(self, relay: str) -> float:
        """Ask the connected peer ``relay`` for a slot once, now, and return its expiry;
        RelayRefused says why not. (The reservation loop does this by itself.)"""
        return float(
            await circuit.reserve(self._host, ID.from_base58(relay), RESERVE_TIMEOUT_SECONDS)
        )

    async def push_identify(self) -> None:
        """Send our identify (addresses, protocols) to every connected peer now."""
        with trio.move_on_after(RESERVE_TIMEOUT_SECONDS):
            try:
                await push_identify_to_peers(self._host)
            except Exception as exc:
                log.debug("pushing identify: %r", exc)

    # ----- dialling through a relay -----------------------------------------------------

    async def dial(self, relay: str, target: str) -> None:
        """Open a relayed connection to ``target`` through ``relay`` (connected already)."""
        try:
            await circuit.dial_through(
                self._host, ID.from_base58(relay), ID.from_base58(target), CIRCUIT_TIMEOUT_SECONDS
            )
        except circuit.RelayRefused:
            self.stats.count(self.stats.circuits_dialled, "refused")
            raise
        except BaseException:
            self.stats.count(self.stats.circuits_dialled, "failed")
            raise
        self.stats.count(self.stats.circuits_dialled, "ok")

    # ----- reachability (dial-back) -----------------------------------------------------

    def _listen_ports(self) -> list[int]:
        ports = []
        for addr in self._host.get_transport_addrs():
            try:
                ports.append(int(addr.value_for_protocol("tcp")))
            except Exception:
                continue
        return list(dict.fromkeys(p for p in ports if p))[:MAX_DIALBACK_PORTS]

    async def _probe_forever(self) -> None:
        while True:
            if not self._host.get_connected_peers():
                await self._probe_wake.wait()
            self._probe_wake = trio.Event()
            await trio.sleep(DIALBACK_FIRST_SECONDS)
            verdicts = await self._probe()
            verdict = judge(verdicts)
            if verdict is not None:
                self._set_reachability(verdict)
            await trio.sleep(DIALBACK_RECHECK_SECONDS if verdicts else DIALBACK_RETRY_SECONDS)

    async def _probe(self) -> list[bool]:
        """Ask up to DIALBACK_PEERS connected peers (directly connected, serving the
        protocol) to dial us back; their answers (True: reached us)."""
        asked = []
        for pid in self._host.get_connected_peers():
            listed = compat.peer_protocols(self._host, pid)
            if listed and DIALBACK_PROTOCOL in listed and not circuit.relayed(self._host, pid):
                asked.append(pid)
        answers: list[bool] = []
        ports = self._listen_ports()
        for pid in asked[:DIALBACK_PEERS]:
            answer = await self._ask_dialback(pid, ports)
            self.stats.count(self.stats.dialbacks_asked, answer)
            if answer in ("reachable", "unreachable"):
                answers.append(answer == "reachable")
        return answers

    async def _ask_dialback(self, pid: ID, ports: list[int]) -> str:
        request = struct.pack(f">B{len(ports)}H", len(ports), *ports)
        try:
            with trio.fail_after(DIALBACK_TIMEOUT_SECONDS * (len(ports) + 1)):
                stream = await self._host.new_stream(pid, [TProtocol(DIALBACK_PROTOCOL)])
                try:
                    await stream.write(request)
                    answer = await stream.read(1)
                finally:
                    await stream.close()
        except trio.TooSlowError:
            return "timeout"
        except Exception as exc:
            log.debug("dial-back request to %s failed: %r", pid, exc)
            return "failed"
        return _DIALBACK_ANSWERS.get(answer[0], "failed") if len(answer) == 1 else "failed"

    async def _serve_dialback(self, stream: INetStream) -> None:
        outcome = "failed"
        try:
            with trio.fail_after(DIALBACK_TIMEOUT_SECONDS * (MAX_DIALBACK_PORTS + 1)):
                outcome = await self._dialback(stream)
                code = {"reachable": 1, "unreachable": 0}.get(outcome, 2)
                await stream.write(bytes([code]))
            await stream.close()
        except Exception as exc:
            log.debug("serving a dial-back: %r", exc)
            try:
                await stream.reset()
            except Exception as inner:
                log.debug("resetting a dial-back stream: %r", inner)
        self.stats.count(self.stats.dialbacks_served, outcome)

    async def _dialback(self, stream: INetStream) -> str:
        peer = stream.muxed_conn.peer_id
        head = await stream.read(1)
        count = head[0] if head else 0
        if not 1 <= count <= MAX_DIALBACK_PORTS:
            return "bad_request"
        body = b""
        while len(body) < 2 * count:
            chunk = await stream.read(2 * count - len(body))
            if not chunk:
                return "bad_request"
            body += chunk
        ports = [p for p in struct.unpack(f">{count}H", body) if p]
        remote = compat.remote_host(stream)
        if remote is None or circuit.relayed(self._host, peer) or not ports:
            return "refused"
        now = trio.current_time()
        self._served = [t for t in self._served if now - t < 60.0]
        if (
            len(self._served) >= DIALBACKS_PER_MINUTE
            or now - self._served_to.get(str(peer), -1e9) < DIALBACK_PEER_INTERVAL_SECONDS
        ):
            return "rate_limited"
        self._served.append(now)
        self._served_to[str(peer)] = now
        if len(self._served_to) > 4096:
            self._served_to = {p: t for p, t in self._served_to.items() if now - t < 60.0}
        family = "ip6" if ":" in remote else "ip4"
        for port in ports:
            addr = multiaddr.Multiaddr(f"/{family}/{remote}/tcp/{port}")
            if await circuit.dial_and_verify(self._host, addr, peer, DIALBACK_TIMEOUT_SECONDS):
                return "reachable"
        return "unreachable"


def judge(answers: list[bool]) -> Reachability | None:
    """The verdict from the peers' answers: public if any reached us, private if all who
    answered could not, None (keep the last verdict) when nobody answered."""
    if not answers:
        return None
    return "public" if any(answers) else "private"
