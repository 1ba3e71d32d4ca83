"""Patch: the signed peer record that py-libp2p's pubsub attaches to every RPC, built once
every ``SENDER_RECORD_REUSE`` seconds, and each peer's record verified once.

Why: measured with py-spy at the relay of benchmark figure 5 (a line A - B - C at a few
hundred records a second), building the envelope anew for every RPC cost 5 % of the relay's
samples (upstream rebuilds the listen addresses from the sockets each time) and verifying
the one on every arriving RPC 11 %. The bytes of a signed record decide the result, so the
same bytes from the same peer are accepted again without another signature check.

Upstream bug: ``env_to_send_in_RPC`` and ``maybe_consume_signed_record`` do the full work
per RPC, with no cache.

How: ``install`` rebinds the two names in the two pubsub modules that call them
(``libp2p.pubsub.gossipsub`` and ``libp2p.pubsub.pubsub``). On upgrade: a moved name fails
at ``install`` (the old binding must exist); an edit of either function trips its
fingerprint in ``UPSTREAM``; and tests/node/test_libp2p_patches.py checks that no other
pubsub module calls them, which would bypass the cache silently.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import libp2p.pubsub.gossipsub
import libp2p.pubsub.pubsub
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.utils import maybe_consume_signed_record

#: Seconds our own signed peer record is reused before it is rebuilt from the listen addresses.
SENDER_RECORD_REUSE = 10.0
#: Seconds a peer's signed peer record, once verified, is accepted again without verifying.
SENDER_RECORD_TRUST = 600.0
MAX_TRUSTED_SENDER_RECORDS = 4096

#: The modules whose calls are redirected (the test checks there are no others).
PATCHED_MODULES = (libp2p.pubsub.gossipsub, libp2p.pubsub.pubsub)
#: Pubsub modules that call the two functions and are left alone: the node runs GossipSub,
#: never FloodSub. (Outside pubsub, identify sends our record once per connection.)
UNPATCHED_CALLERS = ("libp2p.pubsub.floodsub",)

UPSTREAM = {
    "libp2p.peer.peerstore.env_to_send_in_RPC": (
        "9fea9d702c187d224bec58beb9b09961e93c863bcad8a94baa90a79a287fed36"
    ),
    "libp2p.pubsub.utils.maybe_consume_signed_record": (
        "11b2181c27d75df4753635abc3ee3c7e9adaf6a0dd7829d8e6c416f161ef0f8b"
    ),
}

_trusted_records: OrderedDict[tuple[ID, bytes], float] = OrderedDict()


def _sender_record(host: IHost) -> tuple[bytes, bool]:
    """``env_to_send_in_RPC``, reusing the envelope for ``SENDER_RECORD_REUSE`` seconds, and
    only while it is still the peerstore's local record: identify (ours after a relay
    reservation changed our addresses) issues a newer one, and a peer that received it
    ignores every RPC that carries the older one (its sequence number is lower)."""
    now = time.monotonic()
    local = host.get_peerstore().get_local_record()
    cached: tuple[float, bytes, object] | None = getattr(host, "_commons_sender_record", None)
    if cached is not None and cached[0] > now and cached[2] is local:
        return cached[1], False
    envelope, fresh = env_to_send_in_RPC(host)
    local = host.get_peerstore().get_local_record()
    host._commons_sender_record = (now + SENDER_RECORD_REUSE, envelope, local)  # type: ignore[attr-defined]
    return envelope, fresh


def _consume_sender_record(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    """``maybe_consume_signed_record``, verifying each peer's record once (re-stored in the
    peerstore every ``SENDER_RECORD_TRUST`` seconds)."""
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


def install() -> None:
    """Point the pubsub modules at the two functions above (idempotent); raises
    AttributeError if a module no longer has the name it is meant to rebind."""
    for module in PATCHED_MODULES:
        for name, ours in (
            ("env_to_send_in_RPC", _sender_record),
            ("maybe_consume_signed_record", _consume_sender_record),
        ):
            getattr(module, name)  # loud if upstream moved the call
            setattr(module, name, ours)
