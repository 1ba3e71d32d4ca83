"""Runs ``/commons/sync/1`` sessions on transport streams: a pump around the sans-IO session.

What a session does (which frames, in what order, within which limits, whose fault a failure
is) is decided in :mod:`protocol.sync_session`. This module moves frames between a stream and
a session, answers the session's questions from the store (item lists lent by
:mod:`node.sync.items`, records read in a worker thread), and hands received records to the
:class:`~node.ingest.Ingestor`, which validates them exactly as gossip does.

The client's fetch is pipelined within the lock-step: when a ``recs`` frame arrives the
session has already queued the next ``want``, so its answer is read in the background while
this frame's records are validated (and the previous frame's stored: see
:class:`~node.ingest.Pipeline`); the peer's work, the transfer, our validation and our writes
overlap instead of taking turns.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio

from node.metrics import Metrics
from node.net.transport import Stream, StreamError
from node.store.sqlite import Served, Store, StoreError
from node.sync.ingest import HELPER_BATCH, Ingestor, Pipeline
from node.sync.items import ItemCache, Lent, MessageMemo
from node.trio_util import raise_single
from protocol.errors import RemoteProtocolError
from protocol.sync import Frame, FrameReader, Hello, Push, Recs, SyncError, encode_frame
from protocol.sync_session import (
    NEED_FRAME,
    NEG_FRAME_BUDGET,
    NEG_FRAME_LIMIT,
    NEG_ITEM_OVERHEAD,
    NEG_MAX_SCOPES,
    ClientSession,
    ItemsReleased,
    NeedItems,
    NeedRecords,
    NegLimits,
    Reconciled,
    RecordsReceived,
    ServerSession,
    hard_refusals,
    is_misbehaviour,
)

__all__ = ["NEG_FRAME_BUDGET", "NEG_FRAME_LIMIT", "NEG_ITEM_OVERHEAD", "SyncResult", "Syncer"]

log = logging.getLogger(__name__)

#: Seconds to wait for the peer's next frame before giving up on the session.
FRAME_TIMEOUT = 30.0
#: Bytes asked of the stream per read.
READ_CHUNK = 1 << 16
# NEG_FRAME_BUDGET, NEG_FRAME_LIMIT and NEG_MAX_SCOPES (imported above) are read from this
# module when each session starts, so that a test can shrink the frames of a running node.


@dataclass
class SyncResult:
    peer: str
    scopes: int = 0
    rounds: int = 0
    received: int = 0  # new records stored from the peer
    sent: int = 0  # records the peer lacked and we pushed
    bytes_sent: int = 0
    bytes_received: int = 0
    neg_bytes: int = 0  # bytes of negentropy messages, both directions


class _Channel:
    """Frames over one stream, with byte counters and a per-frame timeout."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.reader = FrameReader()
        self.sent = 0
        self.received = 0

    async def send(self, frame: Frame) -> None:
        data = encode_frame(frame)
        self.sent += len(data)
        await self.stream.write(data)

    async def recv(self) -> Frame:
        with trio.move_on_after(FRAME_TIMEOUT) as scope:
            while True:
                frame = self.reader.next_frame()
                if frame is not None:
                    return frame
                data = await self.stream.read(READ_CHUNK)
                if not data:
                    raise SyncError("closed", "the peer closed the sync stream")
                self.received += len(data)
                self.reader.feed(data)
        assert scope.cancelled_caught
        raise SyncError("timeout", f"no frame from the peer in {FRAME_TIMEOUT:.0f} s")


class _Incoming:
    """The peer's next frame, read by a background task while the pump validates records."""

    def __init__(self, nursery: trio.Nursery, channel: _Channel) -> None:
        self.done = trio.Event()
        self.result: Frame | Exception | None = None
        nursery.start_soon(self._receive, channel)

    async def _receive(self, channel: _Channel) -> None:
        try:
            self.result = await channel.recv()
        except Exception as exc:  # handed to the pump when it asks for the frame
            self.result = exc
        finally:
            self.done.set()

    async def frame(self) -> Frame:
        await self.done.wait()
        if isinstance(self.result, Exception):
            raise self.result
        assert self.result is not None
        return self.result


class _Fetch:
    """The client's side of the transfer: received records go through a :class:`Pipeline`."""

    def __init__(self, ingestor: Ingestor, nursery: trio.Nursery) -> None:
        self.ingestor = ingestor
        #: Where the next recs frame is read, and records are written, meanwhile.
        self.nursery = nursery
        self.pipeline = Pipeline(ingestor, nursery, source="sync")
        self.started = time.perf_counter()
        #: Whether the rounds already announced a big fetch (:meth:`reconciling`).
        self.announced = False

    def reconciling(self, session: ClientSession) -> None:
        """After each frame of ``session``: a big fetch is announced (its helpers started) as
        soon as the rounds so far have found it big, before the last round; once announced
        (or reconciled), nothing is counted again."""
        if not self.announced and (needed := session.needed) >= HELPER_BATCH:
            self.announced = True
            self.ingestor.expect(needed)

    def begin(self, peer: str, event: Reconciled, rounds: int) -> None:
        took = f"{rounds} rounds in {time.perf_counter() - self.started:.3f} s"
        log.debug("sync with %s: %s; fetch %d, push %d", peer, took, event.need, event.have)
        if event.need:
            self.ingestor.expect(event.need)
        self.announced = True

    async def ingest(self, event: RecordsReceived) -> tuple[int, list[str]]:
        """Feed the records; report what was stored of the frames finished meanwhile (all of
        them when no more records come, or when some were refused)."""
        results = []
        if event.records:
            results.append(await self.pipeline.feed(list(event.records)))
            if results[-1][0]:  # refused: store the good ones of the frames fed, then judge
                results.append(await self.pipeline.flush())
        if not event.more:
            results.append(await self.pipeline.flush())
        new = sum(len(stored.new) for _, stored in results if stored is not None)
        return new, [reason for refused, _ in results for _, reason in refused]

    async def salvage(self, peer: str) -> None:
        """Store the valid records received before the session failed (the pipeline holds
        up to a transaction's worth of them, waiting for more), so that the next session
        need not fetch them again."""
        with trio.CancelScope(shield=True), trio.move_on_after(FRAME_TIMEOUT):
            try:
                _, stored = await self.pipeline.flush()
            except StoreError as exc:
                log.info("could not store the records received from %s: %s", peer, exc)
                return
            if stored is not None and stored.new:
                log.debug("stored %d records from %s after the failure", len(stored.new), peer)


class Syncer:
    """Both roles of the sync protocol for one node."""

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor,
        metrics: Metrics,
        hello: Callable[[], Awaitable[Hello]],
        on_misbehaviour: Callable[[str, RemoteProtocolError], None] | None = None,
        served: Callable[[], Served | None] | None = None,
    ) -> None:
        self.store = store
        #: The filter in force when records are read for a peer: whether a held record of
        #: (project, author) may be sent (local policy: a blocked one stays unserved until it
        #: is purged or unblocked); None while every held record may be (no author or
        #: project is then looked up for each record read).
        self.served = served
        self.ingestor = ingestor
        self.metrics = metrics
        self.hello = hello
        self.on_misbehaviour = on_misbehaviour
        self._items = ItemCache(store)
        self._memo = MessageMemo()

    async def run_client(self, stream: Stream) -> SyncResult:
        """Reconcile with the peer at the other end of ``stream``; close it when done.

        Raises :class:`SyncError` (or another ``RemoteProtocolError``) if the peer misbehaves
        and :class:`StreamError` if the stream breaks; records received before that are kept.
        """
        channel = _Channel(stream)
        lent = Lent(self._items, self._memo)
        session: ClientSession | None = None
        outcome = "error"
        try:
            session = ClientSession(await self.hello(), limits=_limits(), memo=lent)
            try:
                async with trio.open_nursery() as nursery:
                    fetch = _Fetch(self.ingestor, nursery)
                    try:
                        await self._pump(channel, session, lent, fetch)
                    except (RemoteProtocolError, StreamError):
                        await fetch.salvage(stream.peer_id)
                        raise
            except BaseExceptionGroup as group:
                raise_single(group)
            outcome = "ok"
        except RemoteProtocolError as exc:
            await self._failed(channel, session, exc)
            raise
        finally:
            lent.release()
            self._count(channel, "client", outcome)
            self.metrics.inc("commons_sync_rounds_total", session.rounds if session else 0)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await _close(stream)
                await self._items.trim()
        return SyncResult(
            peer=stream.peer_id,
            scopes=session.scopes,
            rounds=session.rounds,
            received=session.received,
            sent=session.pushed,
            bytes_sent=channel.sent,
            bytes_received=channel.received,
            neg_bytes=session.neg_bytes,
        )

    async def serve(self, stream: Stream) -> None:
        """Answer one sync session on an inbound stream until ``bye``, error or timeout."""
        channel = _Channel(stream)
        lent = Lent(self._items, self._memo)
        session: ServerSession | None = None
        outcome = "error"
        try:
            session = ServerSession(await self.hello(), limits=_limits(), memo=lent)
            await self._pump(channel, session, lent, None)
            outcome = "ok"
        except RemoteProtocolError as exc:
            log.info("sync with %s ended: %s", stream.peer_id, exc)
            await self._failed(channel, session, exc)
        except StreamError as exc:
            log.info("sync stream with %s broke: %s", stream.peer_id, exc)
        finally:
            lent.release()
            self._count(channel, "server", outcome)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await _close(stream)
                await self._items.trim()

    async def _pump(
        self,
        channel: _Channel,
        session: ClientSession | ServerSession,
        lent: Lent,
        fetch: _Fetch | None,
    ) -> None:
        """Drive ``session`` to its end: send what it queued, answer what it asks."""
        peer = channel.stream.peer_id
        incoming: _Incoming | None = None
        while True:
            await self._send(channel, session)
            event = session.next_event()
            if event is NEED_FRAME:
                frame = await (incoming.frame() if incoming else channel.recv())
                incoming = None
                session.receive_frame(frame)
                if fetch is not None and isinstance(session, ClientSession):
                    fetch.reconciling(session)
            elif isinstance(event, NeedItems):
                session.give_items(event.scope, await lent.storage(event.scope))
            elif isinstance(event, NeedRecords):
                raws = await trio.to_thread.run_sync(
                    partial(self.store.raw_many, list(event.ids), served=self._serving())
                )
                session.give_records(raws)
            elif isinstance(event, RecordsReceived):
                if fetch is None:
                    got = await self.ingestor.ingest(list(event.records), source="sync")
                    new, refused = len(got.new), [reason for _, reason in got.rejected]
                else:
                    if event.more:  # read the next recs while these are validated
                        incoming = _Incoming(fetch.nursery, channel)
                    new, refused = await fetch.ingest(event)
                _log_refusals(peer, refused)
                session.records_ingested(new=new, refused=refused)
                self.metrics.inc("commons_sync_records_fetched_total", len(event.records))
            elif isinstance(event, Reconciled | ItemsReleased):
                lent.release()  # item lists are not kept through the transfer
                if fetch is not None and isinstance(event, Reconciled):
                    fetch.begin(peer, event, session.rounds)
            else:
                return  # Done

    def _serving(self) -> Served | None:
        return None if self.served is None else self.served()

    async def _send(self, channel: _Channel, session: ClientSession | ServerSession) -> None:
        for frame in session.frames_to_send():
            try:
                await channel.send(frame)
            except StreamError:
                session.send_failed()
                raise
            if isinstance(frame, Recs | Push):
                self.metrics.inc("commons_sync_records_sent_total", len(frame.records))

    async def _failed(
        self,
        channel: _Channel,
        session: ClientSession | ServerSession | None,
        exc: RemoteProtocolError,
    ) -> None:
        """Tell the peer what went wrong (if it should be told); report it if it misbehaved."""
        if session is not None:
            session.abort(exc)
            with trio.move_on_after(1), contextlib.suppress(StreamError, RemoteProtocolError):
                for frame in session.frames_to_send():
                    await channel.send(frame)
        if is_misbehaviour(exc) and self.on_misbehaviour is not None:
            self.on_misbehaviour(channel.stream.peer_id, exc)

    def _count(self, channel: _Channel, role: str, outcome: str) -> None:
        self.metrics.inc("commons_sync_sessions_total", role=role, outcome=outcome)
        self.metrics.inc("commons_sync_sent_bytes_total", channel.sent)
        self.metrics.inc("commons_sync_received_bytes_total", channel.received)


def _limits() -> NegLimits:
    return NegLimits(
        frame_budget=NEG_FRAME_BUDGET, frame_limit=NEG_FRAME_LIMIT, max_scopes=NEG_MAX_SCOPES
    )


def _log_refusals(peer: str, refused: list[str]) -> None:
    """Log what the session is about to skip (records from the future, or with text characters
    an older node accepted) or refuse."""
    hard = hard_refusals(refused)
    if len(hard) < len(refused):
        first = next(reason for reason in refused if reason not in hard)
        log.info("skipped %d records from %s (first: %s)", len(refused) - len(hard), peer, first)
    if hard:
        log.warning("sync peer %s sent %d invalid records (first: %s)", peer, len(hard), hard[0])


async def _close(stream: Stream) -> None:
    with contextlib.suppress(StreamError):
        await stream.close()
