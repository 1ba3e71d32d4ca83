"""Patch: tearing down a blacklisted peer tolerates the peer's own teardown meanwhile.

Why: ``Pubsub.add_to_blacklist`` starts ``_teardown_if_connected``, which resets the peer's
stream, then deletes the peer from ``peers``. The reset is a checkpoint: the stream's reader
sees it end, or the connection the node drops at a ban closes, and ``_handle_dead_peer``
deletes the peer first. The second ``del`` raises ``KeyError`` in the pubsub service's task,
which stops the whole service (seen in the reliability suite: a node banning one peer twice
while that peer's connection closed). When the teardown wins instead, it left the peer's
outbound queue open and the peer in the router, which only ``_handle_dead_peer`` clears.

Upstream bug: py-libp2p 0.8.1, ``Pubsub._teardown_if_connected`` (an unguarded ``del`` after
an ``await``).

How: the teardown removes the peer only if the stream it reset is still the peer's, and then
as ``_handle_dead_peer`` does (the outbound queue closed, the router told); it does not call
that handler, which opens a new stream to a peer still connected, as a banned one may be
for a moment. On upgrade: ``UPSTREAM`` fingerprints both methods; this override replaces
the first.
"""

from __future__ import annotations

import contextlib

from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

UPSTREAM = {
    "libp2p.pubsub.pubsub.Pubsub._teardown_if_connected": (
        "49d82691142d33f12ce8fa3cbce220f537ce74ec51f9196b4fc33bdf2e612fce"
    ),
    "libp2p.pubsub.pubsub.Pubsub._handle_dead_peer": (
        "10026d998d3016b41e6046688b704668c2a9694f136f3847b55e112601f34805"
    ),
}


class BlacklistPubsub(Pubsub):
    """Pubsub whose teardown of a blacklisted peer survives the peer's own teardown."""

    async def _teardown_if_connected(self, peer_id: ID) -> None:
        stream = self.peers.get(peer_id)
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.reset()
            if self.peers.get(peer_id) is stream:  # not torn down meanwhile
                del self.peers[peer_id]
                queue = self.peer_queues.pop(peer_id, None)
                if queue is not None:
                    queue.close()
                self.router.remove_peer(peer_id)
        self._forget_all_subscriptions(peer_id)
