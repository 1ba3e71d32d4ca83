"""The one path by which records enter the store: validate, store in one transaction, notify.

Gossip, sync, the HTTP API and ``commons import`` all call :meth:`Ingestor.ingest`, so a record
is judged by exactly the same rules whichever way it arrived (``protocol.validation``), and
the node learns of new records in one place (to subscribe to new projects' topics and to
publish what was authored locally). The id of a record is acknowledged only after
``Store.add`` has committed.

Large batches are validated in worker threads: signature verification runs in libsodium
without the GIL, so two threads use both cores for the expensive part.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import trio

from node.metrics import Metrics
from node.storage import Store
from protocol.errors import InvalidRecord
from protocol.record import Record
from protocol.validation import parse_record, verify_signature

__all__ = ["IngestResult", "Ingestor", "Pipeline"]

log = logging.getLogger(__name__)

#: Batches at least this large are validated off the trio thread.
THREAD_BATCH = 32
#: Worker threads validating at once (one per core on the 2-core reference machine).
MAX_VALIDATION_THREADS = 2
#: The most records stored in one transaction.
MAX_BATCH = 4096


@dataclass
class IngestResult:
    """What became of a batch: new records (in input order), duplicates, refusals."""

    new: list[Record] = field(default_factory=list)
    duplicates: list[Record] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in batch, error)


def validate_batch(
    raws: Sequence[bytes], now_ms: int, accept: Callable[[Record], str | None] | None
) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
    """Parse and verify ``raws``; ``accept`` may refuse a valid record with a reason.

    Exactly ``parse_record`` on each, in two passes: every record's checks in Python first,
    then every signature. Two threads running this at once then mostly hand the GIL over
    only in the first pass; interleaved, each record's verification (which releases the
    GIL) made the threads wait for each other's Python work so often that a second thread
    gained nothing on this machine (measured: 70 against 60 microseconds a record on one
    thread; 43 to 61 with the two passes).
    """
    parsed: list[tuple[int, Record]] = []
    bad: list[tuple[int, str]] = []
    for i, raw in enumerate(raws):
        try:
            parsed.append((i, parse_record(raw, now_ms=now_ms, verify_sig=False)))
        except InvalidRecord as exc:
            bad.append((i, str(exc)))
    good: list[tuple[int, Record]] = []
    for i, record in parsed:
        try:
            verify_signature(record)
        except InvalidRecord as exc:
            bad.append((i, str(exc)))
            continue
        reason = accept(record) if accept is not None else None
        if reason is not None:
            bad.append((i, reason))
        else:
            good.append((i, record))
    bad.sort()
    return good, bad


class Ingestor:
    """Validates and stores batches; calls ``on_new`` with each batch of new records."""

    def __init__(
        self,
        store: Store,
        *,
        now_ms: Callable[[], int],
        metrics: Metrics,
        accept: Callable[[Record], str | None] | None = None,
    ) -> None:
        self.store = store
        self.now_ms = now_ms
        self.metrics = metrics
        self.accept = accept
        self._listeners: list[Callable[[list[Record], str], None]] = []
        self._limiter = trio.CapacityLimiter(MAX_VALIDATION_THREADS)

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

    async def validate(
        self, raws: Sequence[bytes], *, source: str
    ) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
        """Validate ``raws`` (big batches on two threads); count the refusals by reason."""
        now = self.now_ms()
        if len(raws) >= THREAD_BATCH:
            good, bad = await self._validate_parallel(raws, now)
        else:
            good, bad = validate_batch(raws, now, self.accept)
        for _, reason in bad:
            self.metrics.inc(
                "commons_ingest_rejected_total", source=source, reason=reason.split(":", 1)[0]
            )
        return good, bad

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

    async def store_valid(self, good: Sequence[tuple[int, Record]], *, source: str) -> IngestResult:
        """Store records already validated; notify listeners of the new ones."""
        result = IngestResult()
        if not good:
            return result
        # Records that came from the network are out there already; what was authored or
        # submitted here still has to be gossiped (imports spread by reconciliation).
        published = source not in ("local", "api")
        records = [r for _, r in good]
        flags: list[bool] = []
        for start in range(0, len(records), MAX_BATCH):
            chunk = records[start : start + MAX_BATCH]
            # Always off the trio thread, even for one record: the commit waits for an fsync
            # (0.2 to 2 ms), during which the node keeps forwarding gossip, and the gossip
            # that arrives meanwhile makes the next batch (one commit for all of it).
            flags += await trio.to_thread.run_sync(
                partial(self.store.add, chunk, published=published)
            )
        for record, is_new in zip(records, flags, strict=True):
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
    """Ingests a stream of batches, validating each while the previous one is being stored.

    Each batch is still stored in its own transaction, exactly as :meth:`Ingestor.ingest`
    would; only the order of work changes: the validation of batch k + 1 (two threads, mostly
    in libsodium without the GIL) runs while batch k is written (a third thread, mostly in
    SQLite without the GIL). The sync client feeds it the frames of a fetch::

        pipeline = Pipeline(ingestor, source="sync")
        for raws in frames:
            refused, stored = await pipeline.feed(raws)  # stored: the previous batch's result
        stored = await pipeline.flush()                 # the last batch
    """

    def __init__(self, ingestor: Ingestor, *, source: str) -> None:
        self.ingestor = ingestor
        self.source = source
        self._waiting: list[tuple[int, Record]] | None = None

    async def feed(
        self, raws: Sequence[bytes]
    ) -> tuple[list[tuple[int, str]], IngestResult | None]:
        """Validate ``raws`` while storing the batch fed before. Returns this batch's refusals
        (index, reason) and what became of the previous batch (None for the first)."""
        previous, self._waiting = self._waiting, None
        if previous is None:
            good, bad = await self.ingestor.validate(raws, source=self.source)
            self._waiting = good
            return bad, None
        stored: list[IngestResult] = []

        async def store() -> None:
            stored.append(await self.ingestor.store_valid(previous, source=self.source))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(store)
                good, bad = await self.ingestor.validate(raws, source=self.source)
        except BaseExceptionGroup as group:
            raise_single(group)
        self._waiting = good
        return bad, stored[0]

    async def flush(self) -> IngestResult | None:
        """Store the last batch fed; its result (None if nothing was waiting)."""
        previous, self._waiting = self._waiting, None
        if previous is None:
            return None
        return await self.ingestor.store_valid(previous, source=self.source)


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one real exception of a nursery's group (callers expect it bare)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        else:
            leaves.append(item)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if len(real) == 1:
        raise real[0]
    raise group
