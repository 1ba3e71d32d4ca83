"""Runs ``/commons/sync/1`` sessions: negentropy per scope, then record transfer both ways.

The frames and their bounds are defined in :mod:`protocol.sync`; the set reconciliation in
:mod:`protocol.negentropy`. This module is the trio shell around them: it reads and writes
frames on a transport stream, asks the store for item lists and records, and hands received
records to the :class:`~node.ingest.Ingestor`, which validates them exactly as gossip does.

One session = one stream. The client sends ``hello``, drives every shared scope's
negentropy session at once (all scopes' messages for a round travel in one ``neg`` frame, so
a sync costs as many round trips as the slowest scope, not the sum), then fetches what it
lacks with ``want`` and pushes what the peer lacks with ``push``, then says ``bye``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from node.ingest import Ingestor, Pipeline, raise_single
from node.metrics import Metrics
from node.storage import Store
from node.transport import Stream, StreamError
from protocol import negentropy
from protocol.errors import NegentropyError, RemoteProtocolError
from protocol.sync import (
    MAX_FRAME,
    MAX_WANT,
    Ack,
    Bye,
    ErrorFrame,
    Frame,
    FrameReader,
    Hello,
    Neg,
    Push,
    Recs,
    SyncError,
    Want,
    encode_frame,
    pack_records,
    shared_scopes,
)

__all__ = ["SyncResult", "Syncer"]

log = logging.getLogger(__name__)

#: Seconds to wait for the peer's next frame before giving up on the session.
FRAME_TIMEOUT = 30.0
#: Bytes asked of the stream per read.
READ_CHUNK = 1 << 16
#: Room kept in a neg frame for the map keys and headers.
NEG_FRAME_BUDGET = MAX_FRAME - 16 * 1024
#: Bytes a scope's entry in a ``neg`` frame costs beside its message (pair, index, bin head).
NEG_ITEM_OVERHEAD = 16
#: The largest negentropy message of one scope (the spec's frameSizeLimit): a whole frame.
NEG_FRAME_LIMIT = NEG_FRAME_BUDGET - NEG_ITEM_OVERHEAD
#: The most scopes one ``neg`` frame asks about: each reply may then still be 4 KiB (the
#: smallest frameSizeLimit negentropy allows) and all of them fit one frame.
NEG_MAX_SCOPES = NEG_FRAME_BUDGET // (negentropy.MIN_FRAME_SIZE_LIMIT + NEG_ITEM_OVERHEAD)


def reply_limit(scopes: int) -> int:
    """The frameSizeLimit of each reply in a ``neg`` answer to ``scopes`` scopes.

    The replies share one frame: with one scope the reply may fill it (an empty node then
    receives 100,000 ids in 4 rounds rather than 13 of 256 KiB), with many each gets its
    share. ``NEG_MAX_SCOPES`` keeps every share at least negentropy's minimum.
    """
    share = NEG_FRAME_BUDGET // max(1, scopes) - NEG_ITEM_OVERHEAD
    return max(negentropy.MIN_FRAME_SIZE_LIMIT, min(NEG_FRAME_LIMIT, share))


#: Ids asked for by a session's first ``want`` (later ones ask for ``MAX_WANT``).
FIRST_WANT = 512
#: A responder serves at most this many negentropy rounds per session.
MAX_ROUNDS = 64
#: Refusals of a synced record that do not end the session (see ``_check_rejections``): a
#: timestamp too far ahead, and text characters the format did not always refuse (nodes that
#: accepted such records before the character rule still hold and offer them, honestly).
TOLERATED_REFUSALS = ("future-timestamp", "control-char:", "line-break:", "bidi-control:")
#: Error codes that end a session without blaming the peer for misbehaving.
INNOCENT_CODES = frozenset({"timeout", "closed", "peer-error"})
#: A scope's negentropy item list (about 230 bytes an item in memory) stays cached between
#: sessions while it has at most this many items; a bigger one is dropped as soon as no
#: session uses it, so an idle node does not carry it.
KEEP_STORAGE_ITEMS = 20_000
#: Items kept in all cached lists together (least recently used dropped first).
MAX_KEPT_ITEMS = 50_000
#: Negentropy messages remembered for unchanged item lists: a responder's reply is a function
#: of its items and the message, and an initiator's first message of its items, so periodic
#: sessions between peers that hold the same records need no item list at all.
MAX_MEMO_BYTES = 1 << 20
MAX_MEMO_MESSAGE = 64 * 1024
#: The reply of a responder that holds exactly the initiator's items: the version byte alone.
NOTHING_DIFFERS = bytes((negentropy.PROTOCOL_VERSION,))
_INITIATE = b""


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

    async def expect(self, kind: type[Frame]) -> Frame:
        frame = await self.recv()
        if isinstance(frame, ErrorFrame):
            raise SyncError("peer-error", f"peer reported {frame.code}: {frame.message}")
        if not isinstance(frame, kind):
            raise SyncError("unexpected-frame", f"expected {kind.__name__}, got {frame}")
        return frame


@dataclass(eq=False)
class _Items:
    """One scope's negentropy storage at one store version, shared by concurrent sessions."""

    scope: str
    version: tuple[int, int]
    storage: negentropy.Storage | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    users: int = 0


class _ItemCache:
    """Builds each scope's ``negentropy.Storage`` once per store version (in a worker thread,
    a page of the index at a time) and lends it to every session that needs it meanwhile."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: OrderedDict[str, _Items] = OrderedDict()

    async def acquire(self, scope: str) -> _Items:
        while True:
            version = self.store.scope_version(scope)
            entry = self._entries.get(scope)
            if entry is None or entry.version != version:
                entry = _Items(scope, version, users=1)
                self._entries[scope] = entry
                box: list[negentropy.Storage] = []
                try:
                    await trio.to_thread.run_sync(self._build, scope, box)
                    entry.storage = box.pop()
                except BaseException:
                    entry.users -= 1
                    if self._entries.get(scope) is entry:
                        del self._entries[scope]
                    raise
                finally:
                    entry.ready.set()
                self._entries.move_to_end(scope)
                return entry
            entry.users += 1
            try:
                await entry.ready.wait()
            except BaseException:
                entry.users -= 1
                raise
            if entry.storage is not None:
                self._entries.move_to_end(scope)
                return entry
            entry.users -= 1  # its build failed: try again

    def _build(self, scope: str, box: list[negentropy.Storage]) -> None:
        # Handed over in ``box``, not returned: trio's idle worker thread keeps its last
        # job's result referenced, which would keep a dropped item list alive (25 MB at
        # 100,000 items). From the whole list rather than pages: fewer survivors scattered
        # among the freed memory, so more of it goes back to the system.
        box.append(negentropy.Storage(self.store.items(scope)))

    def release(self, entry: _Items) -> None:
        entry.users -= 1
        if entry.users > 0:
            return
        too_big = entry.storage is None or len(entry.storage) > KEEP_STORAGE_ITEMS
        if too_big and self._entries.get(entry.scope) is entry:
            del self._entries[entry.scope]
            if entry.storage is not None:
                entry.storage = None
                self.store.release_memory()
        kept = sum(len(e.storage) for e in self._entries.values() if e.storage is not None)
        for scope, old in list(self._entries.items()):
            if kept <= MAX_KEPT_ITEMS:
                break
            if old.users == 0 and old.storage is not None:
                kept -= len(old.storage)
                del self._entries[scope]


class _Memo:
    """Small negentropy messages by (scope, store version, key), bounded in bytes."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, tuple[int, int], bytes], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, scope: str, version: tuple[int, int], key: bytes) -> bytes | None:
        found = self._items.get((scope, version, key))
        if found is not None:
            self._items.move_to_end((scope, version, key))
        return found

    def put(self, scope: str, version: tuple[int, int], key: bytes, message: bytes) -> None:
        if len(message) > MAX_MEMO_MESSAGE or (scope, version, key) in self._items:
            return
        self._items[(scope, version, key)] = message
        self._bytes += len(message)
        while self._bytes > MAX_MEMO_BYTES:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)


class Syncer:
    """Both roles of the sync protocol for one node."""

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor,
        metrics: Metrics,
        hello: Callable[[], Hello],
        on_misbehaviour: Callable[[str, RemoteProtocolError], None] | None = None,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.metrics = metrics
        self.hello = hello
        self.on_misbehaviour = on_misbehaviour
        self._items = _ItemCache(store)
        self._memo = _Memo()

    def _blame(self, peer: str, exc: RemoteProtocolError) -> None:
        """Report a peer that broke the protocol (not one that merely timed out or left)."""
        if exc.code in INNOCENT_CODES or self.on_misbehaviour is None:
            return
        self.on_misbehaviour(peer, exc)

    # ----------------------------------------------------------------------------------------
    # Client

    async def run_client(self, stream: Stream) -> SyncResult:
        """Reconcile with the peer at the other end of ``stream``; close it when done.

        Raises :class:`SyncError` (or another ``RemoteProtocolError``) if the peer misbehaves
        and :class:`StreamError` if the stream breaks; records received before that are kept.
        """
        channel = _Channel(stream)
        result = SyncResult(peer=stream.peer_id)
        outcome = "error"
        try:
            await self._client(channel, result)
            outcome = "ok"
        except (RemoteProtocolError, NegentropyError) as exc:
            await _send_error(channel, exc)
            self._blame(stream.peer_id, exc)
            raise
        finally:
            result.bytes_sent = channel.sent
            result.bytes_received = channel.received
            self.metrics.inc("commons_sync_sessions_total", role="client", outcome=outcome)
            self.metrics.inc("commons_sync_bytes_sent_total", channel.sent)
            self.metrics.inc("commons_sync_bytes_received_total", channel.received)
            self.metrics.inc("commons_sync_rounds_total", result.rounds)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await _close(stream)
        return result

    async def _client(self, channel: _Channel, result: SyncResult) -> None:
        ours = self.hello()
        await channel.send(ours)
        theirs = await channel.expect(Hello)
        assert isinstance(theirs, Hello)
        scopes = shared_scopes(ours, theirs)
        result.scopes = len(scopes)
        sessions: dict[str, negentropy.Negentropy] = {}
        borrowed: list[_Items] = []
        started = time.perf_counter()
        try:
            have, need = await self._reconcile(channel, result, scopes, sessions, borrowed)
        finally:
            sessions.clear()  # not kept through the transfer
            for entry in borrowed:
                self._items.release(entry)
        reconciled = time.perf_counter()
        result.received = await self._fetch(channel, need)
        fetched = time.perf_counter()
        result.sent = await self._push(channel, have)
        await channel.send(Bye())
        log.debug(
            "sync with %s: %d rounds in %.3f s (need %d, have %d), fetch %.3f s, push %.3f s",
            channel.stream.peer_id,
            result.rounds,
            reconciled - started,
            len(need),
            len(have),
            fetched - reconciled,
            time.perf_counter() - fetched,
        )

    async def _session(
        self, scope: str, borrowed: list[_Items], *, initiate: bool
    ) -> tuple[negentropy.Negentropy, bytes | None]:
        """A negentropy session over ``scope``'s items (borrowed until the sync ends)."""
        entry = await self._items.acquire(scope)
        borrowed.append(entry)
        assert entry.storage is not None
        session = negentropy.Negentropy(entry.storage, frame_size_limit=NEG_FRAME_LIMIT)
        if not initiate:
            return session, None
        first = session.initiate()
        self._memo.put(scope, entry.version, _INITIATE, first)
        return session, first

    async def _reconcile(
        self,
        channel: _Channel,
        result: SyncResult,
        scopes: list[str],
        sessions: dict[str, negentropy.Negentropy],
        borrowed: list[_Items],
    ) -> tuple[list[bytes], list[bytes]]:
        """Negentropy rounds for every scope at once; the ids we have and need."""
        pending: dict[str, bytes] = {}
        for scope in scopes:
            # An unchanged scope's first message is remembered: no item list needed unless
            # the peer's reply shows a difference.
            first = self._memo.get(scope, self.store.scope_version(scope), _INITIATE)
            if first is None:
                sessions[scope], first = await self._session(scope, borrowed, initiate=True)
            assert first is not None
            pending[scope] = first
        index = {scope: number for number, scope in enumerate(scopes)}
        have: list[bytes] = []
        need: list[bytes] = []
        while pending:
            batch: dict[str, bytes] = {}
            size = 0
            for scope in list(pending):
                message = pending[scope]
                if batch and (
                    size + len(message) + NEG_ITEM_OVERHEAD > NEG_FRAME_BUDGET
                    or len(batch) >= NEG_MAX_SCOPES
                ):
                    break
                batch[scope] = pending.pop(scope)
                size += len(message) + NEG_ITEM_OVERHEAD
                result.neg_bytes += len(message)
            await channel.send(Neg(messages={index[scope]: m for scope, m in batch.items()}))
            reply = await channel.expect(Neg)
            assert isinstance(reply, Neg)
            result.rounds += 1
            if set(reply.messages) != {index[scope] for scope in batch}:
                raise SyncError("bad-frame", "the neg reply does not answer the scopes asked")
            for number, message in reply.messages.items():
                scope = scopes[number]
                result.neg_bytes += len(message)
                session = sessions.get(scope)
                if session is None:
                    if message == NOTHING_DIFFERS:
                        continue  # the peer holds exactly what we hold
                    session, _ = await self._session(scope, borrowed, initiate=True)
                    sessions[scope] = session
                next_message = session.reconcile(message)
                got_have, got_need = session.drain()
                have += got_have
                need += got_need
                if next_message is not None:
                    pending[scope] = next_message
        return have, need

    async def _fetch(self, channel: _Channel, need: list[bytes]) -> int:
        """Ask the peer for ``need``; store what validates. Returns how many were new.

        Pipelined within the lock-step: once a ``recs`` frame has arrived (its ids are known
        from the bytes), the next ``want`` goes out and its answer is read in the background
        while this frame's records are validated (and the previous frame's stored: see
        :class:`~node.ingest.Pipeline`), so the peer's reading and sending, the transfer,
        our validation and our writes overlap instead of taking turns. The first ``want``
        asks for fewer ids, so that this overlap starts sooner.

        ``need`` is what the negentropy sessions found missing from our item lists; a record
        that arrived by gossip meanwhile is fetched again and counted as a duplicate, which
        is cheaper than looking up every id first (0.2 s for 100,000).
        """
        queue = list(dict.fromkeys(need))
        if not queue:
            return 0
        new = 0
        self.ingestor.expect(len(queue))
        pipeline = Pipeline(self.ingestor, source="sync")
        try:
            async with trio.open_nursery() as nursery:
                ask = queue[:FIRST_WANT]
                incoming: _Incoming | None = await _request(nursery, channel, ask)
                while incoming is not None:
                    reply = await incoming.frame()
                    if not reply.records:
                        # The peer has none of what it advertised: drop these ids, go on.
                        del queue[: len(ask)]
                    else:
                        returned = {hashlib.sha256(raw).digest() for raw in reply.records}
                        if not returned <= set(ask):
                            raise SyncError(
                                "bad-frame", "the peer answered want with records not asked for"
                            )
                        # Asked but not sent (the frame was full): asked again first.
                        queue[: len(ask)] = [i for i in ask if i not in returned]
                    incoming = None
                    if queue:
                        ask = queue[:MAX_WANT]
                        incoming = await _request(nursery, channel, ask)
                    if reply.records:
                        refused, stored = await pipeline.feed(list(reply.records))
                        new += len(stored.new) if stored is not None else 0
                        self.metrics.inc("commons_sync_records_fetched_total", len(reply.records))
                        if refused:  # store the good ones of the frames fed, then end
                            more, stored = await pipeline.flush()
                            new += len(stored.new) if stored is not None else 0
                            _check_rejections(channel.stream.peer_id, refused + more)
                refused, stored = await pipeline.flush()
                new += len(stored.new) if stored is not None else 0
                _check_rejections(channel.stream.peer_id, refused)
        except BaseExceptionGroup as group:
            raise_single(group)
        return new

    async def _push(self, channel: _Channel, have: list[bytes]) -> int:
        sent = 0
        for start in range(0, len(have), MAX_WANT):
            raws = await trio.to_thread.run_sync(
                self.store.raw_many, have[start : start + MAX_WANT]
            )
            while raws:
                taken, n = pack_records(raws)
                await channel.send(Push(records=tuple(taken)))
                await channel.expect(Ack)
                sent += n
                del raws[:n]
        self.metrics.inc("commons_sync_records_sent_total", sent)
        return sent

    # ----------------------------------------------------------------------------------------
    # Server

    async def serve(self, stream: Stream) -> None:
        """Answer one sync session on an inbound stream until ``bye``, error or timeout."""
        channel = _Channel(stream)
        outcome = "error"
        try:
            await self._serve(channel)
            outcome = "ok"
        except (RemoteProtocolError, NegentropyError) as exc:
            log.info("sync with %s ended: %s", stream.peer_id, exc)
            await _send_error(channel, exc)
            self._blame(stream.peer_id, exc)
        except StreamError as exc:
            log.info("sync stream with %s broke: %s", stream.peer_id, exc)
        finally:
            self.metrics.inc("commons_sync_sessions_total", role="server", outcome=outcome)
            self.metrics.inc("commons_sync_bytes_sent_total", channel.sent)
            self.metrics.inc("commons_sync_bytes_received_total", channel.received)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await _close(stream)

    async def _serve(self, channel: _Channel) -> None:
        borrowed: dict[str, _Items] = {}
        try:
            await self._serve_frames(channel, borrowed)
        finally:
            self._release_all(borrowed)

    def _release_all(self, borrowed: dict[str, _Items]) -> None:
        for entry in borrowed.values():
            self._items.release(entry)
        borrowed.clear()

    async def _answer(
        self,
        scope: str,
        message: bytes,
        limit: int,
        sessions: dict[str, negentropy.Negentropy],
        borrowed: dict[str, _Items],
    ) -> bytes:
        """Our reply to ``message`` for ``scope``, at most ``limit`` bytes: a responder's reply
        depends only on its items, the message and the limit, so an unchanged scope answers
        a known message from memory."""
        key = hashlib.sha256(message + limit.to_bytes(4, "big")).digest()
        entry = borrowed.get(scope)
        version = entry.version if entry is not None else self.store.scope_version(scope)
        reply = self._memo.get(scope, version, key)
        if reply is not None:
            return reply
        session = sessions.get(scope)
        if session is None or entry is None:
            entry = borrowed[scope] = await self._items.acquire(scope)
            assert entry.storage is not None
            session = negentropy.Negentropy(entry.storage, frame_size_limit=limit)
            sessions[scope] = session
        session.frame_size_limit = limit
        reply = session.reconcile(message) or b""
        self._memo.put(scope, entry.version, key, reply)
        return reply

    async def _serve_frames(self, channel: _Channel, borrowed: dict[str, _Items]) -> None:
        theirs = await channel.expect(Hello)
        assert isinstance(theirs, Hello)
        ours = self.hello()
        await channel.send(ours)
        allowed = shared_scopes(ours, theirs)
        sessions: dict[str, negentropy.Negentropy] = {}
        rounds = 0
        while True:
            frame = await channel.recv()
            if isinstance(frame, Bye):
                return
            if not isinstance(frame, Neg):
                # Reconciliation is over (want and push come after it): the item lists
                # are not kept through the transfer.
                sessions.clear()
                self._release_all(borrowed)
            if isinstance(frame, Neg):
                rounds += 1
                if rounds > MAX_ROUNDS:
                    raise SyncError("too-many", f"more than {MAX_ROUNDS} negentropy rounds")
                if len(frame.messages) > NEG_MAX_SCOPES:
                    raise SyncError(
                        "too-many",
                        f"{len(frame.messages)} scopes in a neg frame (at most "
                        f"{NEG_MAX_SCOPES}, so that the replies fit one frame)",
                    )
                limit = reply_limit(len(frame.messages))
                replies: dict[int, bytes] = {}
                for number, message in frame.messages.items():
                    if number >= len(allowed):
                        raise SyncError("bad-scope", f"no shared scope number {number}")
                    replies[number] = await self._answer(
                        allowed[number], message, limit, sessions, borrowed
                    )
                await channel.send(Neg(messages=replies))
            elif isinstance(frame, Want):
                raws = await trio.to_thread.run_sync(self.store.raw_many, list(frame.ids))
                taken, _ = pack_records(raws) if raws else ([], 0)
                await channel.send(Recs(records=tuple(taken)))
                self.metrics.inc("commons_sync_records_sent_total", len(taken))
            elif isinstance(frame, Push):
                got = await self.ingestor.ingest(list(frame.records), source="sync")
                _check_rejections(channel.stream.peer_id, got.rejected)
                self.metrics.inc("commons_sync_records_fetched_total", len(frame.records))
                await channel.send(Ack(new=len(got.new)))
            elif isinstance(frame, ErrorFrame):
                raise SyncError("peer-error", f"peer reported {frame.code}: {frame.message}")
            else:
                raise SyncError("unexpected-frame", f"{type(frame).__name__} from a client")


class _Incoming:
    """The answer to a ``want``, read by a background task."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Recs | None = None
        self.error: Exception | None = None

    async def frame(self) -> Recs:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


async def _request(nursery: trio.Nursery, channel: _Channel, ask: list[bytes]) -> _Incoming:
    """Send ``want`` for ``ask`` and start reading its ``recs`` in the background."""
    await channel.send(Want(ids=tuple(ask)))
    incoming = _Incoming()

    async def receive() -> None:
        try:
            frame = await channel.expect(Recs)
            assert isinstance(frame, Recs)
            incoming.reply = frame
        except Exception as exc:  # handed to the waiting session
            incoming.error = exc
        finally:
            incoming.done.set()

    nursery.start_soon(receive)
    return incoming


def _check_rejections(peer: str, rejected: list[tuple[int, str]]) -> None:
    """End the session if the peer sent invalid records.

    A record refused only for its timestamp (more than ten minutes ahead of our clock) is
    skipped, not held against the peer: its author's clock may be wrong while the peer is
    honest, and the record may be accepted later. So is one refused for the characters of
    its text, which an older node accepted and may still hold.
    """
    hard = [reason for _, reason in rejected if not reason.startswith(TOLERATED_REFUSALS)]
    if len(hard) < len(rejected):
        first = next(reason for _, reason in rejected if reason.startswith(TOLERATED_REFUSALS))
        log.info("skipped %d records from %s (first: %s)", len(rejected) - len(hard), peer, first)
    if hard:
        log.warning("sync peer %s sent %d invalid records (first: %s)", peer, len(hard), hard[0])
        raise SyncError("invalid-record", f"peer sent invalid records: {hard[0]}")


async def _send_error(channel: _Channel, exc: Exception) -> None:
    code = getattr(exc, "code", "error")
    message = getattr(exc, "message", str(exc))
    if code in ("closed", "peer-error"):
        return
    with trio.move_on_after(1):
        with contextlib.suppress(StreamError, RemoteProtocolError):
            await channel.send(ErrorFrame(code=code, message=message))


async def _close(stream: Stream) -> None:
    with contextlib.suppress(StreamError):
        await stream.close()
