"""The node's SQLite store: every record it holds, the indexes behind the views and the
reconciler, and the remembered peers.

Durability. A record is acknowledged only after :meth:`Store.add` returned, and ``add`` returns
only after its transaction committed. The database runs in WAL mode with ``synchronous=FULL``:
each commit fsyncs the write-ahead log, so an acknowledged record survives not only the death
of the process (SIGKILL, OOM) but also a kernel panic or a power cut. ``NORMAL`` would survive
a process crash too (the log is written before the commit returns; only the fsync is deferred
to the next checkpoint) but may lose the last commits on power loss, which breaks the promise
"acknowledged means durable" on exactly the laptops and small boards nodes run on. The price is
one fsync per transaction, not per record, so callers batch: measured on the development VM, a
one-record commit costs 0.2 to 2 ms at FULL (the fsync) against 0.06 ms at NORMAL, while from
100 records a batch the two are alike (about 50,000 records/s; 70,000 to 100,000 at 1,000).
``synchronous="NORMAL"`` stays available for benchmarks and throwaway stores.

Threading. One connection, opened with ``check_same_thread=False``, and one ``threading.Lock``
taken by every public method for its whole duration: the node may call the store from the trio
thread (short calls, well under a millisecond) and from ``trio.to_thread`` workers (big batches,
imports), and the calls are simply serialised. A call from the trio thread may therefore wait
for a worker's batch; ``MAX_BATCH`` keeps that wait bounded. Other processes (a CLI command
while no node runs) may use the same file: SQLite's locking and ``BUSY_TIMEOUT_S`` handle that,
and ``PRAGMA data_version`` tells this connection when someone else wrote, so its caches drop.
A second connection, in a thread of its own, only checkpoints the write-ahead log
(:mod:`node.store.checkpoint`), so that copying the log into the database file happens beside
the writes instead of inside them.

Layout (the schema and its migrations are in :mod:`node.store.schema`). ``records`` is a rowid
table (``seq`` is the order records arrived on this node) with an index on the first 8 bytes of
the 32-byte id (every lookup also compares the whole id; :meth:`Store.add` keeps ids unique); a
``WITHOUT ROWID`` table keyed by the random id measured 15 % larger and four times slower to
fill, because every insert lands on a random page. The author (a 32-byte key) and the kind are
numbers in the row, the author's in ``units`` (:mod:`node.store.tally`), the kind's in
``kinds`` (:data:`node.store.schema.KIND_NUMBERS`): 1.66 times the raw bytes on disk became
1.43 at a million attested records. Scopes ("meta" or a project id in hex) are numbered in a
small ``scopes`` table, and ``records.scope`` and ``records.project`` hold those numbers:
storing the 64-character hex in the row and in two indexes cost over a third more bytes per
record (100,000 contributions of 252 bytes each take 524 bytes a record on disk with this
layout). ``records.project`` is the project a record concerns: its ``project`` key, or, for a
genesis, its own id (so one index lookup yields a project's whole history), and NULL for a
profile.

Decoding is the slow part of every view (``decode_trusted`` runs the canonical codec in pure
Python, about 40 microseconds a record), so :meth:`Store.project_records` keeps each project's
decoded records in an LRU cache bounded by ``MAX_CACHED_RECORDS`` and appends to it as new
records of that project are added, instead of dropping it.

The class is built from one mixin a concept: :mod:`node.store.projects` (a project's records
and keys), :mod:`node.store.peers` (the address book) and
:mod:`node.store.moderation` (records refused by local policy, blocks, bans, purges), on
:class:`node.store.base.StoreBase` (the connection, the lock, scope numbers).
"""

from __future__ import annotations

import heapq
import itertools
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final, TypeAlias, TypeVar

from node.clock import now_ms as _now_ms
from node.memory import malloc_trim
from node.store.base import (
    ID_PREFIX,
    INSERT_ROWS,
    MAX_BATCH,
    Pending,
    ProjectKey,
    StoreClosedError,
    StoreError,
    chunks,
    decode,
    guarded,
    id_in,
    id_params,
    marks,
    project_of,
)
from node.store.bulk import BulkMixin
from node.store.checkpoint import Checkpointer, bound_log
from node.store.moderation import ModerationMixin
from node.store.peers import PeersMixin
from node.store.projects import ProjectsMixin
from node.store.schema import (
    BUSY_TIMEOUT_S,
    CONTRIBUTION,
    GENESIS,
    MIGRATIONS,
    PROFILE,
    SCHEMA_VERSION,
    Synchronous,
    prepare,
)
from node.store.tally import TallyMixin, author_units, backfill, tally_inserted
from protocol.errors import RemoteProtocolError
from protocol.record import ID_SIZE, EndorsementBody, Record, RetractionBody, parse_id_prefix
from protocol.validation import META_SCOPE, scope_of

__all__ = [
    "INSERT_ROWS",
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Pending",
    "ProjectKey",
    "Store",
    "StoreClosedError",
    "StoreError",
]

#: A record's project key, the numbers of its project, scope and kind, and its scope's
#: name (see ``Store._numbers``).
_Numbers: TypeAlias = tuple[bytes | None, int | None, int | None, int | None, str]
#: Whether a record of (project, author) may be served to peers (see ``raw_many``).
Served: TypeAlias = Callable[[bytes | None, bytes], bool]
T = TypeVar("T")
#: Rows fetched per query by ``iter_raw`` (the default and the largest allowed).
ITER_BATCH: Final = 1_000
MAX_ITER_BATCH: Final = 10_000
#: The most records ``unpublished`` returns at once.
MAX_UNPUBLISHED: Final = 10_000


def _columns(
    record: Record, kind: int | None, author: int, project: int | None, scope: int | None
) -> tuple[object, ...]:
    """The indexed columns of a record, in ``INSERT_RECORDS``' order (given the numbers of
    its kind, author and scopes)."""
    body = record.body
    target = body.target if isinstance(body, EndorsementBody | RetractionBody) else None
    return (record.id, record.raw, kind, author, project, scope, record.ts, target)


class Store(ProjectsMixin, PeersMixin, ModerationMixin, TallyMixin, BulkMixin):
    """The SQLite store of one node. Open with :meth:`open`; close, or use as a context manager."""

    # ----------------------------------------------------------------------------------------
    # Opening and closing

    @classmethod
    def open(cls, path: str | Path, *, synchronous: Synchronous = "FULL") -> Store:
        """Open (creating or migrating) the store at ``path``; raises :class:`StoreError`."""
        path = Path(path)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            prepare(conn, path, synchronous)
            backfill(conn, path)
            bound_log(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{path.name} is not a Commons store ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        store = cls(conn, path)
        store._checkpointer = Checkpointer(path, synchronous)
        return store

    def close(self) -> None:
        """Close the connection (idempotent); SQLite checkpoints the log on the last close.

        The background checkpointer closes its connection first, so that this one is the
        last of the process (another process may still hold the file open)."""
        with self._lock:
            conn, self._conn = self._conn, None
            checkpointer, self._checkpointer = self._checkpointer, None
            self._cache.clear()
            self._cached_records = 0
            if checkpointer is not None:
                checkpointer.close()
            if conn is not None:
                conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------
    # Writing records

    @guarded
    def add(
        self, records: Sequence[Record], *, published: bool = False, now_ms: int | None = None
    ) -> list[bool]:
        """Store a batch of validated records in one transaction; True for each one that was new.

        The transaction has committed (and, with FULL, reached the disk) when this returns, so
        the caller may acknowledge the records. A record already held, or repeated within the
        batch, is reported False. ``published`` says whether the records are already out on the
        network (received by gossip or sync) or still to be gossiped by this node (authored
        here, imported); the default errs towards publishing, which gossip deduplicates anyway.
        The store does not validate: callers pass records from ``protocol.validation``.
        """
        if len(records) > MAX_BATCH:
            raise ValueError(f"{len(records)} records in one batch, at most {MAX_BATCH}")
        if not records:
            return []
        received_at = _now_ms() if now_ms is None else now_ms
        new: list[bool] = []
        added: list[tuple[bytes, Record]] = []
        with self._adding() as conn:
            # Inside the write transaction nobody else inserts, so "not held yet and not
            # earlier in this batch" is exactly "inserted", and the new rows go in a few
            # hundred a statement (``insert_rows``).
            held = self._held(conn, [r.id for r in records])
            authors = author_units(conn, records, self._unit_numbers)
            rows = []
            tallied: list[tuple[int | None, Record]] = []
            scopes: set[str] = set()
            # A record's project, scope and kind numbers depend only on its project key
            # and kind, the same for most of a batch (a sync's frame is mostly one
            # project's contributions): looked up once a batch. A genesis is its own
            # project, so its numbers are not kept for the next.
            numbered: dict[tuple[bytes | None, str], _Numbers] = {}
            for record in records:
                is_new = record.id not in held
                new.append(is_new)
                if not is_new:
                    continue
                held.add(record.id)
                kind = record.kind
                numbers = numbered.get((record.project, kind))
                if numbers is None:
                    numbers = self._numbers(record, kind)
                    if kind != "project":
                        numbered[(record.project, kind)] = numbers
                project, pnum, snum, knum, scope = numbers
                scopes.add(scope)
                row = _columns(record, knum, authors[record.author], pnum, snum)
                rows.append((*row, received_at, int(published)))
                tallied.append((pnum, record))
                if project is not None:
                    added.append((project, record))
            first = self._insert_records(conn, rows)
            tally_inserted(conn, first, tallied, self._unit_numbers)
        if rows:  # committed
            self._stored_in(scopes)
        self._cache_added(added)
        return new

    def _numbers(self, record: Record, kind: str) -> _Numbers:
        """A record's project key and the numbers ``add`` stores for its project, scope and
        kind (creating them inside the caller's transaction), and its scope's name."""
        project = project_of(record)
        scope = scope_of(record)
        pnum = None if project is None else self._scope_number(project.hex())
        return project, pnum, self._scope_number(scope), self._kind_number(kind), scope

    @guarded
    def mark_published(self, ids: Sequence[bytes]) -> int:
        """Record that gossip has carried these records; returns how many changed."""
        changed = 0
        with self._transaction() as conn:
            for chunk in chunks(ids):
                query = f"UPDATE records SET published = 1 WHERE {id_in(len(chunk))}"
                changed += conn.execute(query + " AND published = 0", id_params(chunk)).rowcount
        return changed

    # ----------------------------------------------------------------------------------------
    # Reading records

    @guarded
    def get(self, record_id: bytes) -> Record | None:
        query = f"SELECT raw FROM records WHERE {id_in(1)}"
        row = self._db.execute(query, id_params((record_id,))).fetchone()
        return None if row is None else decode(row[0])

    @guarded
    def get_raw(self, record_id: bytes) -> bytes | None:
        query = f"SELECT raw FROM records WHERE {id_in(1)}"
        row = self._db.execute(query, id_params((record_id,))).fetchone()
        return None if row is None else bytes(row[0])

    @guarded
    def has(self, record_id: bytes) -> bool:
        query = f"SELECT 1 FROM records WHERE {id_in(1)}"
        return self._db.execute(query, id_params((record_id,))).fetchone() is not None

    @guarded
    def missing(self, ids: Sequence[bytes]) -> list[bytes]:
        """The ids among ``ids`` this store lacks, in the given order, each once."""
        wanted = list(dict.fromkeys(ids))
        held = self._held(self._db, wanted)
        return [i for i in wanted if i not in held]

    @guarded
    def raw_many(self, ids: Sequence[bytes], *, served: Served | None = None) -> list[bytes]:
        """The bytes of the held records among ``ids``, in the given order; unknown ids skipped,
        and with ``served``, the records for whose (project, author) it says False."""
        wanted = list(dict.fromkeys(ids))
        found: dict[bytes, bytes] = {}
        if served is None:  # no author or project to look up (a sync server's usual case)
            for chunk in chunks(wanted):
                query = f"SELECT id, raw FROM records WHERE {id_in(len(chunk))}"
                rows = self._db.execute(query, id_params(chunk))
                found.update((bytes(rid), bytes(raw)) for rid, raw in rows)
            return [found[i] for i in wanted if i in found]
        for chunk in chunks(wanted):
            query = (
                "SELECT r.id, r.raw, u.key, s.name FROM records AS r JOIN units AS u"
                " ON u.n = r.author LEFT JOIN scopes AS s ON s.n = r.project"
                f" WHERE {id_in(len(chunk), 'r.id')}"
            )
            for rid, raw, author, project in self._db.execute(query, id_params(chunk)):
                key = None if project is None else bytes.fromhex(project)
                if served(key, bytes(author)):
                    found[bytes(rid)] = bytes(raw)
        return [found[i] for i in wanted if i in found]

    @guarded
    def resolve_prefix(self, text: str, kind: str | Collection[str] | None = None) -> bytes:
        """The one held id (of ``kind``, if given) starting with the hex prefix ``text``.

        A range query on the id index: every id with the prefix lies between the prefix padded
        with zeros and the prefix padded with ``f`` (and its first 8 bytes between theirs).
        Raises ``RemoteProtocolError`` with code ``bad-id`` (not 8..64 hex characters),
        ``unknown-id`` or ``ambiguous-id``.
        """
        prefix = parse_id_prefix(text)
        lo = bytes.fromhex(prefix.ljust(2 * ID_SIZE, "0"))
        hi = bytes.fromhex(prefix.ljust(2 * ID_SIZE, "f"))
        kinds = [kind] if isinstance(kind, str) else sorted(kind or ())
        query = (
            f"SELECT id FROM records WHERE substr(id, 1, {ID_PREFIX}) BETWEEN ? AND ?"
            " AND id BETWEEN ? AND ?"
        )
        params: list[object] = [lo[:ID_PREFIX], hi[:ID_PREFIX], lo, hi]
        if kinds:
            # The unary + keeps SQLite off the kind indexes: the id range is the narrow one.
            numbers = self._kinds_held(kinds)
            query += f" AND +kind IN ({marks(len(numbers))})"
            params += numbers
        query += " ORDER BY id LIMIT 3"
        matches = [row[0] for row in self._db.execute(query, params)]
        what = " or ".join(kinds) if kinds else "record"
        if not matches:
            raise RemoteProtocolError("unknown-id", f"no {what} id starts with {prefix}")
        if len(matches) > 1:
            shown = ", ".join(m.hex()[:16] for m in matches)
            raise RemoteProtocolError(
                "ambiguous-id", f"{prefix} matches several {what} ids ({shown}...): type more of it"
            )
        return bytes(matches[0])

    @guarded
    def referring(self, target: bytes) -> list[Record]:
        """The endorsements and retractions that name ``target``, in (ts, id) order."""
        query = "SELECT raw FROM records WHERE target = ? ORDER BY ts, id"
        return [decode(row[0]) for row in self._db.execute(query, (target,))]

    @guarded
    def count(self) -> int:
        query = "SELECT coalesce(sum(records), 0) FROM kind_totals"
        return int(self._db.execute(query).fetchone()[0])

    @guarded
    def count_by_kind(self) -> dict[str, int]:
        query = "SELECT kind, records FROM kind_totals ORDER BY kind"
        return {kind: int(n) for kind, n in self._db.execute(query)}

    @guarded
    def project_ids(self) -> list[bytes]:
        """The ids of the project genesis records held, oldest first."""
        query = f"SELECT id FROM records WHERE kind = {GENESIS} ORDER BY ts, id"
        return [bytes(row[0]) for row in self._db.execute(query)]

    @guarded
    def profiles(self) -> list[Record]:
        """Each author's current profile: the one with the greatest (ts, id), by author."""
        query = (
            "SELECT p.raw FROM (SELECT raw, author, row_number() OVER"
            " (PARTITION BY author ORDER BY ts DESC, id DESC) AS rank"
            f" FROM records WHERE kind = {PROFILE}) AS p JOIN units AS u ON u.n = p.author"
            " WHERE p.rank = 1 ORDER BY u.key"
        )
        return [decode(row[0]) for row in self._db.execute(query)]

    @guarded
    def kinds_key(self, kinds: Collection[str]) -> ProjectKey:
        """``(records, greatest seq)`` of the records of these unscoped kinds (no project
        key: identity records), off the partial project index: records are only ever added,
        so an equal key means the same records."""
        numbers = self._kinds_held(kinds)
        query = (
            "SELECT count(*), max(seq) FROM records WHERE project IS NULL"
            f" AND kind <> {CONTRIBUTION} AND kind IN ({marks(len(numbers))})"
        )
        count, last = self._db.execute(query, numbers).fetchone()
        return (int(count), int(last or 0))

    @guarded
    def of_kinds(self, kinds: Collection[str]) -> list[Record]:
        """Every record of these unscoped kinds (the identity records the person fold reads)."""
        numbers = self._kinds_held(kinds)
        query = (
            f"SELECT raw FROM records WHERE project IS NULL AND kind <> {CONTRIBUTION}"
            f" AND kind IN ({marks(len(numbers))}) ORDER BY seq"
        )
        return [decode(row[0]) for row in self._db.execute(query, numbers)]

    @guarded
    def profile(self, author: bytes) -> Record | None:
        """The current profile of one author, or None."""
        query = (
            f"SELECT raw FROM records WHERE kind = {PROFILE} AND author ="
            " (SELECT n FROM units WHERE key = ?) ORDER BY ts DESC, id DESC LIMIT 1"
        )
        row = self._db.execute(query, (author,)).fetchone()
        return None if row is None else decode(row[0])

    @guarded
    def latest(
        self,
        kinds: Collection[str],
        *,
        author: bytes | None = None,
        project: bytes | None = None,
        limit: int = 50,
    ) -> list[Record]:
        """The records of ``kinds`` most recently stored here (by ``author``, in ``project``,
        when given), newest arrival first: what the dashboard lists as recent activity."""
        numbers = self._kinds_held(kinds)
        query = f"SELECT raw FROM records WHERE kind IN ({marks(len(numbers))})"
        params: list[object] = list(numbers)
        if author is not None:
            query += " AND author = (SELECT n FROM units WHERE key = ?)"
            params.append(author)
        if project is not None:
            query += " AND project = (SELECT n FROM scopes WHERE name = ?)"
            params.append(project.hex())
        query += " ORDER BY seq DESC LIMIT ?"
        params.append(max(0, min(limit, MAX_UNPUBLISHED)))
        return [decode(row[0]) for row in self._db.execute(query, params)]

    @guarded
    def unpublished(self, limit: int = MAX_UNPUBLISHED) -> list[Record]:
        """Records this node has yet to gossip, in the order they were stored."""
        limit = max(0, min(limit, MAX_UNPUBLISHED))
        query = "SELECT raw FROM records WHERE published = 0 ORDER BY seq LIMIT ?"
        return [decode(row[0]) for row in self._db.execute(query, (limit,))]

    @guarded
    def size_bytes(self) -> int:
        """Bytes of the database's pages in use (free pages left by a purge not counted):
        what ``[policy] max_store_mb`` limits. The write-ahead log, bounded by checkpoints,
        is not counted."""
        pages, free, size = (
            int(self._db.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "freelist_count", "page_size")
        )
        return (pages - free) * size

    @guarded
    def integrity_check(self) -> str:
        """SQLite's own check of every page and index: ``"ok"`` or the problems found."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)

    # ----------------------------------------------------------------------------------------
    # Scopes, for the reconciler and the exporter

    @guarded
    def release_memory(self) -> None:
        """Give back what a big read left behind: SQLite's page cache for this connection
        (``PRAGMA shrink_memory``) and, with glibc, the heap's free pages (``malloc_trim``).

        Called after a big scope's negentropy item list is dropped: reading 100,000 items
        leaves about 12 MB in the page cache and the heap that an idle node never needs.
        """
        self._db.execute("PRAGMA shrink_memory")
        malloc_trim()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let every read in the block see the store as it was at the first one (one read
        transaction: the WAL keeps that state while other connections commit).

        For a store opened a second time to read from (the views make a project's answers
        from several reads, which must not straddle a sync's commits): nothing may be
        written through it, and one thread at a time opens such a block. Reads by other
        threads in the meantime see the same state. The store's lock is not held in
        between, so the other connection's writers never wait for the block.
        """
        with self._lock:
            self._db.execute("BEGIN")
        try:
            yield
        finally:
            with self._lock:
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    @guarded
    def version(self) -> tuple[int, int]:
        """A value that changes whenever records are stored, here or by another process."""
        self._drop_cache_if_changed()
        return self._data_version, self._changes

    @guarded
    def scope_version(self, scope: str) -> tuple[int, int]:
        """A value that changes whenever records of ``scope`` are stored here, and whenever
        another process stores anything: equal values mean equal item lists."""
        self._drop_cache_if_changed()
        return self._data_version, self._scope_changes.get(scope, 0)

    @guarded
    def scopes(self) -> dict[str, int]:
        """Every scope holding records, with its record count: ``meta`` first, then by name.

        Counting scans every record (tens of milliseconds at 100,000), and every sync session
        asks (``hello``), so the answer is kept until records are stored again.
        """
        self._drop_cache_if_changed()
        version = (self._data_version, self._changes)
        if self._scopes_memo is not None and self._scopes_memo[0] == version:
            return dict(self._scopes_memo[1])
        query = (
            "SELECT s.name, count(*) FROM records AS r JOIN scopes AS s ON s.n = r.scope"
            " GROUP BY r.scope"
        )
        counts = {name: int(n) for name, n in self._db.execute(query)}
        result = dict(sorted(counts.items(), key=lambda item: (item[0] != META_SCOPE, item[0])))
        self._scopes_memo = (version, result)
        return dict(result)

    def items(self, scope: str) -> list[tuple[int, bytes]]:
        """The (ts, id) pairs of a scope, ascending: negentropy's item list, off the index.

        The ids of records refused by local policy are items too (see
        :mod:`node.store.moderation`): reconciliation must count them as held, not missing.
        A list, for tests and tools; the sync streams them (:meth:`build_items`).
        """
        return self.build_items(scope, _distinct)

    @guarded
    def build_items(self, scope: str, build: Callable[[Iterable[tuple[int, bytes]]], T]) -> T:
        """``build`` applied to the (ts, id) pairs of a scope as :meth:`items` has them, but
        streamed from the index under the lock instead of listed: a catch-up's item list of a
        million pairs would cost about 160 MB as a list of tuples before ``build`` (the sync's
        compact ``negentropy.Storage``) has taken them in. The pairs come in ascending order,
        held and refused merged; an id both held and refused comes twice, one after the other.
        """
        number = self._scope_number(scope, create=False)
        if number is None:
            return build(())
        held = self._db.execute(
            "SELECT ts, id FROM records WHERE scope = ? ORDER BY ts, id", (number,)
        )
        refused = self._db.execute(
            "SELECT ts, id FROM refused WHERE scope = ? ORDER BY ts, id", (number,)
        )
        return build(heapq.merge(held, refused))

    def iter_raw(
        self, scopes: Iterable[str] | None = None, *, batch: int = ITER_BATCH
    ) -> Iterator[bytes]:
        """The bytes of every record of ``scopes`` (default: all), in (ts, id) order.

        Each scope is read a page at a time by keyset pagination on its index and the scopes
        are merged, so the lock is held for one page, never across a ``yield``: an export may
        run while the node keeps storing records (those may or may not be included).
        """
        if not 1 <= batch <= MAX_ITER_BATCH:
            raise ValueError(f"batch must be 1..{MAX_ITER_BATCH}, not {batch}")
        names = list(self.scopes()) if scopes is None else list(dict.fromkeys(scopes))
        pages = [self._scope_pages(name, batch) for name in names]
        # Ids are unique, so the merge never compares two records' bytes.
        for _ts, _id, raw in heapq.merge(*pages):
            yield raw

    def _scope_pages(self, scope: str, batch: int) -> Iterator[tuple[int, bytes, bytes]]:
        after: tuple[int, bytes] = (-1, b"")
        while True:
            page = self._page(scope, after, batch)
            yield from page
            if len(page) < batch:
                return
            after = (page[-1][0], page[-1][1])

    @guarded
    def _page(
        self, scope: str, after: tuple[int, bytes], limit: int
    ) -> list[tuple[int, bytes, bytes]]:
        number = self._scope_number(scope, create=False)
        if number is None:
            return []
        query = (
            "SELECT ts, id, raw FROM records WHERE scope = ? AND (ts, id) > (?, ?)"
            " ORDER BY ts, id LIMIT ?"
        )
        rows = self._db.execute(query, (number, *after, limit))
        return [(int(ts), bytes(i), bytes(raw)) for ts, i, raw in rows]


def _distinct(pairs: Iterable[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Ascending pairs as a list, each once (a pair both held and refused comes twice)."""
    return [pair for pair, _ in itertools.groupby(pairs)]
