"""Patch: the Kademlia DHT speaks Commons' own protocol id, ``/commons/kad/1``; a provider
lookup asks the network even when we provide the key ourselves, and leaves the local store
as it found it; DHT messages are capped far below the library's limits; only DHT servers
enter routing tables.

Why: a Commons DHT must not be the public IPFS one (it is not ours to load, and its peers
would fill our routing tables with strangers). py-libp2p 0.8.1's ``KadDHT`` takes a
``protocol_prefix`` but ignores it: its stream handler and every query use the constant
``PROTOCOL_ID = "/ipfs/kad/1.0.0"`` that each module imports from ``libp2p.kad_dht.common``
(``routing_table`` imports it at call time, when it checks that a peer serves the DHT).

Upstream bug: ``protocol_prefix`` is stored and never read (``kad_dht.py``, and
``validate_config`` only logs when it differs).

Second, ``ProviderStore.find_providers`` answers from the local store whenever it holds any
record for the key, and a node that provides a key holds its own: every lookup of a
project the node follows returned only itself, so two followers never found each other
(tests/node/test_dht.py failed that way). ``find_providers`` here hides our own record
during the lookup (other local records, which a DHT server holds for others, still answer).

Third, py-libp2p reads a DHT answer of up to 4 MiB and walks every entry in it: a FIND_NODE
answer of 4 MiB lists some 80,000 peers, each checked against a list (quadratic), parsed,
put in the peerstore and offered to the routing table, which stalls the trio loop (and with
it gossip and sync) for minutes; a GET_PROVIDERS answer's providers are all kept in the
local provider store (20 a key), where a lie then answers every later lookup for 48 h. Here
every DHT message read is at most ``MAX_MESSAGE_BYTES`` (an honest answer, 20 peers and 20
providers with their signed records, is under 16 KiB) and is cut to ``MAX_ENTRIES`` closer
peers, ``MAX_ENTRIES`` providers and ``MAX_ADDRS`` addresses an entry before the library
sees it; a lookup's providers are not kept in the local store (``find_providers``).

A lookup also dials every peer the answers name, ten at a time for up to twenty rounds:
lies name peers that do not exist, or real addresses under wrong peer ids (each a full
handshake with an innocent node). ``budget_dials`` gives the lookups' and provides' query
streams a budget of ``MAX_DIALS`` new connections an operation (``Dht`` starts one each);
beyond it a query to an unconnected peer fails at once, as an unreachable one would.

Fourth, a server adds every peer that opens a DHT stream to its routing table, without
checking that it serves the DHT (``skip_server_mode_check=True`` in ``_do_handle_stream``):
but a client opens them too. Clients then filled the seeds' tables and were handed out as
closer peers; lookups dialled them (connecting nodes by accident, not by the lookup's
result) and failed on each. ``guard_routing_table`` admits a peer from a stream only once
identify listed the DHT protocol for it.

How: ``install()`` sets the constant in the modules that read it, before any ``KadDHT`` is
built; the process holds one node, so one id for all. On upgrade: ``UPSTREAM`` fingerprints
those modules whole, since a new reader of the id anywhere in them would go on speaking the
IPFS protocol; tests/node/test_dht.py checks that nodes answer ``/commons/kad/1`` and refuse
``/ipfs/kad/1.0.0``.
"""

from __future__ import annotations

import contextvars
import importlib
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import MessageTooLarge
from libp2p.kad_dht import KadDHT
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

PROTOCOL_ID = TProtocol("/commons/kad/1")
_READERS = ("common", "kad_dht", "peer_routing", "provider_store", "value_store")
#: The modules that read DHT messages with ``read_varint_prefixed_bytes_limited``.
_MESSAGE_READERS = ("kad_dht", "peer_routing", "provider_store", "value_store")

#: The largest DHT message read (request or answer); larger ones are refused unread.
MAX_MESSAGE_BYTES = 64 * 1024
#: Closer peers and providers taken from one message (Kademlia's k), addresses an entry.
MAX_ENTRIES = 20
MAX_ADDRS = 8
#: New connections one lookup or provide may open (a provide in a network of 100,000 nodes
#: sends about 52 messages, docs/SCALING.md; most go to peers already connected).
MAX_DIALS = 64

#: Where this task's DHT operation reports refused answers and dials: ``report(reason)``
#: with reason ``too-large``, ``over-cap``, ``unparsable`` or ``dial-budget``. Set by
#: ``node/net/dht.py`` around its own lookups and provides (trio tasks inherit it); unset
#: while serving others.
REPORT: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "commons_kad_report", default=None
)
#: This task's DHT operation: ``[new connections it may still open, queries it sent]``;
#: None: no budget, nothing counted.
DIALS_LEFT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "commons_kad_dials_left", default=None
)


class DialBudgetSpent(Exception):
    """A DHT operation asked for more new connections than ``MAX_DIALS``."""


class _BudgetedHost:
    """The host as the DHT's queries see it: a stream to an unconnected peer spends one of
    the operation's dials (``DIALS_LEFT``)."""

    def __init__(self, host: Any) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)

    async def new_stream(self, peer_id: ID, protocols: Any) -> Any:
        left = DIALS_LEFT.get()
        if left is not None:
            if peer_id not in self._host.get_connected_peers():
                if left[0] <= 0:
                    _report("dial-budget")
                    raise DialBudgetSpent(f"no dial left for {peer_id} in this DHT operation")
                left[0] -= 1
            left[1] += 1
        return await self._host.new_stream(peer_id, protocols)


def budget_dials(dht: KadDHT) -> None:
    """Make ``dht``'s lookups and provides open streams through :class:`_BudgetedHost`."""
    budgeted = _BudgetedHost(dht.host)
    dht.peer_routing.host = budgeted  # type: ignore[assignment]
    dht.provider_store.host = budgeted  # type: ignore[assignment]


UPSTREAM = {
    "libp2p.kad_dht.common": "c4ec371cb832510906f8637d5020296b5e72f354d4f123f014e98a6817a8414e",
    "libp2p.kad_dht.kad_dht": "398eb982a48177fd13aeb7c06282fd1eb1e026a2d32952b1eed7541a94232ee3",
    "libp2p.kad_dht.peer_routing": (
        "83c9652164cfa343f7ee885f28fe059fb13603a9bb41883143f8a0cde05bf10f"
    ),
    "libp2p.kad_dht.provider_store": (
        "917480c9b8a6f2619e90be76aa44753239f939d7f543200b35ac6511f1203997"
    ),
    "libp2p.kad_dht.value_store": (
        "2fcab07c254d1193128bbf9de07b2d07e1cc8912e420246119565673ae7d983c"
    ),
    "libp2p.kad_dht.routing_table": (
        "a14506acb5ea31ae43327cbce41f4501a29d1c212eeb44f68759c7c8e4e71f68"
    ),
}


def install() -> None:
    """Make every DHT of this process speak ``PROTOCOL_ID`` and read bounded messages
    (idempotent)."""
    for name in _READERS:
        module = importlib.import_module(f"libp2p.kad_dht.{name}")
        if not hasattr(module, "PROTOCOL_ID"):
            raise RuntimeError(f"libp2p.kad_dht.{name} no longer has PROTOCOL_ID: review kad.py")
        setattr(module, "PROTOCOL_ID", PROTOCOL_ID)  # noqa: B010 - the module's constant
    for name in _MESSAGE_READERS:
        module = importlib.import_module(f"libp2p.kad_dht.{name}")
        if not hasattr(module, "read_varint_prefixed_bytes_limited"):
            raise RuntimeError(f"libp2p.kad_dht.{name} reads messages otherwise: review kad.py")
        setattr(module, "read_varint_prefixed_bytes_limited", read_bounded)  # noqa: B010


def _report(reason: str) -> None:
    report = REPORT.get()
    if report is not None:
        report(reason)


async def read_bounded(reader: Any, max_length: int) -> bytes:
    """``read_varint_prefixed_bytes_limited`` within ``MAX_MESSAGE_BYTES``, the message cut
    to ``MAX_ENTRIES`` closer peers and providers and ``MAX_ADDRS`` addresses an entry."""
    try:
        data = await read_varint_prefixed_bytes_limited(reader, min(max_length, MAX_MESSAGE_BYTES))
    except MessageTooLarge:
        _report("too-large")
        raise
    return _cut(data)


def _cut(data: bytes) -> bytes:
    message = Message()
    try:
        message.ParseFromString(data)
    except DecodeError:
        _report("unparsable")
        return data  # the library refuses it the same way (its parse fails too)
    cut = False
    for entries in (message.closerPeers, message.providerPeers):
        if len(entries) > MAX_ENTRIES:
            del entries[MAX_ENTRIES:]
            cut = True
        for entry in entries:
            if len(entry.addrs) > MAX_ADDRS:
                del entry.addrs[MAX_ADDRS:]
                cut = True
    if not cut:
        return data
    _report("over-cap")
    return message.SerializeToString()


def guard_routing_table(dht: KadDHT, listed: Callable[[ID], list[str] | None]) -> None:
    """Admit a peer that opened a DHT stream to ``dht``'s routing table only when identify
    (``listed``) says it serves ``PROTOCOL_ID``: a client opens DHT streams too."""
    table = dht.routing_table
    add_peer = table.add_peer

    async def guarded(peer: PeerInfo | ID, *, skip_server_mode_check: bool = False) -> bool:
        if skip_server_mode_check:
            pid = peer.peer_id if isinstance(peer, PeerInfo) else peer
            if str(PROTOCOL_ID) not in (listed(pid) or ()):
                return False
        return bool(await add_peer(peer))

    table.add_peer = guarded  # type: ignore[method-assign,assignment]


async def find_providers(dht: KadDHT, key: bytes, count: int) -> list[PeerInfo]:
    """Providers of ``key`` from the network, unless others than us are known locally (a
    server holds records others gave it); what the lookup learns is not kept."""
    store = dht.provider_store
    ours = str(dht.local_peer_id)
    local = store.providers.get(key)
    mine = local.pop(ours, None) if local is not None else None
    if local is not None and not local:
        del store.providers[key]
    token = _LOOKING_UP.set(True)
    try:
        return list(await store.find_providers(key, count))
    finally:
        _LOOKING_UP.reset(token)
        if mine is not None:
            store.providers.setdefault(key, {})[ours] = mine


#: True in the tasks of our own provider lookup (trio tasks inherit it).
_LOOKING_UP: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "commons_kad_looking_up", default=False
)


def keep_only_given_providers(dht: KadDHT) -> None:
    """The provider store keeps the records peers give it (ADD_PROVIDER), not those our
    lookups were told about: the library stores every provider an answer names, and a lie
    kept there would answer our later lookups of the key for 48 h."""
    store = dht.provider_store
    add_provider = store.add_provider

    def add_given(key: bytes, provider: PeerInfo) -> None:
        if not _LOOKING_UP.get():
            add_provider(key, provider)

    store.add_provider = add_given  # type: ignore[method-assign]
