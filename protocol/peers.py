"""``/commons/peers/1``: ask a connected peer for the addresses of peers it is connected to.

Why a small protocol of our own, and not GossipSub's peer exchange (PX): PX rides on PRUNE,
which a mesh sends only above ``degree_high`` (12) or at back-off, so the seed of a star of
six nodes never prunes anyone and nobody ever learns a second peer; PX is also per topic
(two nodes following different projects share only the meta mesh) and py-libp2p 0.8.1 has
it off by default with no bound on the records a PRUNE carries. A request/response over one
stream is asked on purpose, by the side that needs peers, and bounded on both sides.

Why plain validated addresses, not signed peer records: dialling an address runs the Noise
handshake, which proves the peer id at its end, so a lie costs the asker one failed dial
(bounded: the node dials few learned addresses at once and backs off per address) and can
never make it talk to the wrong peer. A signature would prove only that the peer once
listened there, which the dial proves better.

Wire form, one exchange per stream: the asker sends one frame, the answerer one frame, then
the stream closes. A frame is a 4-byte big-endian length and that many bytes of canonical
MessagePack (``protocol.codec``):

=======  ==================================================  =====================
frame    fields                                              size
=======  ==================================================  =====================
ask      ``t`` = "ask", ``n``: addresses wanted, 1..MAX_OFFER  a few bytes
peers    ``t`` = "peers", ``a``: multiaddr strings             at most MAX_ANSWER
=======  ==================================================  =====================

Each address is ``/ip4|ip6/<ip>/tcp/<port>/p2p/<peer id>`` or ``/dns|dns4|dns6/<name>/tcp/
<port>/p2p/<peer id>``, or a relayed address: one of those (the relay's) followed by
``/p2p-circuit/p2p/<peer id>`` (the peer reached through the relay, which cannot be dialled
directly: it is behind NAT). An answer that is not one well-formed frame within the bounds is
refused whole; an address in a good answer that breaks the rules below is dropped on its own
(:func:`check_addr` says why). Unspecified, multicast and reserved addresses are never
valid; loopback, private and link-local ones only where the caller allows them (the answerer
offers them only to a peer that reached it over such an address itself, unless configured).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import Final

from protocol import codec
from protocol.errors import InvalidRecord, RemoteProtocolError

__all__ = [
    "MAX_ADDR_CHARS",
    "MAX_ANSWER",
    "MAX_OFFER",
    "PROTOCOL_ID",
    "Answer",
    "Ask",
    "PeersError",
    "addr_group",
    "check_addr",
    "decode_frame",
    "encode_answer",
    "encode_ask",
    "frame_length",
    "is_local",
    "is_local_host",
    "provider_key",
]

PROTOCOL_ID: Final = "/commons/peers/1"
#: The most addresses one answer carries (and one ask may want).
MAX_OFFER: Final = 16
#: The longest address accepted, in characters.
MAX_ADDR_CHARS: Final = 256
#: The largest frame either side sends or accepts, in bytes (payload, without the prefix).
MAX_ANSWER: Final = 8192

_LENGTH: Final = struct.Struct(">I")
_PEER_ID_RE: Final = re.compile(r"\A[1-9A-HJ-NP-Za-km-z]{32,128}\Z")  # base58btc
_DNS_RE: Final = re.compile(r"\A(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+\Z")


class PeersError(RemoteProtocolError):
    """A peer-exchange frame, or an address in one, breaks the rules; ``code`` says which."""


@dataclass(frozen=True)
class Ask:
    want: int


@dataclass(frozen=True)
class Answer:
    #: The addresses that passed :func:`check_addr`, in the answer's order.
    addrs: tuple[str, ...]
    #: How many addresses of the answer were dropped, and the first reason.
    dropped: int = 0
    first_reason: str = ""


def encode_ask(want: int) -> bytes:
    if not 1 <= want <= MAX_OFFER:
        raise ValueError(f"want must be in 1..{MAX_OFFER}, got {want}")
    return _frame({"t": "ask", "n": want})


def encode_answer(addrs: list[str]) -> bytes:
    """An answer with as many of ``addrs`` as fit (at most MAX_OFFER, within MAX_ANSWER)."""
    taken: list[codec.Value] = []
    size = 16
    for addr in addrs[:MAX_OFFER]:
        if len(addr) > MAX_ADDR_CHARS:
            continue
        cost = len(addr.encode()) + 5
        if size + cost > MAX_ANSWER:
            break
        taken.append(addr)
        size += cost
    return _frame({"t": "peers", "a": taken})


def frame_length(prefix: bytes) -> int:
    """The payload length a 4-byte prefix announces; PeersError beyond MAX_ANSWER."""
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_ANSWER:
        raise PeersError("frame-too-large", f"peer announced a frame of {length} bytes")
    return int(length)


def decode_frame(payload: bytes, *, allow_local: bool) -> Ask | Answer:
    """Decode one frame's payload; ``allow_local``: keep loopback and private addresses."""
    try:
        value = codec.decode(payload, max_size=MAX_ANSWER, max_depth=2)
    except InvalidRecord as exc:
        raise PeersError("bad-frame", f"undecodable frame: {exc}") from None
    if not isinstance(value, dict):
        raise PeersError("bad-frame", "a frame is a map")
    kind = value.get("t")
    if kind == "ask":
        want = value.get("n")
        if not isinstance(want, int) or not 1 <= want <= MAX_OFFER:
            raise PeersError("bad-frame", f"ask needs n in 1..{MAX_OFFER}")
        return Ask(want)
    if kind == "peers":
        items = value.get("a")
        if not isinstance(items, list) or len(items) > MAX_OFFER:
            raise PeersError("bad-frame", f"peers needs a list of at most {MAX_OFFER} addresses")
        good: list[str] = []
        dropped, first = 0, ""
        for item in items:
            try:
                if not isinstance(item, str):
                    raise PeersError("bad-addr", "an address is a string")
                good.append(check_addr(item, allow_local=allow_local))
            except PeersError as exc:
                dropped += 1
                first = first or exc.code
        return Answer(tuple(dict.fromkeys(good)), dropped, first)
    raise PeersError("bad-frame", f"unknown frame type {str(kind)[:32]!r}")


def check_addr(addr: str, *, allow_local: bool) -> str:
    """``addr`` if it is a dialable address by the rules above, else PeersError."""
    if len(addr) > MAX_ADDR_CHARS:
        raise PeersError("bad-addr", f"address longer than {MAX_ADDR_CHARS} characters")
    relay, circuit, target = addr.partition("/p2p-circuit/p2p/")
    if circuit:
        if not _PEER_ID_RE.match(target) or target == relay.rpartition("/")[2]:
            raise PeersError("bad-addr", "the peer id after /p2p-circuit is not base58")
        check_addr(relay, allow_local=allow_local)  # the relay's own address, by the rules
        return addr
    parts = addr.split("/")
    if len(parts) != 7 or parts[0] or parts[3] != "tcp" or parts[5] != "p2p":
        raise PeersError("bad-addr", "not /<ip4|ip6|dns>/<host>/tcp/<port>/p2p/<peer id>")
    proto, host, port, peer = parts[1], parts[2], parts[4], parts[6]
    if not port.isdigit() or not 0 < int(port) < 65536 or port != str(int(port)):
        raise PeersError("bad-addr", "the port must be in 1..65535")
    if not _PEER_ID_RE.match(peer):
        raise PeersError("bad-addr", "the peer id is not base58")
    if proto in ("dns", "dns4", "dns6"):
        if not _DNS_RE.match(host) or host.rstrip(".").lower().endswith("localhost"):
            raise PeersError("bad-addr", "not a DNS name")
        return addr
    if proto not in ("ip4", "ip6"):
        raise PeersError("bad-addr", f"unsupported address protocol {proto[:16]!r}")
    try:
        ip = ipaddress.IPv4Address(host) if proto == "ip4" else ipaddress.IPv6Address(host)
    except ValueError:
        raise PeersError("bad-addr", f"not an {proto} address") from None
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        raise PeersError("bad-addr", "an unspecified, multicast or reserved address")
    if _local_ip(ip) and not allow_local:
        raise PeersError("local-addr", "a loopback, private or link-local address")
    return addr


def provider_key(project_id: bytes) -> bytes:
    """The DHT key under which the followers of a project announce themselves:
    ``sha256("commons/1/p/" + <the project id in lowercase hex>)``."""
    return hashlib.sha256(b"commons/1/p/" + project_id.hex().encode()).digest()


def is_local(addr: str) -> bool:
    """Whether ``addr`` is on this machine or a private network (it names an IP that is
    loopback, private or link-local). A name, or anything unparsable, is not."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return False
    try:
        return _local_ip(ipaddress.ip_address(parts[2]))
    except ValueError:
        return False


def is_local_host(host: str) -> bool:
    """Whether the IP address ``host`` (as a connection reports it) is loopback, private or
    link-local; False for anything that is not an IP address."""
    try:
        return _local_ip(ipaddress.ip_address(host))
    except ValueError:
        return False


def addr_group(addr: str) -> str | None:
    """The network an address belongs to, for diversity: its /24 (IPv4) or /48 (IPv6); None
    for local addresses (one machine or LAN is not a network to spread over) and names."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6") or is_local(addr):
        return None
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _local_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_loopback or ip.is_private or ip.is_link_local


def _frame(value: dict[str, codec.Value]) -> bytes:
    payload = codec.encode(value)
    return _LENGTH.pack(len(payload)) + payload
