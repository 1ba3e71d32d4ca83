"""The fold inputs the store keeps at insert time: per-project running sums of what each
contribution credits (:mod:`protocol.tally`), so that the views of a big project need no fold
of its every record.

Tables (schema version 4, :mod:`node.store.schema`): ``units`` numbers the participants
(a key, or a handle's stand-in with the handle's text), ``credits`` holds a row per
(contribution, participant) in time order for the ledger's author filter, ``typed`` a row per
contribution in time order per type for its type filter, ``tallies`` the sums per project,
participant and participant count, ``type_tallies`` the contributions per project and type,
``project_totals`` each project's record count and greatest ``seq`` (its view key, read in
microseconds where a count over the project index took 50 ms at a million records) and
``kind_totals`` the records per kind (the metrics' gauge).

Everything here is written inside the transaction that stores the records
(:func:`tally_inserted`, called by ``Store.add``: the one place the insert path changes) or
purges them (:func:`untally`, :func:`recount`), so the sums always match the records held. A
store made by an earlier version is filled in by :func:`backfill` when it is opened, in
batches that each commit, so an interrupted backfill resumes where it stopped.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

from node.store.base import (
    MAX_SQL_PARAMS,
    ProjectKey,
    StoreBase,
    chunks,
    decode,
    guarded,
    id_in,
    id_params,
    insert_rows,
    marks,
)
from node.store.schema import CONTRIBUTION, GENESIS
from protocol.record import Record
from protocol.tally import TallyRow, credit_of

__all__ = [
    "BACKFILL_BATCH",
    "Sums",
    "TallyMixin",
    "author_units",
    "backfill",
    "inserted_seqs",
    "recount",
    "tally_inserted",
    "tally_records",
    "untally",
    "write_sums",
]

log = logging.getLogger(__name__)

#: Participant numbers a store remembers (about 100 bytes each).
MAX_KNOWN_UNITS: Final = 50_000
#: Records read and tallied per transaction by :func:`backfill`.
BACKFILL_BATCH: Final = 20_000
#: A project's record count and greatest seq (parameters: its number twice), off the two
#: indexes that hold its records: contributions on ``records_scope``, the rest on the
#: partial ``records_project``.
_PROJECT_COUNTS: Final = (
    "SELECT count(*) AS n, max(seq) AS last FROM records"
    f" WHERE project = ? AND kind <> {CONTRIBUTION}"
    f" UNION ALL SELECT count(*), max(seq) FROM records WHERE scope = ? AND kind = {CONTRIBUTION}"
)
#: Whether a backfill is still to run (or to finish).
_BACKFILLING: Final = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tally_backfill'"
#: Rows one ledger query reads at a time.
LEDGER_BATCH: Final = 256


def _units(
    conn: sqlite3.Connection, wanted: dict[bytes, str | None], known: dict[bytes, int]
) -> dict[bytes, int]:
    """The numbers of the participants in ``wanted`` (key -> handle), adding the new ones.

    ``known`` is the caller's memory of numbers already read (units are never deleted, so a
    number once read stays right; the caller forgets those of a transaction that rolled
    back): a batch of 5,000 commits by 5,000 authors spent 5 microseconds a record looking
    them up. It is filled here and emptied when it passes ``MAX_KNOWN_UNITS``.
    """
    if len(known) > MAX_KNOWN_UNITS:
        known.clear()
    numbers = {key: known[key] for key in wanted if key in known}
    keys = [key for key in wanted if key not in numbers]
    query = "SELECT key, n FROM units WHERE key IN ({})"
    for chunk in chunks(keys):
        numbers.update(conn.execute(query.format(marks(len(chunk))), tuple(chunk)))
    new = [key for key in keys if key not in numbers]
    if new:
        rows = [(key, wanted[key]) for key in new]
        conn.executemany("INSERT INTO units (key, handle) VALUES (?, ?)", rows)
        for chunk in chunks(new):
            numbers.update(conn.execute(query.format(marks(len(chunk))), tuple(chunk)))
    known.update(numbers)
    return numbers


def author_units(
    conn: sqlite3.Connection, records: Iterable[Record], known: dict[bytes, int]
) -> dict[bytes, int]:
    """The numbers of the records' authors in ``units`` (``records.author`` holds them since
    schema version 5), adding the new ones inside the caller's transaction."""
    return _units(conn, dict.fromkeys(record.author for record in records), known)


def tally_records(
    conn: sqlite3.Connection,
    stored: Iterable[tuple[int, int | None, Record]],
    sign: int = 1,
    known: dict[bytes, int] | None = None,
) -> None:
    """Add (``sign`` 1) or take away (-1) the credit of records, given with their ``seq`` and
    project number, to the sums of their projects, inside the caller's transaction.

    The batch is summed here first, so each sum is written once a batch (a row per project
    and participant, not per record), and the rows are written a few hundred a statement
    (:func:`write_sums`). Taking away leaves ``project_totals`` and ``kind_totals`` to the
    caller (:func:`untally`, :func:`recount`)."""
    batch = Sums()
    credits, typed, totals = batch.credits, batch.typed, batch.totals
    sums, types, wanted, kinds = batch.sums, batch.types, batch.wanted, batch.kinds
    for seq, project, record in stored:
        kind = record.kind
        kinds[kind] = kinds.get(kind, 0) + 1
        if project is None:
            continue
        total = totals.get(project)
        if total is None:
            totals[project] = [1, seq]
        else:
            total[0] += 1
            if seq > total[1]:
                total[1] = seq
        if kind != "contribution":
            continue
        credit = credit_of(record)
        ts = record.ts
        typed.append((project, credit.type, ts, seq))
        key_of_type = (project, credit.type)
        types[key_of_type] = types.get(key_of_type, 0) + 1
        parts = len(credit.participants)
        minutes = credit.minutes
        for key, handle in zip(credit.participants, credit.handles, strict=True):
            wanted[key] = handle
            credits.append((project, key, ts, seq))
            found = sums.get((project, key, parts))
            if found is None:
                sums[(project, key, parts)] = [1, minutes]
            else:
                found[0] += 1
                found[1] += minutes
    write_sums(conn, batch, sign, known)


@dataclass(slots=True)
class Sums:
    """What a batch of records adds to (or takes from) the tallies, summed before it is
    written (:func:`write_sums`)."""

    #: A ``credits`` row per (record, participant): project, participant key, ts, seq.
    credits: list[tuple[int, bytes, int, int]] = field(default_factory=list)
    #: A ``typed`` row per contribution: project, type, ts, seq.
    typed: list[tuple[int, str, int, int]] = field(default_factory=list)
    #: Records and the greatest seq, by project.
    totals: dict[int, list[int]] = field(default_factory=dict)
    #: Contributions and minutes, by (project, participant key, participants).
    sums: dict[tuple[int, bytes, int], list[int]] = field(default_factory=dict)
    #: Contributions by (project, type).
    types: dict[tuple[int, str], int] = field(default_factory=dict)
    #: The handle each participant key stands for (None for a key).
    wanted: dict[bytes, str | None] = field(default_factory=dict)
    #: Records by kind.
    kinds: dict[str, int] = field(default_factory=dict)


def write_sums(
    conn: sqlite3.Connection, batch: Sums, sign: int = 1, known: dict[bytes, int] | None = None
) -> None:
    """Write ``batch`` into the tallies' tables, a few hundred rows a statement, inside the
    caller's transaction: added with ``sign`` 1, taken away with -1 (which leaves
    ``project_totals`` and ``kind_totals`` to the caller)."""
    credits, typed, totals = batch.credits, batch.typed, batch.totals
    sums, types, wanted, kinds = batch.sums, batch.types, batch.wanted, batch.kinds
    numbers = _units(conn, wanted, {} if known is None else known) if wanted else {}
    if sign > 0:
        insert_rows(
            conn,
            "INSERT OR IGNORE INTO credits (project, unit, ts, seq)",
            [(p, numbers[k], ts, seq) for p, k, ts, seq in credits],
        )
        insert_rows(conn, "INSERT OR IGNORE INTO typed (project, type, ts, seq)", typed)
        add_kinds(conn, kinds)
        insert_rows(
            conn,
            "INSERT INTO project_totals (project, records, last_seq)",
            [(p, n, last) for p, (n, last) in totals.items()],
            " ON CONFLICT DO UPDATE SET records = records + excluded.records,"
            " last_seq = max(last_seq, excluded.last_seq)",
        )
    else:
        conn.executemany(
            "DELETE FROM credits WHERE project = ? AND unit = ? AND ts = ? AND seq = ?",
            [(p, numbers[k], ts, seq) for p, k, ts, seq in credits],
        )
        conn.executemany(
            "DELETE FROM typed WHERE project = ? AND type = ? AND ts = ? AND seq = ?", typed
        )
    insert_rows(
        conn,
        "INSERT INTO tallies (project, unit, parts, contributions, minutes)",
        [(p, numbers[k], parts, sign * n, sign * m) for (p, k, parts), (n, m) in sums.items()],
        " ON CONFLICT DO UPDATE SET contributions = contributions + excluded.contributions,"
        " minutes = minutes + excluded.minutes",
    )
    insert_rows(
        conn,
        "INSERT INTO type_tallies (project, type, contributions)",
        [(p, kind, sign * n) for (p, kind), n in types.items()],
        " ON CONFLICT DO UPDATE SET contributions = contributions + excluded.contributions",
    )
    if sign < 0:
        conn.execute("DELETE FROM tallies WHERE contributions <= 0")
        conn.execute("DELETE FROM type_tallies WHERE contributions <= 0")


def tally_inserted(
    conn: sqlite3.Connection,
    first: int,
    inserted: Sequence[tuple[int | None, Record]],
    known: dict[bytes, int],
) -> None:
    """Tally records just inserted by one multi-row INSERT, with their project numbers, in
    the caller's transaction (``known``: the store's participant numbers, see ``_units``)."""
    if not inserted:
        return
    seqs = inserted_seqs(conn, first, [record.id for _, record in inserted])
    tally_records(
        conn,
        [(seq, project, record) for seq, (project, record) in zip(seqs, inserted, strict=True)],
        known=known,
    )


def inserted_seqs(conn: sqlite3.Connection, first: int, ids: Sequence[bytes]) -> list[int]:
    """The ``seq`` of each record ``ids`` just inserted by multi-row INSERTs, in order, when
    the greatest held before was ``first - 1``. SQLite gives such rows the ``seq`` one above
    the greatest held, in order, so the i-th has ``first + i``; checked, and read back by id
    if it ever is not."""
    last = int(conn.execute("SELECT max(seq) FROM records").fetchone()[0])
    if last == first + len(ids) - 1:
        return list(range(first, last + 1))
    found: dict[bytes, int] = {}
    for chunk in chunks(ids):
        query = f"SELECT id, seq FROM records WHERE {id_in(len(chunk))}"
        found.update((bytes(i), int(s)) for i, s in conn.execute(query, id_params(chunk)))
    return [found[i] for i in ids]


def add_kinds(conn: sqlite3.Connection, kinds: dict[str, int]) -> None:
    """Add ``kinds`` (kind -> records, negative to take away) to ``kind_totals``."""
    conn.executemany(
        "INSERT INTO kind_totals (kind, records) VALUES (?, ?)"
        " ON CONFLICT DO UPDATE SET records = records + excluded.records",
        list(kinds.items()),
    )
    conn.execute("DELETE FROM kind_totals WHERE records <= 0")


def untally(conn: sqlite3.Connection, seqs: Sequence[int], projects: Iterable[int]) -> None:
    """Take the records ``seqs``, about to be purged, out of the sums (in the caller's
    transaction); ``projects`` are purged whole, so their rows simply go."""
    gone = sorted(set(projects))
    kinds: dict[str, int] = {}
    for start in range(0, len(seqs), MAX_SQL_PARAMS):
        chunk = seqs[start : start + MAX_SQL_PARAMS]
        query = (
            "SELECT k.name, count(*) FROM records AS r JOIN kinds AS k ON k.n = r.kind"
            f" WHERE r.seq IN ({marks(len(chunk))}) GROUP BY r.kind"
        )
        for kind, n in conn.execute(query, chunk):
            kinds[kind] = kinds.get(kind, 0) - n
    add_kinds(conn, kinds)
    for table in ("credits", "typed", "tallies", "type_tallies", "project_totals"):
        conn.executemany(f"DELETE FROM {table} WHERE project = ?", [(p,) for p in gone])
    stored = []
    for start in range(0, len(seqs), MAX_SQL_PARAMS):
        chunk = seqs[start : start + MAX_SQL_PARAMS]
        query = (
            f"SELECT seq, project, raw FROM records WHERE seq IN ({marks(len(chunk))})"
            f" AND kind = {CONTRIBUTION}"
        )
        stored += [
            (int(s), int(p), decode(raw))
            for s, p, raw in conn.execute(query, chunk)
            if p is not None and p not in gone
        ]
    tally_records(conn, stored, sign=-1)


def recount(conn: sqlite3.Connection, projects: Iterable[int]) -> None:
    """Count the records of ``projects`` again, after a purge deleted some."""
    for project in projects:
        count, last = conn.execute(
            f"SELECT sum(n), max(last) FROM ({_PROJECT_COUNTS})", (project, project)
        ).fetchone()
        if count:
            conn.execute(
                "INSERT INTO project_totals (project, records, last_seq) VALUES (?, ?, ?)"
                " ON CONFLICT DO UPDATE SET records = excluded.records,"
                " last_seq = excluded.last_seq",
                (project, count, last),
            )
        else:
            conn.execute("DELETE FROM project_totals WHERE project = ?", (project,))


def backfill(conn: sqlite3.Connection, path: Path) -> None:
    """Tally the records of a store made before schema version 4, a batch a transaction.

    ``tally_backfill`` holds the greatest ``seq`` tallied so far (the migration sets it to
    -1); a batch adds its records and moves the mark in one transaction, so a backfill
    interrupted by a crash or a stop resumes after the last batch that committed. The table
    is dropped when the backfill is done. Progress is logged every batch.
    """
    if conn.execute(_BACKFILLING).fetchone() is None:
        return
    total = int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    done = 0
    known: dict[bytes, int] = {}
    started = time.monotonic()
    log.info("%s: tallying %d records for the views (once, after an upgrade)", path, total)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute(_BACKFILLING).fetchone() is None:
                conn.execute("COMMIT")  # another process finished it meanwhile
                break
            mark = conn.execute("SELECT last FROM tally_backfill").fetchone()
            last = -1 if mark is None else int(mark[0])
            rows = conn.execute(
                "SELECT seq, project, raw FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, BACKFILL_BATCH),
            ).fetchall()
            if not rows:
                conn.execute("DROP TABLE tally_backfill")
                conn.execute("COMMIT")
                break
            tally_records(conn, [(int(s), p, decode(raw)) for s, p, raw in rows], known=known)
            conn.execute("UPDATE tally_backfill SET last = ?", (int(rows[-1][0]),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            known.clear()
            raise
        done += len(rows)
        log.info(
            "%s: tallied %d of %d records (%.0f s)", path, done, total, time.monotonic() - started
        )
    log.info("%s: the views' tallies are complete", path)


class TallyMixin(StoreBase):
    """The reads of the tallies (part of :class:`node.store.sqlite.Store`)."""

    def _project_number(self, project_id: bytes) -> int | None:
        return self._scope_number(project_id.hex(), create=False)

    @guarded
    def project_key(self, project_id: bytes) -> ProjectKey | None:
        """``(records, last_seq)`` of a project's records (genesis included), None if none held:
        one row of ``project_totals``, kept by every insert and purge."""
        number = self._project_number(project_id)
        if number is None:
            return None
        query = "SELECT records, last_seq FROM project_totals WHERE project = ?"
        row = self._db.execute(query, (number,)).fetchone()
        return None if row is None or not row[0] else (int(row[0]), int(row[1]))

    @guarded
    def project_keys(self) -> dict[bytes, ProjectKey]:
        """The key of every project whose genesis is held."""
        query = (
            "SELECT s.name, t.records, t.last_seq FROM project_totals AS t"
            " JOIN scopes AS s ON s.n = t.project WHERE EXISTS (SELECT 1 FROM records AS r"
            f" WHERE r.project = t.project AND r.kind = {GENESIS} AND r.kind <> {CONTRIBUTION})"
        )
        rows = self._db.execute(query)
        return {bytes.fromhex(name): (int(n), int(last)) for name, n, last in rows}

    @guarded
    def tally_rows(self, project_id: bytes) -> list[TallyRow]:
        """A project's stored sums (:class:`protocol.tally.TallyRow`), every contribution
        held counted."""
        number = self._project_number(project_id)
        if number is None:
            return []
        query = (
            "SELECT u.key, u.handle, t.parts, t.contributions, t.minutes FROM tallies AS t"
            " JOIN units AS u ON u.n = t.unit WHERE t.project = ?"
        )
        # SQLite hands blobs back as bytes and integers as int: no conversion a row, and the
        # plain tuples are used as the named ones (made one by one, 20,000 of them cost more
        # than reading them).
        return cast(list[TallyRow], self._db.execute(query, (number,)).fetchall())

    @guarded
    def type_counts(self, project_id: bytes) -> dict[str, int]:
        """A project's contributions per type, every contribution held counted."""
        number = self._project_number(project_id)
        if number is None:
            return {}
        query = "SELECT type, contributions FROM type_tallies WHERE project = ?"
        return {str(kind): int(n) for kind, n in self._db.execute(query, (number,))}

    @guarded
    def newest_contribution(self, project_id: bytes, before: int | None = None) -> int | None:
        """The greatest ``ts`` of the project's contributions held (retracted or not) below
        ``before``, None when there is none: one index seek per contribution type."""
        number = self._project_number(project_id)
        if number is None:
            return None
        types = "SELECT type FROM type_tallies WHERE project = ?"
        query = "SELECT max(ts) FROM typed WHERE project = ? AND type = ?"
        bound: tuple[int, ...] = ()
        if before is not None:
            query += " AND ts < ?"
            bound = (before,)
        found = [
            self._db.execute(query, (number, kind, *bound)).fetchone()[0]
            for (kind,) in self._db.execute(types, (number,)).fetchall()
        ]
        return max((int(ts) for ts in found if ts is not None), default=None)

    @guarded
    def contributions_between(self, project_id: bytes, start: int, end: int | None) -> int:
        """How many of the project's contributions held (retracted or not) have ``start <=
        ts < end`` (no upper bound when ``end`` is None), counted off the index by type."""
        number = self._project_number(project_id)
        if number is None:
            return 0
        query = (
            "SELECT count(*) FROM typed WHERE project = ? AND type IN"
            " (SELECT type FROM type_tallies WHERE project = ?) AND ts >= ?"
        )
        params: list[object] = [number, number, start]
        if end is not None:
            query += " AND ts < ?"
            params.append(end)
        return int(self._db.execute(query, params).fetchone()[0])

    @guarded
    def project_kinds(self, project_id: bytes, kinds: Sequence[str]) -> list[Record]:
        """The records of ``kinds`` filed under a project (its genesis for ``project``), any
        kind but ``contribution``."""
        number = self._project_number(project_id)
        if number is None:
            return []
        numbers = self._kinds_held(kinds)
        query = (
            f"SELECT raw FROM records WHERE project = ? AND kind <> {CONTRIBUTION}"
            f" AND kind IN ({marks(len(numbers))})"
        )
        return [decode(raw) for (raw,) in self._db.execute(query, (number, *numbers))]

    @guarded
    def project_contributions(self, project_id: bytes, ids: Iterable[bytes]) -> list[Record]:
        """The contributions of a project among ``ids`` (others, and unknown ids, skipped)."""
        number = self._project_number(project_id)
        wanted = sorted(set(ids))
        if number is None or not wanted:
            return []
        out: list[Record] = []
        for chunk in chunks(wanted):
            query = (
                f"SELECT raw FROM records WHERE {id_in(len(chunk))}"
                f" AND project = ? AND kind = {CONTRIBUTION}"
            )
            params = (*id_params(chunk), number)
            out.extend(decode(raw) for (raw,) in self._db.execute(query, params))
        return out

    @guarded
    def sharing_contributions(self, project_id: bytes, group: Sequence[bytes]) -> list[Record]:
        """The contributions of a project that credit two or more of the participants in
        ``group`` (keys or handle stand-ins), before claims."""
        number = self._project_number(project_id)
        if number is None:
            return []
        query = (
            "SELECT r.raw FROM records AS r WHERE r.seq IN (SELECT c.seq FROM credits AS c"
            f" JOIN units AS u ON u.n = c.unit WHERE c.project = ? AND u.key IN"
            f" ({marks(len(group))}) GROUP BY c.seq HAVING count(*) > 1)"
        )
        return [decode(raw) for (raw,) in self._db.execute(query, (number, *group))]

    def ledger_rows(
        self,
        project_id: bytes,
        *,
        type: str | None = None,
        units: Sequence[bytes] | None = None,
        after: tuple[int, bytes] | None = None,
    ) -> Iterator[tuple[int, bytes, bytes]]:
        """A project's contributions, newest first (descending ``(ts, id)``) from ``after``:
        ``(ts, id, raw)``, of ``type`` and crediting one of ``units`` (before claims) when
        given. Read a batch at a time under the lock, never held across a ``yield``."""
        while True:
            rows = self._ledger_batch(project_id, type, units, after)
            yield from rows
            if len(rows) < LEDGER_BATCH:
                return
            after = (rows[-1][0], rows[-1][1])

    @guarded
    def _ledger_batch(
        self,
        project_id: bytes,
        type: str | None,
        units: Sequence[bytes] | None,
        after: tuple[int, bytes] | None,
    ) -> list[tuple[int, bytes, bytes]]:
        number = self._project_number(project_id)
        if number is None:
            return []
        # Each filter walks the index that holds its rows in time order; the id breaks ties.
        if units is not None:
            query = (
                "SELECT DISTINCT c.ts, r.id, r.raw FROM credits AS c JOIN units AS u"
                " ON u.n = c.unit JOIN records AS r ON r.seq = c.seq WHERE c.project = ?"
                f" AND u.key IN ({marks(len(units))})"
            )
            params: list[object] = [number, *units]
            time_column = "c.ts"
        elif type is not None:
            query = (
                "SELECT t.ts, r.id, r.raw FROM typed AS t JOIN records AS r ON r.seq = t.seq"
                " WHERE t.project = ? AND t.type = ?"
            )
            params = [number, type]
            time_column = "t.ts"
        else:
            query = f"SELECT ts, id, raw FROM records WHERE scope = ? AND kind = {CONTRIBUTION}"
            params = [number]
            time_column = "ts"
        if after is not None:
            query += f" AND {time_column} <= ? AND ({time_column} < ? OR id < ?)"
            params += [after[0], after[0], after[1]]
        query += f" ORDER BY {time_column} DESC, id DESC LIMIT ?"
        params.append(LEDGER_BATCH)
        return [(int(ts), bytes(i), bytes(raw)) for ts, i, raw in self._db.execute(query, params)]
