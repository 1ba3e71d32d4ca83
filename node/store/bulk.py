"""Attested contributions stored by the hundred thousand, without decoding each one.

``commons import-git`` stores a million records of one shape: contributions by one author
(the maintainer) in one project, on behalf of handles, claiming no time. :meth:`Store.add
<node.store.sqlite.Store.add>` takes decoded records and works out, for each, its kind, scope,
project, author and credit, which for such a batch are the same work a million times: a
quarter of the import's time was that. :meth:`BulkMixin.add_attested` takes the few fields
that vary (:class:`Attested`, made where the record was made, in an import's signing
process) and decodes only the batch's first record, through which every constant column is
worked out by the same functions ``add`` uses (:func:`protocol.validation.scope_of`,
:func:`protocol.tally.attested_credit` is :func:`~protocol.tally.credit_of`'s rule). The rows,
the tallies and the caches end as ``add`` leaves them (tests compare every table).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Final, NamedTuple

from node.clock import now_ms as _now_ms
from node.store.base import (
    StoreBase,
    decode,
    guarded,
    project_of,
)
from node.store.tally import Sums, author_units, inserted_seqs, write_sums
from protocol.record import ContributionBody
from protocol.tally import attested_credit
from protocol.validation import scope_of

__all__ = ["MAX_BULK", "Attested", "BulkMixin"]

#: The most records one :meth:`BulkMixin.add_attested` call (one transaction) takes: five
#: times what ``add`` takes, since the import that calls it has the store to itself (a node
#: running takes an import through its API instead). Measured at a million records, 50,000 a
#: transaction cost 40-43 microseconds a record, 10,000 62-103: each transaction rewrites the
#: index pages its records land on, and at that size nearly every page of the id index.
MAX_BULK: Final = 50_000
#: Records of a batch whose held ids one scan of the scope's time index looks for
#: (:meth:`BulkMixin._held_in_scope`).
HELD_WINDOW: Final = 1_000
#: The most rows such a scan reads, a record it looks for: past that, the window's records
#: are looked for id by id. A row scanned costs about a twentieth of an id looked up.
HELD_SCAN_ROWS: Final = 8


class Attested(NamedTuple):
    """An attested contribution claiming no time, as :meth:`BulkMixin.add_attested` stores it:
    its id and bytes, and the fields of it that its tallies need (its ``ts``, body ``type`` and
    ``on_behalf``). The caller vouches that they are the record's own (it made the record)."""

    id: bytes
    raw: bytes
    ts: int
    type: str
    on_behalf: tuple[str, ...]


class BulkMixin(StoreBase):
    """The bulk path of attested contributions (part of :class:`node.store.sqlite.Store`)."""

    @guarded
    def use_page_cache(self, kib: int) -> None:
        """Let this connection cache ``kib`` KiB of pages (``PAGE_CACHE_KIB`` by default): an
        import into a big store keeps the index pages its batches land on in memory."""
        self._db.execute(f"PRAGMA cache_size = {-int(kib)}")

    @guarded
    def add_attested(
        self, rows: Sequence[Attested], *, published: bool = True, now_ms: int | None = None
    ) -> list[bool]:
        """Store a batch of at most :data:`MAX_BULK` attested contributions
        (:class:`Attested`) of one author and project, claiming no time, in one transaction:
        what :meth:`add` does with the same records decoded, True for each one that was new.
        Raises ``ValueError`` for a batch that is not of that shape (the first record is
        decoded and checked; the others must share its author and project, which their
        caller made them with)."""
        if len(rows) > MAX_BULK:
            raise ValueError(f"{len(rows)} records in one batch, at most {MAX_BULK}")
        if not rows:
            return []
        probe = decode(rows[0].raw)
        body = probe.body
        project = project_of(probe)
        if (
            probe.kind != "contribution"
            or project is None
            or not isinstance(body, ContributionBody)
            or body.on_behalf is None
            or body.effort_minutes is not None
        ):
            raise ValueError("add_attested stores attested contributions claiming no time")
        scope = scope_of(probe)
        at = _now_ms() if now_ms is None else now_ms
        new: list[bool] = []
        with self._adding() as conn:
            author = author_units(conn, [probe], self._unit_numbers)[probe.author]
            project_n = self._scope_number(project.hex())
            assert project_n is not None, "created when missing"
            scope_n = self._scope_number(scope)
            assert scope_n is not None, "created when missing"
            held = self._held_in_scope(conn, scope_n, rows)
            kind_n = self._kind_number("contribution")
            assert kind_n is not None, "created when missing"
            inserted: list[Attested] = []
            # What every record of the batch shares is written into the statement (numbers
            # of this store's own and flags, all ints), so that only each record's id, bytes
            # and time are bound: measured, 5 % less CPU a record stored.
            shared = (kind_n, author, project_n, scope_n, at, int(published))
            values = "(?, ?, {}, {}, {}, {}, ?, NULL, {}, {})".format(*(int(n) for n in shared))
            for row in rows:
                is_new = row.id not in held
                new.append(is_new)
                if not is_new:
                    continue
                held.add(row.id)
                inserted.append(row)
            # Inserted in id order, the records walk the id index from one end to the other
            # instead of landing all over it; the tallies are summed in the order given (an
            # import's, by time, as their keys go). Measured storing a million records in
            # 50,000-record batches: 15.6-16.0 microseconds of CPU a record and a 624 MB
            # file, against 16.5-19.8 and 607 MB with the batch sorted by id for both (the
            # rows then visited out of the order they were made in), 15.8 and 665 MB with
            # neither sorted.
            ids = [row.id for row in inserted]
            order = sorted(range(len(ids)), key=ids.__getitem__)
            records = [(ids[i], inserted[i].raw, inserted[i].ts) for i in order]
            first = self._insert_records(conn, records, row=values)
            if inserted:
                seqs = [0] * len(ids)
                by_id = inserted_seqs(conn, first, [r[0] for r in records])
                for i, seq in zip(order, by_id, strict=True):
                    seqs[i] = seq
                write_sums(conn, _sums(project_n, seqs, inserted), known=self._unit_numbers)
        if records:  # committed
            self._stored_in([scope])
            # A cached project would miss the new records: it is read again when next asked.
            entry = self._cache.pop(project, None)
            if entry is not None:
                self._cached_records -= len(entry.records)
        return new

    def _held_in_scope(
        self, conn: sqlite3.Connection, scope: int, rows: Sequence[Attested]
    ) -> set[bytes]:
        """The ids of ``rows`` (records of the scope numbered ``scope``) already stored.

        A record's id commits to its scope and time, so a held one is on the scope's time
        index (``records_scope``) at its time. The batch's times, sorted, are cut into
        windows of :data:`HELD_WINDOW` records, and each window's stretch of the index is
        read in one scan: an import's times follow its history, so in a first import a
        stretch holds next to nothing, and in a re-run about the window's own records. A
        stretch holding more than :data:`HELD_SCAN_ROWS` rows a record (times far apart,
        or many equal) has its records looked for id by id instead (:meth:`_held`).
        Measured storing a million records: 0.2 microseconds a record against 2.5 for the
        ids looked up one by one (each lands on a random page of the id index); storing them
        all again, 1.0 against 4.4 for the whole call."""
        times = sorted(row.ts for row in rows)
        wanted = {row.id for row in rows}
        held: set[bytes] = set()
        crowded: list[tuple[int, int]] = []
        query = "SELECT id FROM records WHERE scope = ? AND ts BETWEEN ? AND ? LIMIT ?"
        limit = HELD_SCAN_ROWS * HELD_WINDOW
        for start in range(0, len(times), HELD_WINDOW):
            low, high = times[start], times[min(start + HELD_WINDOW, len(times)) - 1]
            found = conn.execute(query, (scope, low, high, limit)).fetchall()
            if len(found) >= limit:
                crowded.append((low, high))
            else:
                held.update(i for (i,) in found if i in wanted)
        if crowded:
            ids = [row.id for row in rows if any(lo <= row.ts <= hi for lo, hi in crowded)]
            held |= self._held(conn, ids)
        return held


@functools.lru_cache(maxsize=1 << 16)
def _participants(on_behalf: tuple[str, ...]) -> tuple[bytes, ...]:
    # Cached: a history has far fewer authors (and author, co-author lists) than commits.
    return attested_credit(on_behalf, 0, "code").participants


def _sums(project: int, seqs: Sequence[int], rows: Sequence[Attested]) -> Sums:
    """What ``rows``, stored as ``seqs`` in ``project``, add to the tallies: the sums
    :func:`node.store.tally.tally_records` makes of them (each an attested
    contribution claiming no time), in one loop that does only what varies."""
    batch = Sums()
    credit_row, typed_row = batch.credits.append, batch.typed.append
    sums, types, wanted = batch.sums, batch.types, batch.wanted
    seen: set[tuple[str, ...]] = set()
    for seq, row in zip(seqs, rows, strict=True):
        ts, on_behalf = row.ts, row.on_behalf
        typed_row((project, row.type, ts, seq))
        key_of_type = (project, row.type)
        types[key_of_type] = types.get(key_of_type, 0) + 1
        keys = _participants(on_behalf)
        if on_behalf not in seen:
            seen.add(on_behalf)
            wanted.update(zip(keys, on_behalf, strict=True))
        parts = len(keys)
        for key in keys:
            credit_row((project, key, ts, seq))
            found = sums.get((project, key, parts))
            if found is None:
                sums[(project, key, parts)] = [1, 0]
            else:
                found[0] += 1
    batch.totals[project] = [len(rows), max(seqs)]
    batch.kinds["contribution"] = len(rows)
    return batch
