"""Patch: GossipSub sends IDONTWANT only for messages of ``IDONTWANT_MIN_BYTES`` or more.

Why: py-libp2p 0.8.1 sends an IDONTWANT to every mesh peer for every message (4 % of the
relay's samples at benchmark figure 5, and as many extra RPCs for the peers to read). A
record is usually a few hundred bytes, about the size of the IDONTWANT itself.

Upstream bug: no size threshold; go-libp2p-pubsub has one
(``GossipSubIDontWantMessageThreshold``, 1 KiB), and so does rust-libp2p.

How: ``CommonsGossipSub`` overrides the private ``_emit_idontwant_for_message``; the size of
the message being handled comes from ``current_message_size``, which the delivery patch sets
around ``push_msg``. On upgrade: if the method were renamed, the override would be dead code,
so tests/node/test_libp2p_patches.py checks that GossipSub still defines it, and ``UPSTREAM``
fingerprints it and its caller.
"""

from __future__ import annotations

import contextvars
from typing import Any

from libp2p.pubsub.gossipsub import GossipSub

#: go-libp2p-pubsub's threshold: smaller messages get no IDONTWANT.
IDONTWANT_MIN_BYTES = 1024

UPSTREAM = {
    "libp2p.pubsub.gossipsub.GossipSub._emit_idontwant_for_message": (
        "54753ff6cf35dec657de64ab2e952568280991cc518f351f6d504763f931be44"
    ),
}

#: The size of the message whose ``push_msg`` is running (unknown: as if large).
current_message_size: contextvars.ContextVar[int] = contextvars.ContextVar(
    "commons_message_size", default=1 << 30
)


class CommonsGossipSub(GossipSub):
    """GossipSub that sends IDONTWANT only for messages of ``IDONTWANT_MIN_BYTES`` or more."""

    async def _emit_idontwant_for_message(self, msg_id: bytes, topic_ids: Any) -> None:
        if current_message_size.get() < IDONTWANT_MIN_BYTES:
            return
        await super()._emit_idontwant_for_message(msg_id, topic_ids)
