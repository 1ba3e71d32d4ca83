"""The one path by which records enter the store: validate, store in one transaction, notify.

Gossip, sync, the HTTP API and ``commons import`` all call :meth:`Ingestor.ingest`, so a record
is judged by exactly the same rules whichever way it arrived (``protocol.validation``), and
the node learns of new records in one place (to subscribe to new projects' topics and to
publish what was authored locally). The id of a record is acknowledged only after
``Store.add`` has committed.

Large batches are validated in worker threads: signature verification runs in libsodium
without the GIL, so two threads use both cores for the expensive part. The largest (a
catch-up's) go to a helper process for their signatures (``node.sync.verifier``), leaving the GIL
to the parsing and the rest of the node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio

from node.metrics import Metrics
from node.policy import Policy
from node.store.sqlite import MAX_BATCH as STORE_BATCH
from node.store.sqlite import Store
from node.sync.admission import Admission, judge, parse_batch, validate_batch
from node.sync.verifier import Ticket, Verifier
from node.trio_util import raise_single
from protocol.record import Record
from protocol.validation import META_SCOPE, scope_of

__all__ = ["Admission", "IngestResult", "Ingestor", "Pipeline"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Batches at least this large are validated off the trio thread.
THREAD_BATCH = 32
#: Worker threads validating at once (one per core on the 2-core reference machine).
MAX_VALIDATION_THREADS = 2
#: Batches at least this large are verified by the signature helper process, if it runs.
HELPER_BATCH = 1024
#: Records parsed between two requests to the helper (it verifies one chunk while the next
#: is parsed).
HELPER_CHUNK = 512
#: While the helper has this many records to verify, further chunks are verified here.
HELPER_BACKLOG = 2048
#: The most records stored in one transaction.
MAX_BATCH = 4096
#: The most records a :class:`Pipeline` (a fetch) stores in one transaction: the store's
#: bound, four frames of a sync.
COALESCE_RECORDS = STORE_BATCH
#: Seconds valid records of a fetch may wait for more before they are stored anyway (at the
#: next frame: a slow peer's records are stored as they were before frames were coalesced).
COALESCE_SECONDS = 5.0


@dataclass
class IngestResult:
    """What became of a batch: new records (in input order), duplicates, refusals."""

    new: list[Record] = field(default_factory=list)
    duplicates: list[Record] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, error)


def _validate_from(
    raws: Sequence[bytes], now_ms: int, accept: Callable[[Record], str | None] | None, offset: int
) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
    good, bad = validate_batch(raws, now_ms, accept)
    return [(i + offset, r) for i, r in good], [(i + offset, e) for i, e in bad]


def _parse_for_helper(
    raws: Sequence[bytes], now_ms: int, offset: int
) -> tuple[list[tuple[int, Record]], list[tuple[int, str]], list[tuple[bytes, bytes, bytes]]]:
    parsed, bad = parse_batch(raws, now_ms, offset)
    return parsed, bad, [(r.author, r.signing_input(), r.sig) for _, r in parsed]


@dataclass
class Judging:
    """A batch :meth:`Ingestor.begin` started: records judged so far, and parsed ones whose
    signatures the helper process is verifying (its ticket, or None to verify them here)."""

    good: list[tuple[int, Record]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    waiting: list[tuple[list[tuple[int, Record]], Ticket | None]] = field(default_factory=list)


def _first(item: tuple[int, Record]) -> int:
    return item[0]


class Ingestor:
    """Validates and stores batches; calls ``on_new`` with each batch of new records."""

    def __init__(
        self,
        store: Store,
        *,
        now_ms: Callable[[], int],
        metrics: Metrics,
        accept: Callable[[Record], str | None] | None = None,
        verifier: Verifier | None = None,
        policy: Callable[[], Policy] | None = None,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.now_ms = now_ms
        self.metrics = metrics
        self.accept = accept
        self.admit = Admission(store, metrics, policy or Policy)
        self._listeners: list[Callable[[list[Record], str], None]] = []
        self._limiter = trio.CapacityLimiter(MAX_VALIDATION_THREADS)
        #: Told of records expected (a fetch's need) and of batches of ``HELPER_BATCH`` or
        #: more begun: the node's measure of being busy (``node.api.front.Demand``).
        self.loaded: Callable[[int], None] | None = None

    def on_new(self, listener: Callable[[list[Record], str], None]) -> None:
        """Call ``listener(records, source)`` after each commit that stored new records."""
        self._listeners.append(listener)

    async def ingest(self, raws: Sequence[bytes], *, source: str) -> IngestResult:
        """Validate and store ``raws`` (bytes from outside); safe against any input.

        Cancellation: a batch is either committed entirely or not at all; if cancelled while
        validating, nothing is stored.
        """
        good, bad = await self.validate(raws, source=source)
        result = await self.store_valid(good, source=source)
        result.rejected.extend(bad)
        result.rejected.sort()
        return result

    def expect(self, count: int) -> None:
        """Say that ``count`` records are about to arrive (a fetch): enough of them, and the
        signature helper is started now, ready by the time they come."""
        if self.loaded is not None:
            self.loaded(count)
        if self.verifier is not None and count >= HELPER_BATCH:
            self.verifier.want()

    async def validate(
        self, raws: Sequence[bytes], *, source: str
    ) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
        """Validate ``raws`` (big batches on two threads); count the refusals by reason."""
        return await self.finish(await self.begin(raws), source=source)

    async def begin(self, raws: Sequence[bytes], *, helper: bool = False) -> Judging:
        """The first half of :meth:`validate`: everything, or, with ``helper`` while the
        signature helper runs and the batch is big, the parsing, with the signatures sent to
        the helper; :meth:`finish` waits for its answers.

        Only a :class:`Pipeline` asks for the helper: it finishes a batch while the next is
        begun, which keeps the helper busy. A single batch waits for the helper's last
        answer and gains nothing (measured: 21,000 records/s with it against 23,500 with the
        two threads, one 4,096-record batch at a time).
        """
        now = self.now_ms()
        if self.loaded is not None and len(raws) >= HELPER_BATCH:
            self.loaded(len(raws))
        verifier = self.verifier if helper else None
        if verifier is not None and len(raws) >= HELPER_BATCH:
            verifier.want()
            if verifier.ready:
                return await self._begin_with_helper(verifier, raws, now)
        if len(raws) >= THREAD_BATCH:
            good, bad = await self._validate_parallel(raws, now)
        else:
            good, bad = validate_batch(raws, now, self.accept)
        return Judging(good=good, bad=bad)

    async def finish(
        self, judging: Judging, *, source: str
    ) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
        """The valid records of a batch :meth:`begin` started, and its refusals (counted)."""
        good, bad = judging.good, judging.bad
        for parsed, ticket in judging.waiting:
            verdicts = None
            if ticket is not None and self.verifier is not None:
                verdicts = await self.verifier.answer(ticket)
            if verdicts is None:  # no helper (or it stopped): verify these here
                ok, refused = await trio.to_thread.run_sync(judge, parsed, None, self.accept)
            else:
                ok, refused = judge(parsed, verdicts, self.accept)
            good += ok
            bad += refused
        judging.waiting.clear()
        good.sort(key=_first)
        bad.sort()
        for _, reason in bad:
            self.metrics.inc(
                "commons_ingest_rejected_total", source=source, reason=reason.split(":", 1)[0]
            )
        return good, bad

    async def _begin_with_helper(
        self, verifier: Verifier, raws: Sequence[bytes], now: int
    ) -> Judging:
        """Parse chunk by chunk, each chunk's signatures sent to the helper at once, so it
        verifies one chunk while the next is parsed."""
        judging = Judging()
        for lo in range(0, len(raws), HELPER_CHUNK):
            chunk = raws[lo : lo + HELPER_CHUNK]
            if verifier.backlog >= HELPER_BACKLOG:
                # The helper has work enough: this chunk is verified here, on the core the
                # helper is not using.
                good, bad = await trio.to_thread.run_sync(
                    _validate_from, chunk, now, self.accept, lo
                )
                judging.good += good
                judging.bad += bad
                continue
            parsed, refused, items = await trio.to_thread.run_sync(
                _parse_for_helper, chunk, now, lo
            )
            judging.bad += refused
            judging.waiting.append((parsed, verifier.submit(items)))
        return judging

    async def _validate_parallel(
        self, raws: Sequence[bytes], now: int
    ) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
        half = (len(raws) + 1) // 2
        parts: list[tuple[list[tuple[int, Record]], list[tuple[int, str]]]] = [([], []), ([], [])]

        async def run(slot: int, lo: int, hi: int) -> None:
            good, bad = await trio.to_thread.run_sync(
                validate_batch, raws[lo:hi], now, self.accept, limiter=self._limiter
            )
            parts[slot] = (
                [(i + lo, r) for i, r in good],
                [(i + lo, e) for i, e in bad],
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, 0, 0, half)
            nursery.start_soon(run, 1, half, len(raws))
        return parts[0][0] + parts[1][0], parts[0][1] + parts[1][1]

    async def store_valid(
        self, good: Sequence[tuple[int, Record]], *, source: str, most: int = MAX_BATCH
    ) -> IngestResult:
        """Store records already validated (those local policy admits, see :meth:`admit`),
        at most ``most`` a transaction; notify listeners of the new ones."""
        result = IngestResult()
        if not good:
            return result
        # Records that came from the network are out there already; what was authored or
        # submitted here still has to be gossiped (imports spread by reconciliation).
        published = source not in ("local", "api")
        flags: list[tuple[Record, bool]] = []
        for start in range(0, len(good), most):
            chunk = good[start : start + most]
            # Always off the trio thread, even for one record: the commit waits for an fsync
            # (0.2 to 2 ms), during which the node keeps forwarding gossip, and the gossip
            # that arrives meanwhile makes the next batch (one commit for all of it).
            stored, refused = await trio.to_thread.run_sync(
                partial(self.admit, chunk, published=published, source=source)
            )
            flags += stored
            result.rejected += refused
        for record, is_new in flags:
            (result.new if is_new else result.duplicates).append(record)
        if result.new:
            self.metrics.inc("commons_ingest_new_total", len(result.new), source=source)
            for listener in self._listeners:
                try:
                    listener(result.new, source)
                except Exception:  # a listener's bug must not lose the acknowledgement
                    log.exception("new-record listener failed (source %s)", source)
        return result


class Pipeline:
    """Ingests a stream of batches (a fetch's frames), validating each while earlier ones are
    stored, and storing several batches in one transaction.

    Feeding batch k + 1 starts its validation (two threads, mostly in libsodium without the
    GIL; or, while the signature helper runs, the parsing here and the signatures there)
    while batch k is finished: its refusals are known then, and its valid records join the
    ones waiting to be stored. Those are stored in one transaction once another batch would
    take them past ``coalesce`` records, or once the oldest has waited ``within`` seconds, or
    at once when the batch holds records of the meta scope (projects, identities: the views
    need them first), by a task of ``nursery`` (one at a time), so that the next batches are
    validated while SQLite writes (a worker thread, mostly without the GIL). At a million records a
    transaction of 10,000 records cost the store about a tenth less CPU a record than one of
    2,400, a frame's worth (fewer index pages written and checkpointed a record; measured on
    a copy of a 1,000,001-record store, 2026-12-02).

    Acknowledged still means durable: what a call reports stored has committed, and the
    ingestor's listeners (gossip, views) hear of records only after their commit. Memory
    stays bounded: one batch being validated, at most ``coalesce`` records waiting and one
    transaction being written. The sync client feeds it::

        pipeline = Pipeline(ingestor, nursery, source="sync")
        for raws in frames:
            refused, stored = await pipeline.feed(raws)  # refusals of the batch fed before
        refused, stored = await pipeline.flush()        # the rest: everything is stored

    Refusals are (index, reason), the index counting every record fed to this pipeline, and
    come back as soon as their batch is finished; ``stored`` is what committed since the
    previous call (None if nothing did).
    """

    def __init__(
        self,
        ingestor: Ingestor,
        nursery: trio.Nursery,
        *,
        source: str,
        coalesce: int = COALESCE_RECORDS,
        within: float = COALESCE_SECONDS,
    ) -> None:
        self.ingestor = ingestor
        self.source = source
        self.coalesce = coalesce
        self.within = within
        self._since = 0.0  # when the oldest record waiting came (trio's clock)
        self._nursery = nursery
        self._fed = 0  # records fed so far: the stream index of the next batch's first
        self._waiting: tuple[int, Judging] | None = None  # a batch begun, and its offset
        self._pending: list[tuple[int, Record]] = []  # valid, to be stored together
        self._writing: trio.Event | None = None  # set when the transaction in flight is done
        self._done: list[IngestResult] = []  # committed since the last call
        self._refused: list[tuple[int, str]] = []  # refused at commit (local policy)

    async def feed(
        self, raws: Sequence[bytes]
    ) -> tuple[list[tuple[int, str]], IngestResult | None]:
        """Start validating ``raws`` while finishing the batch fed before (and storing what
        waits, once there is enough of it): that batch's refusals, and what was stored since
        the last call."""
        previous, self._waiting = self._waiting, None
        offset, self._fed = self._fed, self._fed + len(raws)
        refused: list[tuple[int, str]] = []

        async def finish() -> None:
            assert previous is not None
            refused.extend(await self._finish(*previous))

        try:
            async with trio.open_nursery() as nursery:
                if previous is not None:
                    nursery.start_soon(finish)
                current = await self.ingestor.begin(raws, helper=True)
        except BaseExceptionGroup as group:
            raise_single(group)
        self._waiting = (offset, current)
        return self._report(refused)

    async def flush(self) -> tuple[list[tuple[int, str]], IngestResult | None]:
        """Finish the last batch fed and store every valid record still waiting: its
        refusals and what was stored since the last call (None if nothing was)."""
        previous, self._waiting = self._waiting, None
        refused = await self._finish(*previous) if previous is not None else []
        await self._written()
        if self._pending:
            batch, self._pending = self._pending, []
            await self._write(batch)
        return self._report(refused)

    async def _finish(self, offset: int, judging: Judging) -> list[tuple[int, str]]:
        """A batch's refusals (stream indexes); its valid records wait to be stored, and what
        waited is handed to a writing task first if they would make too many or it waited
        long enough."""
        good, bad = await self.ingestor.finish(judging, source=self.source)
        full = len(self._pending) + len(good) > self.coalesce
        if self._pending and (full or trio.current_time() - self._since >= self.within):
            await self._hand_over()
        if good and not self._pending:
            self._since = trio.current_time()
        self._pending += [(i + offset, record) for i, record in good]
        if any(scope_of(record) == META_SCOPE for _, record in good):
            # Projects and identities are stored at once: the views show a project from its
            # first frame, while it is small, instead of meeting it 10,000 records later
            # (the sync asks for the meta scope's records first).
            await self._hand_over()
        return [(i + offset, reason) for i, reason in bad]

    async def _hand_over(self) -> None:
        """Give what waits to a writing task, once the transaction in flight committed (one
        at a time: memory stays bounded)."""
        await self._written()
        batch, self._pending = self._pending, []
        self._writing = trio.Event()
        self._nursery.start_soon(self._write, batch, self._writing)

    async def _written(self) -> None:
        """Wait for the transaction in flight, if any, to commit."""
        if self._writing is not None:
            await self._writing.wait()
            self._writing = None

    async def _write(self, batch: list[tuple[int, Record]], done: trio.Event | None = None) -> None:
        try:
            most = min(self.coalesce, STORE_BATCH)
            stored = await self.ingestor.store_valid(batch, source=self.source, most=most)
            self._done.append(stored)
            self._refused += stored.rejected
        finally:
            if done is not None:
                done.set()

    def _report(
        self, refused: list[tuple[int, str]]
    ) -> tuple[list[tuple[int, str]], IngestResult | None]:
        refused += self._refused
        self._refused = []
        done, self._done = self._done, []
        if not done:
            return sorted(refused), None
        stored = IngestResult()
        for result in done:
            stored.new += result.new
            stored.duplicates += result.duplicates
            stored.rejected += result.rejected
        return sorted(refused), stored
