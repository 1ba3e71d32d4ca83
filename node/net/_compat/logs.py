"""Patch: py-libp2p's logger, re-attached to the application's logging, with expected errors
and warnings demoted to DEBUG.

Why: ``import libp2p`` sets the ``libp2p`` logger to ``propagate = False`` with no handler,
so its warnings bypass the application's logging configuration; and it logs ordinary events
at ERROR: a peer lacks a protocol, is offline, or closes the connection (churn, our bans,
shutdown). A node under churn would print a stream of errors that are nothing of the sort.
The Kademlia DHT logs at WARNING each query that fails, which on a DHT is routine (a peer
gone, a client that serves no queries, an address that no longer answers): a lookup may
log a dozen. Our own DHT adapter (``node/net/dht.py``) reports what matters.

Upstream bug: library code configuring its own logger's propagation at import, and logging
expected network outcomes at ERROR level.

On upgrade: a reworded message would slip past its regex and the noise would come back, so
tests/node/test_libp2p_patches.py checks that each pattern's literal text is still in the
source of the module that logs it, and ``UPSTREAM`` fingerprints the functions that log them.
The filter is installed when this module is imported.
"""

from __future__ import annotations

import logging
import re

#: Logger name -> the patterns of the ERROR or WARNING messages it logs for expected events.
EXPECTED_ERRORS: dict[str, tuple[str, ...]] = {
    "libp2p.host.basic_host": (r"Failed to open stream",),
    # The second: a refused or unroutable dial, as DCUtR's hole-punching dials often are.
    "libp2p.transport.tcp.tcp": (
        r"Failed to open TCP stream",
        r"Unexpected error opening TCP stream",
    ),
    "libp2p.protocol_muxer.multiselect_client": (r"MultiselectClient handshake: \w+ failed",),
    "libp2p.stream_muxer.yamux.yamux": (
        r"Error in handle_incoming for peer \S+: (ConnectionClosed|ClosedResource)",
    ),
    # Fingerprinted whole in _compat/kad.py's UPSTREAM. The first: a peer that sent
    # ADD_PROVIDER closes its stream without waiting for an answer (py-libp2p does).
    "libp2p.kad_dht.kad_dht": (r"Failed to read DHT message from stream",),
    "libp2p.kad_dht.peer_routing": (r"Failed to open stream to",),
    "libp2p.kad_dht.provider_store": (
        r"Error getting providers from",
        r"Failed to get providers from",
        r"Error sending ADD_PROVIDER to",
        r"Failed to send ADD_PROVIDER to",
    ),
    # A peer closing or resetting a relay (hop) stream: the ordinary end of an exchange or a
    # circuit, one or two messages a stream (the handlers are fingerprinted in circuit.py).
    "libp2p.relay.circuit_v2.protocol": (
        r"Error reading from hop stream",
        r"Unexpected error reading from stream",
        r"Unexpected error handling hop stream",
        r"Error relaying data",
        r"Error writing to destination stream",
        r"Error sending status message",
    ),
}

#: SHA-256 of ``inspect.getsource`` of each upstream function that logs those messages.
UPSTREAM = {
    "libp2p.host.basic_host.BasicHost.new_stream": (
        "df9efa1bac504f42d57955e643c524d27dc5ca3d44e65b0ab7c9cf0be2eabb2e"
    ),
    "libp2p.transport.tcp.tcp.TCP._dial_resolved": (
        "04b5a8f8812a5c3a881983bc7d1099bc80162e23cf884f4b3c47f1310d28b0e9"
    ),
    "libp2p.protocol_muxer.multiselect_client.MultiselectClient.handshake": (
        "5d48f19d9e670152a5491fb046e168fef9b3043cad83815dbada6c818d80c5ba"
    ),
    "libp2p.stream_muxer.yamux.yamux.Yamux.handle_incoming": (
        "ad15ff6943feac206c7abfbf77f2142a64bb5edbe9085e3ccdda371736abdc7b"
    ),
}


class _DemoteExpectedErrors(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and self._pattern.match(str(record.msg)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def install() -> None:
    """Re-attach the ``libp2p`` logger (at WARNING) and demote the expected errors; once."""
    root = logging.getLogger("libp2p")
    root.propagate = True
    root.setLevel(logging.WARNING)
    for name, patterns in EXPECTED_ERRORS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DemoteExpectedErrors) for f in logger.filters):
            logger.addFilter(_DemoteExpectedErrors(patterns))
