"""The store's peer address book: who connected, where they listen, whose dials fail."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Final

from node.store.base import StoreBase, guarded

__all__ = ["MAX_PEERS", "PeersMixin"]

logger = logging.getLogger(__name__)

MAX_PEERS: Final = 1_000
MAX_PEER_ADDRS: Final = 16
MAX_ADDR_LENGTH: Final = 1_000
MAX_PEER_ID_LENGTH: Final = 128
#: A peer that failed this many dials in a row (without a success between) is forgotten.
MAX_PEER_FAILURES: Final = 10


class PeersMixin(StoreBase):
    """The address book (part of :class:`node.store.sqlite.Store`)."""

    # ----------------------------------------------------------------------------------------
    # The peer address book

    @guarded
    def remember_peer(self, peer_id: str, addrs: Sequence[str], now_ms: int) -> None:
        """Note a successful connection to ``peer_id`` and the addresses it listens on.

        An empty ``addrs`` keeps the addresses known before (an inbound connection tells us
        none). The book keeps the ``MAX_PEERS`` most recently seen peers.
        """
        if not peer_id or len(peer_id) > MAX_PEER_ID_LENGTH:
            raise ValueError(f"peer id must be 1..{MAX_PEER_ID_LENGTH} characters")
        kept = [a for a in dict.fromkeys(addrs) if 0 < len(a) <= MAX_ADDR_LENGTH]
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO peers (peer_id, addrs, last_seen, last_dial_ok, failures)"
                " VALUES (?, ?, ?, ?, 0) ON CONFLICT (peer_id) DO UPDATE SET"
                " addrs = CASE WHEN excluded.addrs = '[]' THEN addrs ELSE excluded.addrs END,"
                " last_seen = excluded.last_seen, last_dial_ok = excluded.last_dial_ok,"
                " failures = 0",
                (peer_id, json.dumps(kept[:MAX_PEER_ADDRS]), now_ms, now_ms),
            )
            conn.execute(
                "DELETE FROM peers WHERE peer_id NOT IN"
                " (SELECT peer_id FROM peers ORDER BY last_seen DESC LIMIT ?)",
                (MAX_PEERS,),
            )

    @guarded
    def peer_failure(self, peer_id: str, now_ms: int) -> None:
        """Note a failed dial; a peer failing ``MAX_PEER_FAILURES`` times in a row is dropped."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE peers SET failures = failures + 1, last_failure = ? WHERE peer_id = ?",
                (now_ms, peer_id),
            )
            conn.execute(
                "DELETE FROM peers WHERE peer_id = ? AND failures >= ?",
                (peer_id, MAX_PEER_FAILURES),
            )

    @guarded
    def known_peers(self, limit: int = MAX_PEERS) -> list[tuple[str, list[str]]]:
        """Remembered peers and their addresses, most recently seen first."""
        query = "SELECT peer_id, addrs FROM peers ORDER BY last_seen DESC, peer_id LIMIT ?"
        out: list[tuple[str, list[str]]] = []
        for peer_id, text in self._db.execute(query, (max(0, min(limit, MAX_PEERS)),)):
            try:
                addrs = json.loads(text)
            except ValueError:
                logger.warning("peer %s has unreadable addresses in the store; skipped", peer_id)
                continue
            out.append((peer_id, [a for a in addrs if isinstance(a, str)]))
        return out
