"""What the node offers its front ends: the operations the HTTP API (and through it
``commons`` while a node runs) calls on a running :class:`node.runtime.Node`.

:class:`NodeHandle` holds them apart from the reactor: it reads the node's parts and feeds
the store through the :class:`~node.ingest.Ingestor`, whose listener tells the service what
was stored (so authored records are published); it decides nothing.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import trio

from node.authoring import AuthoringError, draft, sign_draft
from node.gossip import now_ms
from node.home import Home
from node.ingest import Ingestor, IngestResult
from node.metrics import Metrics
from node.service import NodeService
from node.storage import Store
from node.syncer import Syncer, SyncResult
from node.transport import Transport, TransportError
from protocol import sync as sync_protocol
from protocol.errors import InvalidRecord, ProtocolError
from protocol.record import Record
from protocol.signing import SigningKey

__all__ = ["NodeHandle"]

#: Whole-session bound on one sync; catch-up of 100,000 records fits well inside it.
SYNC_TIMEOUT = 600.0


class NodeHandle:
    """The front ends' operations; :class:`node.runtime.Node` provides the parts below.
    Called from the node's trio loop."""

    home: Home
    key: SigningKey
    peer_id: str
    store: Store
    transport: Transport
    service: NodeService
    ingestor: Ingestor
    metrics: Metrics
    syncer: Syncer
    api_url: str | None

    async def author(self, action: str, fields: dict[str, Any]) -> Record:
        """Sign a record with the node's key, store it (committed), then queue it for gossip.

        Raises ``AuthoringError`` for bad fields.
        """
        make = partial(draft, action, fields, store=self.store, author=self.key.public_key)
        d = await trio.to_thread.run_sync(make)
        if d.project is not None and not self.service.follows(d.project):
            # The record could be neither gossiped (our own validator refuses topics we do
            # not follow) nor reconciled (we do not offer that scope): refuse it now.
            raise AuthoringError(
                f"this node does not follow project {d.project.hex()[:16]}: run it with "
                f"--follow {d.project.hex()} (or without --follow) to author there"
            )
        record = sign_draft(self.key, d, now_ms=now_ms())
        await self.ingestor.store_valid([(0, record)], source="local")
        return record

    async def submit(self, raw: bytes) -> tuple[Record, bool]:
        """Store and gossip an externally signed record. Raises ``InvalidRecord``."""
        result: IngestResult = await self.ingestor.ingest([raw], source="api")
        if result.rejected:
            _, reason = result.rejected[0]
            code, _, message = reason.partition(": ")
            raise InvalidRecord(code, message or reason)
        if result.new:
            return result.new[0], True
        return result.duplicates[0], False

    async def submit_many(self, raws: list[bytes]) -> IngestResult:
        """Store and gossip a batch of externally signed records (one commit for all).

        Each record is judged on its own: the valid ones are stored, the others come back in
        ``rejected`` with their reasons."""
        return await self.ingestor.ingest(raws, source="api")

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "running": True,
            "peers": len(self.transport.connected_peers()),
            "records": self.store.count(),
            "projects": len(self.store.project_ids()),
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": p.peer_id, "addrs": list(p.addrs)} for p in self.transport.connected_peers()
        ]

    def node_info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "peer_id": self.peer_id,
            "addrs": self.transport.listen_addrs(),
            "api": self.api_url,
        }

    async def _sync_with(self, peer: str) -> SyncResult:
        with trio.fail_after(SYNC_TIMEOUT):
            stream = await self.transport.open_stream(peer, sync_protocol.PROTOCOL_ID)
            return await self.syncer.run_client(stream)

    async def sync_now(self, maddr: str | None = None) -> dict[str, int]:
        """``commons sync``: reconcile now with one peer (dialled first) or all connected."""
        if maddr:
            peers = [await self.transport.connect(maddr)]
        else:  # every connected peer that has not said it serves no sync
            connected = self.transport.connected_peers()
            peers = [p.peer_id for p in connected if self.service.speaks_sync(p.peer_id)]
        totals = {"peers": 0, "received": 0, "sent": 0}
        errors: list[str] = []

        async def one(peer: str) -> None:
            try:
                result = await self._sync_with(peer)
            except (ProtocolError, TransportError, trio.TooSlowError) as exc:
                errors.append(f"{peer}: {exc}")
                return
            totals["peers"] += 1
            totals["received"] += result.received
            totals["sent"] += result.sent

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(one, peer)
        if errors and not totals["peers"]:
            raise TransportError("; ".join(errors[:3]))
        return totals

    def register_gauges(self) -> None:
        """The gauges /metrics reads at each scrape."""
        self.metrics.gauge(
            "commons_records",
            lambda: {(("kind", k),): float(v) for k, v in self.store.count_by_kind().items()},
        )
        self.metrics.gauge(
            "commons_peers", lambda: {(): float(len(self.transport.connected_peers()))}
        )
