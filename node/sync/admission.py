"""Records at the door of the store, without trio: their validation (:func:`validate_batch`)
and local policy (:class:`Admission`), shared by the node's ingest (:mod:`node.sync.ingest`)
and the commands that store without a node (``commons import``, ``import-git``, authoring),
which so start without importing the node's event loop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from node.metrics import Metrics
from node.policy import Policy, project_of
from node.store.bulk import Attested
from node.store.sqlite import Store
from protocol.errors import InvalidRecord
from protocol.record import Record, decode_trusted
from protocol.validation import parse_record, verify_signature

__all__ = ["QUOTA_LOG_WINDOW", "Admission", "judge", "parse_batch", "validate_batch"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two log lines about records refused for a limit of local policy.
QUOTA_LOG_WINDOW = 60.0


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
    parsed, bad = parse_batch(raws, now_ms)
    good, refused = judge(parsed, None, accept)
    bad += refused
    bad.sort()
    return good, bad


def parse_batch(
    raws: Sequence[bytes], now_ms: int, offset: int = 0
) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
    """``parse_record`` without the signature on each of ``raws`` (indexes from ``offset``):
    the records that pass, and the refusals."""
    parsed: list[tuple[int, Record]] = []
    bad: list[tuple[int, str]] = []
    for i, raw in enumerate(raws, offset):
        try:
            parsed.append((i, parse_record(raw, now_ms=now_ms, verify_sig=False)))
        except InvalidRecord as exc:
            bad.append((i, str(exc)))
    return parsed, bad


def judge(
    parsed: Sequence[tuple[int, Record]],
    verdicts: Sequence[bool] | None,
    accept: Callable[[Record], str | None] | None,
) -> tuple[list[tuple[int, Record]], list[tuple[int, str]]]:
    """The signature checks of parsed records (``verdicts`` from the signature helper, or
    None to verify here), then ``accept``: the good records and the refusals."""
    good: list[tuple[int, Record]] = []
    bad: list[tuple[int, str]] = []
    for n, (i, record) in enumerate(parsed):
        try:
            verify_signature(record, verdict=None if verdicts is None else verdicts[n])
        except InvalidRecord as exc:
            bad.append((i, str(exc)))
            continue
        reason = accept(record) if accept is not None else None
        if reason is not None:
            bad.append((i, reason))
        else:
            good.append((i, record))
    return good, bad


class Admission:
    """Local policy at the door of the store: every path that stores records (the
    :class:`Ingestor`'s, and ``commons import`` without a node) stores through one."""

    def __init__(self, store: Store, metrics: Metrics, policy: Callable[[], Policy]) -> None:
        self.store = store
        self.metrics = metrics
        #: The local policy in force (it changes when the operator blocks or unblocks).
        self.policy = policy
        # One batch judged and stored at a time: two batches cannot both take the last place
        # under a limit, and a purge (run under it, see ``exclusive``) cannot slip between a
        # batch judged by the policy before a block and its commit. The store serialises
        # its writes anyway; the judging beside them costs microseconds a record.
        self._lock = threading.Lock()
        self._quota_logged = -QUOTA_LOG_WINDOW

    def exclusive(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a block's purge) while no batch is being admitted."""
        with self._lock:
            return fn()

    def __call__(
        self, good: Sequence[tuple[int, Record]], *, published: bool, source: str
    ) -> tuple[list[tuple[Record, bool]], list[tuple[int, str]]]:
        """Judge valid records by local policy and store those it admits (in a worker thread,
        or in ``commons import``'s own): each stored record with whether it was new, and the
        refusals. The ids of blocked records are remembered as refused (see
        :mod:`node.store.moderation`), so reconciliation does not fetch them again."""
        with self._lock:
            policy = self.policy()
            admitted: list[tuple[int, Record]] = []
            blocked: list[Record] = []
            refused: list[tuple[int, str]] = []
            for i, record in good:
                reason = policy.refusal(record)
                if reason is None:
                    admitted.append((i, record))
                else:
                    blocked.append(record)
                    refused.append((i, reason))
                    self.metrics.inc(
                        "commons_policy_refused_total", source=source, reason="blocked"
                    )
            if blocked:
                self.store.note_refused(blocked)
            if policy.has_quota:
                admitted = self._within_limits(policy, admitted, refused, source)
            records = [r for _, r in admitted]
            flags = self.store.add(records, published=published)
        return list(zip(records, flags, strict=True)), refused

    def attested(
        self, rows: Sequence[Attested], *, published: bool, source: str
    ) -> tuple[list[bool], list[tuple[int, str]]]:
        """Judge and store a batch of attested contributions of one author and project, as
        a bulk import makes them (:meth:`Store.add_attested`): whether each was new, and the
        refusals, as :meth:`__call__` would have them. Without a limit or block on their
        project and author (the usual case) they are stored without being decoded; else
        they are decoded and judged one by one."""
        if not rows:
            return [], []
        probe = decode_trusted(rows[0].raw)
        with self._lock:
            policy = self.policy()
            fast = not policy.has_quota and policy.blocks(project_of(probe), probe.author) is None
            if fast:
                return self.store.add_attested(rows, published=published), []
        records = [decode_trusted(row.raw) for row in rows]
        stored, refused = self(list(enumerate(records)), published=published, source=source)
        new = {record.id: is_new for record, is_new in stored}
        return [new.get(row.id, False) for row in rows], refused

    def _within_limits(
        self,
        policy: Policy,
        admitted: list[tuple[int, Record]],
        refused: list[tuple[int, str]],
        source: str,
    ) -> list[tuple[int, Record]]:
        """The records among ``admitted`` that fit the store's limits; the others join
        ``refused`` (records already held are kept: storing them again costs nothing)."""
        missing = set(self.store.missing([r.id for _, r in admitted]))
        size = self.store.size_bytes()
        counts: dict[bytes, int] = {}
        kept: list[tuple[int, Record]] = []
        for i, record in admitted:
            if record.id not in missing:
                kept.append((i, record))
                continue
            project = project_of(record)
            held = 0
            if project is not None:
                if project not in counts:
                    key = self.store.project_key(project)
                    counts[project] = key[0] if key is not None else 0
                held = counts[project]
            reason = policy.over_quota(record, store_bytes=size, project_records=held)
            if reason is None:
                kept.append((i, record))
                if project is not None:
                    counts[project] += 1
                continue
            refused.append((i, reason))
            self.metrics.inc("commons_policy_refused_total", source=source, reason="over-quota")
            now = time.monotonic()
            if now - self._quota_logged >= QUOTA_LOG_WINDOW:
                self._quota_logged = now
                log.warning(
                    "refusing new records: %s (the node keeps serving what it holds; this is"
                    " logged once a minute, /metrics counts every refusal)",
                    reason.partition(": ")[2],
                )
        return kept
