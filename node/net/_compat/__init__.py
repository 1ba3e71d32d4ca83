"""The private half of the libp2p adapter: building the host, and working around py-libp2p.

Only ``node.net.transport`` imports this package; together they are the only importers of
libp2p. Each workaround of a py-libp2p 0.8.1 internal is one module here, whose docstring
names what it patches, why, the upstream bug, and how it fails on upgrade:

- ``logs``: libp2p's logger re-attached, expected errors demoted to DEBUG;
- ``sender_record``: the signed peer record built once and verified once per peer;
- ``yamux_env``: Yamux settings read once, window updates by go-yamux's rule;
- ``idontwant``: IDONTWANT only for messages of 1 KiB or more;
- ``delivery``: ``push_msg`` isolated, delivery into our inbox with backpressure;
- ``buffered_reads``: pubsub reads through a buffer;
- ``merged_writes``: queued RPCs merged into one write, with a Nagle-like hold;
- ``outbound_queue``: a peer's outbound queue widened from 32 to 256 RPCs;
- ``blacklist``: a blacklisted peer's teardown survives the peer's own teardown meanwhile;
- ``inbound_limiter``: the inbound slot leak lifted;
- ``auto_connector``: the AutoConnector never dials;
- ``dial_cache``: the 60 s negative dial cache lifted on demand;
- ``listeners``: listening sockets closed on stop;
- ``mdns``: mDNS assembled off the trio thread;
- ``frame_events``: Yamux frames wake liveness probes; the probe itself.

``host`` builds the host with all of them. Each patch module records in ``UPSTREAM`` the
SHA-256 of the upstream source it depends on; tests/node/test_libp2p_patches.py checks them,
so an upstream edit names the patch to review.
"""

from __future__ import annotations

from node.net._compat import logs
from node.net._compat.buffered_reads import READ_CHUNK
from node.net._compat.delivery import Outcome, current_outcome, publish_outcome
from node.net._compat.dial_cache import forget_failed_dial
from node.net._compat.frame_events import yamux_probe
from node.net._compat.host import (
    CommonsPubsub,
    ConnectionNotifee,
    build_host,
    check_ports_free,
    full_queues,
    mesh_of,
    message_id,
    peer_protocols,
    protocol_refused,
    raise_unwrapped,
    remote_host,
)
from node.net._compat.idontwant import IDONTWANT_MIN_BYTES, CommonsGossipSub
from node.net._compat.inbound_limiter import UNLIMITED_INBOUND
from node.net._compat.listeners import close_listeners
from node.net._compat.mdns import MDNS_CLEANUP_SECONDS, MDNS_TTL_SECONDS, run_mdns
from node.net._compat.merged_writes import BUSY_GAP, HOLD, MERGE_MAX_BYTES
from node.net._compat.outbound_queue import OUTBOUND_QUEUE_RPCS
from node.net._compat.peerstore import forget_addrs, known_addrs
from node.net._compat.sender_record import (
    MAX_TRUSTED_SENDER_RECORDS,
    SENDER_RECORD_REUSE,
    SENDER_RECORD_TRUST,
)

logs.install()

__all__ = [
    "BUSY_GAP",
    "HOLD",
    "IDONTWANT_MIN_BYTES",
    "MAX_TRUSTED_SENDER_RECORDS",
    "MDNS_CLEANUP_SECONDS",
    "MDNS_TTL_SECONDS",
    "MERGE_MAX_BYTES",
    "OUTBOUND_QUEUE_RPCS",
    "READ_CHUNK",
    "SENDER_RECORD_REUSE",
    "SENDER_RECORD_TRUST",
    "UNLIMITED_INBOUND",
    "CommonsGossipSub",
    "CommonsPubsub",
    "ConnectionNotifee",
    "Outcome",
    "build_host",
    "check_ports_free",
    "close_listeners",
    "current_outcome",
    "forget_addrs",
    "forget_failed_dial",
    "full_queues",
    "known_addrs",
    "mesh_of",
    "message_id",
    "peer_protocols",
    "protocol_refused",
    "publish_outcome",
    "raise_unwrapped",
    "remote_host",
    "run_mdns",
    "yamux_probe",
]
