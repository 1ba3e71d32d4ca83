"""Patch: the Kademlia DHT speaks Commons' own protocol id, ``/commons/kad/1``; a provider
lookup asks the network even when we provide the key ourselves.

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

How: ``install()`` sets the constant in the modules that read it, before any ``KadDHT`` is
built; the process holds one node, so one id for all. On upgrade: ``UPSTREAM`` fingerprints
those modules whole, since a new reader of the id anywhere in them would go on speaking the
IPFS protocol; tests/node/test_dht.py checks that nodes answer ``/commons/kad/1`` and refuse
``/ipfs/kad/1.0.0``.
"""

from __future__ import annotations

import importlib

from libp2p.custom_types import TProtocol
from libp2p.kad_dht import KadDHT
from libp2p.peer.peerinfo import PeerInfo

PROTOCOL_ID = TProtocol("/commons/kad/1")
_READERS = ("common", "kad_dht", "peer_routing", "provider_store", "value_store")

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
    """Make every DHT of this process speak ``PROTOCOL_ID`` (idempotent)."""
    for name in _READERS:
        module = importlib.import_module(f"libp2p.kad_dht.{name}")
        if not hasattr(module, "PROTOCOL_ID"):
            raise RuntimeError(f"libp2p.kad_dht.{name} no longer has PROTOCOL_ID: review kad.py")
        setattr(module, "PROTOCOL_ID", PROTOCOL_ID)  # noqa: B010 - the module's constant


async def find_providers(dht: KadDHT, key: bytes, count: int) -> list[PeerInfo]:
    """Providers of ``key`` from the network, unless others than us are known locally."""
    store = dht.provider_store
    ours = str(dht.local_peer_id)
    local = store.providers.get(key)
    mine = local.pop(ours, None) if local is not None else None
    if local is not None and not local:
        del store.providers[key]
    try:
        return list(await store.find_providers(key, count))
    finally:
        if mine is not None:
            store.providers.setdefault(key, {})[ours] = mine
