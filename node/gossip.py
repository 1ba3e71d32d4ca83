"""Gossip's I/O for the node: the validator libp2p calls, the reader that stores accepted
messages, the publisher and the subscriber. What to admit, publish or subscribe to is the
service's decision (:mod:`node.service`); this module asks it and carries the answer out.

A message goes: libp2p -> :meth:`Gossip.validate` (the service screens it, then
:func:`protocol.validation.validate_message` parses it, then the service judges the verdict;
the parsed record is kept by id) -> libp2p forwards it -> the transport delivers it into
``transport.messages`` -> :meth:`Gossip.run_reader` stores batches through the
:class:`~node.ingest.Ingestor`, whose listener tells the service what was stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import trio

from node.clock import now_ms
from node.metrics import Metrics
from node.net.transport import Message, Transport, TransportError
from node.policy import BLOCKED
from node.service import REFUSED_AGAIN, Effect, NodeService
from node.store.sqlite import Store
from node.sync.ingest import Ingestor
from protocol.errors import InvalidRecord
from protocol.record import Record
from protocol.validation import topic_of, validate_message

__all__ = ["Gossip"]

log = logging.getLogger(__name__)

#: Gossip messages stored per transaction, and published per batch.
GOSSIP_BATCH = 256
#: Seconds: while gossip batches are stored this close together (40 a second or more), the
#: reader waits ``GOSSIP_LINGER`` before each for more to join it (at a relay of 400 records
#: a second: 1.07 -> 0.94 ms of CPU a record, system time halved, by fewer commits and
#: fsyncs). At the tens of records a second of ordinary gossip it never waits.
GOSSIP_BUSY_GAP = 0.025
GOSSIP_LINGER = 0.02
#: Validated-but-not-yet-stored gossip records kept for the reader (by id).
MAX_VALIDATED_CACHE = 4096
#: Records waiting to be published.
MAX_PUBLISH_QUEUE = 100_000


class Gossip:
    """The node's gossip tasks; ``execute`` carries out the effects the service returns."""

    def __init__(
        self,
        *,
        transport: Transport,
        service: NodeService,
        store: Store,
        ingestor: Ingestor,
        metrics: Metrics,
        execute: Callable[[Iterable[Effect]], None],
    ) -> None:
        self.transport = transport
        self.service = service
        self.store = store
        self.ingestor = ingestor
        self.metrics = metrics
        self.execute = execute
        self.peer_id = transport.peer_id
        self._validated: OrderedDict[bytes, Record] = OrderedDict()
        self._publishing: bytes | None = None  # the stored record being published
        self._publish_send, self._publish_recv = trio.open_memory_channel[Record](MAX_PUBLISH_QUEUE)
        # The service asks for max_subscriptions topics at most: the channel never fills.
        limit = service.config.max_subscriptions
        self._subscribe_send, self._subscribe_recv = trio.open_memory_channel[str](limit)

    # ---------------------------------------------------------------------------- receiving

    def validate(self, topic: str, data: bytes, from_peer: str) -> bool | None:
        """The GossipSub validator: runs inside libp2p for every message, must not raise.
        True accepts; False rejects (the forwarder is blamed); None drops without blame."""
        if from_peer == self.peer_id and data == self._publishing:
            # Our own publish of a record from our store: validated when it was stored
            # (libp2p runs validators on local publishes too; this saved 60 us a record).
            return True
        key = hashlib.sha256(data).digest()
        refused = self.service.gossip_arrived(topic, key, from_peer, trio.current_time())
        if refused is None:
            verdict: Record | InvalidRecord
            try:
                verdict = validate_message(topic, data, now_ms=now_ms())
            except InvalidRecord as exc:
                verdict = exc
                log.info("refused gossip from %s on %s: %s", from_peer, topic, exc)
            refused = self.service.gossip_validated(topic, key, verdict)
            if refused is None:
                assert isinstance(verdict, Record)
                self._validated[verdict.id] = verdict
                if len(self._validated) > MAX_VALIDATED_CACHE:
                    self._validated.popitem(last=False)
                return True
        if refused == REFUSED_AGAIN:
            self.metrics.inc("commons_gossip_refused_again_total")
        else:
            self.metrics.inc("commons_gossip_rejected_total", reason=refused)
        if refused == BLOCKED:
            self.metrics.inc("commons_policy_refused_total", source="gossip", reason=BLOCKED)
        return False if self.service.blames(refused) else None

    def rejected(self, peer: str) -> None:
        """The transport rejected a message ``peer`` forwarded (the reject listener)."""
        self.execute(self.service.gossip_rejected(peer, trio.current_time()))

    async def run_reader(self) -> None:
        """Store accepted gossip in batches: whatever arrived together, one transaction.

        While gossip arrives steadily (the batch before was stored less than
        ``GOSSIP_BUSY_GAP`` ago), wait ``GOSSIP_LINGER`` for more to join the batch: one
        commit and one fsync for several records. Forwarding is not delayed (libp2p forwards
        once our validator accepts); only the local commit waits.
        """
        last = -math.inf
        async for message in self.transport.messages:
            if trio.current_time() - last < GOSSIP_BUSY_GAP:
                await trio.sleep(GOSSIP_LINGER)
            batch = [message]
            while len(batch) < GOSSIP_BATCH:
                try:
                    batch.append(self.transport.messages.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            await self._store(batch)
            last = trio.current_time()

    async def _store(self, batch: Sequence[Message]) -> None:
        good: list[tuple[int, Record]] = []
        for i, message in enumerate(batch):
            if message.origin == self.peer_id:
                continue  # our own publication, stored before it was published
            record = self._validated.pop(hashlib.sha256(message.data).digest(), None)
            if record is None:
                try:  # validated by us already, but evicted from the cache since
                    record = validate_message(message.topic, message.data, now_ms=now_ms())
                except InvalidRecord:
                    continue
            good.append((i, record))
        if good:
            result = await self.ingestor.store_valid(good, source="gossip")
            self.metrics.inc("commons_gossip_accepted_total", len(result.new))

    # ---------------------------------------------------------------------------- sending

    def subscribe_soon(self, topic: str) -> None:
        self._subscribe_send.send_nowait(topic)

    async def run_subscriber(self) -> None:
        async for topic in self._subscribe_recv:
            await self.subscribe(topic)

    async def subscribe(self, topic: str) -> None:
        try:
            await self.transport.subscribe(topic)
        except (TransportError, ValueError) as exc:
            log.warning("cannot subscribe to %s: %s", topic, exc)

    def publish_soon(self, record: Record) -> None:
        # On a full queue the record stays unpublished in the store; the next start
        # publishes it, and reconciliation spreads it meanwhile.
        with contextlib.suppress(trio.WouldBlock):
            self._publish_send.send_nowait(record)

    async def publish_unpublished(self, batch: int) -> None:
        """Queue the records authored while no node ran (``published = 0`` in the store)."""
        seen: set[bytes] = set()
        while True:
            found = await trio.to_thread.run_sync(self.store.unpublished, batch)
            records = [r for r in found if r.id not in seen]
            for record in records:
                seen.add(record.id)
                await self._publish_send.send(record)
            if not records or len(records) < batch:
                return

    async def run_publisher(self) -> None:
        async for record in self._publish_recv:
            batch = [record]
            while len(batch) < GOSSIP_BATCH:
                try:
                    batch.append(self._publish_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            published = []
            for r in batch:
                self._publishing = r.raw
                try:
                    await self.transport.publish(topic_of(r), r.raw)
                    published.append(r.id)
                    self.metrics.inc("commons_published_total")
                except TransportError as exc:
                    log.warning("could not publish record %s: %s", r.id.hex()[:16], exc)
                finally:
                    self._publishing = None
            if published:
                await trio.to_thread.run_sync(self.store.mark_published, published)
