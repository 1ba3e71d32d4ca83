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

Layout (schema v1, see ``_V1``). ``records`` is a rowid table (``seq`` is the order records
arrived on this node) with a unique index on the 32-byte id; a ``WITHOUT ROWID`` table keyed by
the random id measured 15 % larger and four times slower to fill, because every insert lands on
a random page. Scopes ("meta" or a project id in hex) are numbered in a small ``scopes`` table,
and ``records.scope`` and ``records.project`` hold those numbers: storing the 64-character hex
in the row and in two indexes cost over a third more bytes per record (100,000 contributions
of 252 bytes each take 524 bytes a record on disk with this layout). ``records.project`` is the
project a record concerns: its ``project`` key, or, for a genesis, its own id (so one index
lookup yields a project's whole history), and NULL for a profile.

Decoding is the slow part of every view (``decode_trusted`` runs the canonical codec in pure
Python, about 40 microseconds a record), so :meth:`Store.project_records` keeps each project's
decoded records in an LRU cache bounded by ``MAX_CACHED_RECORDS`` and appends to it as new
records of that project are added, instead of dropping it.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, Final, Literal, ParamSpec, TypeAlias, TypeVar

from node.clock import now_ms as _now_ms
from node.memory import malloc_trim
from protocol.errors import ProtocolError, RemoteProtocolError
from protocol.record import (
    ID_SIZE,
    EndorsementBody,
    Record,
    RetractionBody,
    decode_trusted,
    parse_id_prefix,
)
from protocol.validation import META_SCOPE, scope_of

__all__ = [
    "MAX_BATCH",
    "SCHEMA_VERSION",
    "ProjectKey",
    "SnapshotKey",
    "Store",
    "StoreClosedError",
    "StoreError",
]

logger = logging.getLogger(__name__)

#: Marks a database file as a Commons store ("Cmns"); any other value is someone else's file.
APPLICATION_ID: Final = 0x436D6E73
#: How long a write waits for another process's transaction before failing.
BUSY_TIMEOUT_S: Final = 5.0
#: SQLite page cache for this connection, in KiB (negative ``cache_size`` means KiB).
PAGE_CACHE_KIB: Final = 16 * 1024
#: The most records one ``add`` call (one transaction) takes.
MAX_BATCH: Final = 10_000
#: The most ``?`` parameters in one statement; longer id lists are split into chunks.
MAX_SQL_PARAMS: Final = 500
#: Rows fetched per query by ``iter_raw`` (the default and the largest allowed).
ITER_BATCH: Final = 1_000
MAX_ITER_BATCH: Final = 10_000
#: The most records ``unpublished`` returns at once.
MAX_UNPUBLISHED: Final = 10_000
#: Decoded records kept by the per-project cache, in all projects together (about 1 KB each).
MAX_CACHED_RECORDS: Final = 150_000
#: Bounds of the peer address book: peers kept, addresses per peer, characters per address.
MAX_PEERS: Final = 1_000
MAX_PEER_ADDRS: Final = 16
MAX_ADDR_LENGTH: Final = 1_000
MAX_PEER_ID_LENGTH: Final = 128
#: A peer that failed this many dials in a row (without a success between) is forgotten.
MAX_PEER_FAILURES: Final = 10

Synchronous: TypeAlias = Literal["FULL", "NORMAL"]
#: A project's record set as the store can name it without decoding: (records, greatest seq).
ProjectKey: TypeAlias = tuple[int, int]
#: What a stored view snapshot was made from: the project's key, and the snapshot's format.
SnapshotKey: TypeAlias = tuple[ProjectKey, int]


class StoreError(Exception):
    """The store cannot be used: not a Commons store, damaged, newer schema, disk error."""


class StoreClosedError(StoreError):
    """The store was closed by this process (we did it), as opposed to a broken database."""


# --------------------------------------------------------------------------------------------
# Schema. Migration i (0-based) takes the database from user_version i to i + 1; a released
# migration is never edited, a change is a new one appended to the list.

_V1: Final = (
    # "meta" or a project id in hex, numbered; a project's number is its scope's.
    "CREATE TABLE scopes (n INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # seq: arrival order on this node. Records are never deleted, so seq only grows.
    """CREATE TABLE records (
        seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, raw BLOB NOT NULL,
        kind TEXT NOT NULL, author BLOB NOT NULL, ts INTEGER NOT NULL,
        project INTEGER REFERENCES scopes (n), scope INTEGER NOT NULL REFERENCES scopes (n),
        target BLOB, received_at INTEGER NOT NULL, published INTEGER NOT NULL DEFAULT 0
    )""",
    # Negentropy's item list of a scope, in (ts, id) order, straight from the index.
    "CREATE INDEX records_scope ON records (scope, ts, id)",
    # A project's history (genesis, updates, contributions, endorsements, retractions).
    "CREATE INDEX records_project ON records (project, kind)",
    "CREATE INDEX records_kind ON records (kind)",
    # Profiles per author, latest last; partial, so other records cost nothing here.
    "CREATE INDEX records_profile ON records (author, ts, id) WHERE kind = 'profile'",
    "CREATE INDEX records_target ON records (target) WHERE target IS NOT NULL",
    # Normally empty: records authored here that gossip has not carried yet.
    "CREATE INDEX records_unpublished ON records (published) WHERE published = 0",
    # addrs: a JSON list of multiaddrs. Times in ms since the epoch.
    """CREATE TABLE peers (
        peer_id TEXT PRIMARY KEY, addrs TEXT NOT NULL, last_seen INTEGER NOT NULL,
        last_dial_ok INTEGER, last_failure INTEGER, failures INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    "CREATE INDEX peers_seen ON peers (last_seen)",
    f"PRAGMA application_id = {APPLICATION_ID}",
)
_V2: Final = (
    # One snapshot of a project's view results per project (node.views): valid while the
    # project's key is still (records, last_seq); ``format`` is node.views' encoding.
    """CREATE TABLE view_snapshots (
        project INTEGER PRIMARY KEY REFERENCES scopes (n),
        records INTEGER NOT NULL, last_seq INTEGER NOT NULL, format INTEGER NOT NULL,
        written_at INTEGER NOT NULL, data BLOB NOT NULL
    )""",
)
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2)
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: Rows per INSERT statement (10 parameters each; SQLite allows 32,766 since 3.32).
INSERT_ROWS: Final = 400


def _insert_sql(rows: int) -> str:
    """One INSERT of ``rows`` rows.

    Many rows a statement rather than ``executemany``: Python's sqlite3 releases the GIL for
    each step of a statement and takes it back for the next row, and while the validation
    threads run Python beside it every take waits its turn. Measured on 100,000 records:
    ``executemany`` 9 microseconds a row alone, 57 beside two busy Python threads; 400 rows a
    statement 8 and 10.
    """
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT OR IGNORE INTO records"
        " (id, raw, kind, author, project, scope, ts, target, received_at, published)"
        f" VALUES {values}"
    )


_INSERT_MANY: Final = _insert_sql(INSERT_ROWS)

P = ParamSpec("P")
T = TypeVar("T")


def _guarded(method: Callable[Concatenate[Store, P], T]) -> Callable[Concatenate[Store, P], T]:
    """Run a public method under the store's lock, mapping SQLite's errors to StoreError."""

    @functools.wraps(method)
    def wrapper(self: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            if self._conn is None:
                raise StoreClosedError(f"{self.path.name}: the store is closed")
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: {exc}") from exc

    return wrapper


@dataclass(slots=True)
class _CachedProject:
    genesis: Record | None
    records: list[Record]
    ordered: bool = True


def _order(record: Record) -> tuple[int, bytes]:
    return (record.ts, record.id)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A project's records read under the lock, to be decoded outside it."""

    raws: list[bytes]
    last_seq: int


def _snapshot(entry: _CachedProject) -> tuple[Record | None, list[Record]]:
    """Sort a cached project if appends disordered it, and copy it (under the store's lock)."""
    if not entry.ordered:
        entry.records.sort(key=_order)
        entry.ordered = True
    return entry.genesis, list(entry.records)


def _chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), MAX_SQL_PARAMS):
        yield items[start : start + MAX_SQL_PARAMS]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    whole = len(rows) - len(rows) % INSERT_ROWS
    for start in range(0, whole, INSERT_ROWS):
        conn.execute(_INSERT_MANY, [v for row in rows[start : start + INSERT_ROWS] for v in row])
    if whole < len(rows):
        rest = rows[whole:]
        conn.execute(_insert_sql(len(rest)), [v for row in rest for v in row])


def _project_of(record: Record) -> bytes | None:
    """The project a record concerns: its project key; a genesis concerns itself."""
    if record.kind == "project":
        return record.id
    return record.project


def _columns(record: Record, project: int | None, scope: int | None) -> tuple[object, ...]:
    """The indexed columns of a record, in ``_insert_sql``'s order (given the scope numbers)."""
    body = record.body
    target = body.target if isinstance(body, EndorsementBody | RetractionBody) else None
    return (record.id, record.raw, record.kind, record.author, project, scope, record.ts, target)


def _decode(raw: bytes) -> Record:
    try:
        return decode_trusted(raw)
    except ProtocolError as exc:
        raise StoreError(f"a stored record does not decode, the store is damaged ({exc})") from exc


class Store:
    """The SQLite store of one node. Open with :meth:`open`; close, or use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        self._scope_numbers: dict[str, int] = {}
        self._cache: OrderedDict[bytes, _CachedProject] = OrderedDict()
        self._cached_records = 0
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        #: Commits by this connection that stored new records, in all and per scope (see
        #: :meth:`version` and :meth:`scope_version`).
        self._changes = 0
        self._scope_changes: dict[str, int] = {}
        self._scopes_memo: tuple[tuple[int, int], dict[str, int]] | None = None
        #: Project keys read since records were last stored, by project (see project_key).
        self._keys_memo: tuple[tuple[int, int], dict[bytes, ProjectKey | None]] = ((-1, -1), {})

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
            _prepare(conn, path, synchronous)
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StoreError(f"cannot open {path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{path.name} is not a Commons store ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection (idempotent); SQLite checkpoints the log on the last close."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._cache.clear()
            self._cached_records = 0
            if conn is not None:
                conn.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreClosedError(f"{self.path.name}: the store is closed")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock at once, so a busy database fails (after
        ``BUSY_TIMEOUT_S``) before any work rather than at commit.
        """
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    # ----------------------------------------------------------------------------------------
    # Writing records

    @_guarded
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
        try:
            with self._transaction() as conn:
                # Inside the write transaction nobody else inserts, so "not held yet and not
                # earlier in this batch" is exactly "inserted"; one executemany for the new
                # rows costs a third less than a statement per record.
                held = self._held(conn, [r.id for r in records])
                rows = []
                scopes: set[str] = set()
                for record in records:
                    is_new = record.id not in held
                    new.append(is_new)
                    if not is_new:
                        continue
                    held.add(record.id)
                    project = _project_of(record)
                    scope = scope_of(record)
                    scopes.add(scope)
                    numbers = (
                        None if project is None else self._scope_number(project.hex()),
                        self._scope_number(scope),
                    )
                    rows.append((*_columns(record, *numbers), received_at, int(published)))
                    if project is not None:
                        added.append((project, record))
                _insert(conn, rows)
            if rows:  # committed
                self._changes += 1
                for scope in scopes:
                    self._scope_changes[scope] = self._scope_changes.get(scope, 0) + 1
        except BaseException:
            # Scope numbers handed out inside the rolled-back transaction no longer exist.
            self._scope_numbers.clear()
            raise
        self._cache_added(added)
        return new

    @staticmethod
    def _held(conn: sqlite3.Connection, ids: Sequence[bytes]) -> set[bytes]:
        """The ids among ``ids`` already stored (inside the caller's transaction)."""
        held: set[bytes] = set()
        for chunk in _chunks(ids):
            query = f"SELECT id FROM records WHERE id IN ({_marks(len(chunk))})"
            held.update(bytes(row[0]) for row in conn.execute(query, tuple(chunk)))
        return held

    def _scope_number(self, name: str, *, create: bool = True) -> int | None:
        """The number of a scope, creating it (inside the caller's transaction) if asked."""
        number = self._scope_numbers.get(name)
        if number is not None:
            return number
        row = self._db.execute("SELECT n FROM scopes WHERE name = ?", (name,)).fetchone()
        if row is not None:
            number = int(row[0])
        elif create:
            number = self._db.execute("INSERT INTO scopes (name) VALUES (?)", (name,)).lastrowid
        if number is not None:
            self._scope_numbers[name] = number
        return number

    @_guarded
    def mark_published(self, ids: Sequence[bytes]) -> int:
        """Record that gossip has carried these records; returns how many changed."""
        changed = 0
        with self._transaction() as conn:
            for chunk in _chunks(ids):
                query = f"UPDATE records SET published = 1 WHERE id IN ({_marks(len(chunk))})"
                changed += conn.execute(query + " AND published = 0", tuple(chunk)).rowcount
        return changed

    # ----------------------------------------------------------------------------------------
    # Reading records

    @_guarded
    def get(self, record_id: bytes) -> Record | None:
        row = self._db.execute("SELECT raw FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else _decode(row[0])

    @_guarded
    def get_raw(self, record_id: bytes) -> bytes | None:
        row = self._db.execute("SELECT raw FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else bytes(row[0])

    @_guarded
    def has(self, record_id: bytes) -> bool:
        query = "SELECT 1 FROM records WHERE id = ?"
        return self._db.execute(query, (record_id,)).fetchone() is not None

    @_guarded
    def missing(self, ids: Sequence[bytes]) -> list[bytes]:
        """The ids among ``ids`` this store lacks, in the given order, each once."""
        wanted = list(dict.fromkeys(ids))
        held: set[bytes] = set()
        for chunk in _chunks(wanted):
            query = f"SELECT id FROM records WHERE id IN ({_marks(len(chunk))})"
            held.update(row[0] for row in self._db.execute(query, tuple(chunk)))
        return [i for i in wanted if i not in held]

    @_guarded
    def raw_many(self, ids: Sequence[bytes]) -> list[bytes]:
        """The bytes of the held records among ``ids``, in the given order; unknown ids skipped."""
        wanted = list(dict.fromkeys(ids))
        found: dict[bytes, bytes] = {}
        for chunk in _chunks(wanted):
            query = f"SELECT id, raw FROM records WHERE id IN ({_marks(len(chunk))})"
            found.update((row[0], row[1]) for row in self._db.execute(query, tuple(chunk)))
        return [found[i] for i in wanted if i in found]

    @_guarded
    def resolve_prefix(self, text: str, kind: str | Collection[str] | None = None) -> bytes:
        """The one held id (of ``kind``, if given) starting with the hex prefix ``text``.

        A range query on the id index: every id with the prefix lies between the prefix padded
        with zeros and the prefix padded with ``f``. Raises ``RemoteProtocolError`` with code
        ``bad-id`` (not 8..64 hex characters), ``unknown-id`` or ``ambiguous-id``.
        """
        prefix = parse_id_prefix(text)
        lo = bytes.fromhex(prefix.ljust(2 * ID_SIZE, "0"))
        hi = bytes.fromhex(prefix.ljust(2 * ID_SIZE, "f"))
        kinds = [kind] if isinstance(kind, str) else sorted(kind or ())
        query = "SELECT id FROM records WHERE id BETWEEN ? AND ?"
        if kinds:
            # The unary + keeps SQLite off the kind index: the id range is the narrow one.
            query += f" AND +kind IN ({_marks(len(kinds))})"
        query += " ORDER BY id LIMIT 3"
        matches = [row[0] for row in self._db.execute(query, (lo, hi, *kinds))]
        what = " or ".join(kinds) if kinds else "record"
        if not matches:
            raise RemoteProtocolError("unknown-id", f"no {what} id starts with {prefix}")
        if len(matches) > 1:
            shown = ", ".join(m.hex()[:16] for m in matches)
            raise RemoteProtocolError(
                "ambiguous-id", f"{prefix} matches several {what} ids ({shown}...): type more of it"
            )
        return bytes(matches[0])

    @_guarded
    def referring(self, target: bytes) -> list[Record]:
        """The endorsements and retractions that name ``target``, in (ts, id) order."""
        query = "SELECT raw FROM records WHERE target = ? ORDER BY ts, id"
        return [_decode(row[0]) for row in self._db.execute(query, (target,))]

    @_guarded
    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    @_guarded
    def count_by_kind(self) -> dict[str, int]:
        query = "SELECT kind, count(*) FROM records GROUP BY kind ORDER BY kind"
        return {kind: int(n) for kind, n in self._db.execute(query)}

    @_guarded
    def project_ids(self) -> list[bytes]:
        """The ids of the project genesis records held, oldest first."""
        query = "SELECT id FROM records WHERE kind = 'project' ORDER BY ts, id"
        return [bytes(row[0]) for row in self._db.execute(query)]

    @_guarded
    def profiles(self) -> list[Record]:
        """Each author's current profile: the one with the greatest (ts, id), by author."""
        query = (
            "SELECT raw FROM (SELECT raw, author, row_number() OVER"
            " (PARTITION BY author ORDER BY ts DESC, id DESC) AS rank"
            " FROM records WHERE kind = 'profile') WHERE rank = 1 ORDER BY author"
        )
        return [_decode(row[0]) for row in self._db.execute(query)]

    @_guarded
    def kinds_key(self, kinds: Collection[str]) -> ProjectKey:
        """``(records, greatest seq)`` of the records of these kinds, off the kind index:
        records are only ever added, so an equal key means the same records."""
        query = f"SELECT count(*), max(seq) FROM records WHERE kind IN ({_marks(len(kinds))})"
        count, last = self._db.execute(query, tuple(kinds)).fetchone()
        return (int(count), int(last or 0))

    @_guarded
    def of_kinds(self, kinds: Collection[str]) -> list[Record]:
        """Every record of these kinds (the identity records the person fold reads)."""
        query = f"SELECT raw FROM records WHERE kind IN ({_marks(len(kinds))}) ORDER BY seq"
        return [_decode(row[0]) for row in self._db.execute(query, tuple(kinds))]

    @_guarded
    def profile(self, author: bytes) -> Record | None:
        """The current profile of one author, or None."""
        query = (
            "SELECT raw FROM records WHERE kind = 'profile' AND author = ?"
            " ORDER BY ts DESC, id DESC LIMIT 1"
        )
        row = self._db.execute(query, (author,)).fetchone()
        return None if row is None else _decode(row[0])

    @_guarded
    def unpublished(self, limit: int = MAX_UNPUBLISHED) -> list[Record]:
        """Records this node has yet to gossip, in the order they were stored."""
        limit = max(0, min(limit, MAX_UNPUBLISHED))
        query = "SELECT raw FROM records WHERE published = 0 ORDER BY seq LIMIT ?"
        return [_decode(row[0]) for row in self._db.execute(query, (limit,))]

    @_guarded
    def integrity_check(self) -> str:
        """SQLite's own check of every page and index: ``"ok"`` or the problems found."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(row[0]) for row in rows)

    # ----------------------------------------------------------------------------------------
    # Scopes, for the reconciler and the exporter

    @_guarded
    def release_memory(self) -> None:
        """Give back what a big read left behind: SQLite's page cache for this connection
        (``PRAGMA shrink_memory``) and, with glibc, the heap's free pages (``malloc_trim``).

        Called after a big scope's negentropy item list is dropped: reading 100,000 items
        leaves about 12 MB in the page cache and the heap that an idle node never needs.
        """
        self._db.execute("PRAGMA shrink_memory")
        malloc_trim()

    @_guarded
    def version(self) -> tuple[int, int]:
        """A value that changes whenever records are stored, here or by another process."""
        self._drop_cache_if_changed()
        return self._data_version, self._changes

    @_guarded
    def scope_version(self, scope: str) -> tuple[int, int]:
        """A value that changes whenever records of ``scope`` are stored here, and whenever
        another process stores anything: equal values mean equal item lists."""
        self._drop_cache_if_changed()
        return self._data_version, self._scope_changes.get(scope, 0)

    @_guarded
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

    @_guarded
    def items(self, scope: str) -> list[tuple[int, bytes]]:
        """The (ts, id) pairs of a scope, ascending: negentropy's item list, off the index."""
        number = self._scope_number(scope, create=False)
        if number is None:
            return []
        query = "SELECT ts, id FROM records WHERE scope = ? ORDER BY ts, id"
        return [(int(ts), bytes(i)) for ts, i in self._db.execute(query, (number,))]

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

    @_guarded
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

    # ----------------------------------------------------------------------------------------
    # A project's records, decoded and cached, for protocol.ledger

    def project_records(self, project_id: bytes) -> tuple[Record | None, list[Record]]:
        """The genesis of a project (None if not held) and its other records in (ts, id) order.

        "Its other records" are the project-updates, contributions, endorsements and
        retractions whose ``project`` key is ``project_id``: everything the ledger folds.
        The first call for a project decodes its records (about 2.5 s for 55,000, so call it
        from a worker thread); the lock is not held while decoding, so the node keeps storing
        records meanwhile. Later calls return the cached list, kept up to date by :meth:`add`,
        in about a millisecond. The records are frozen; the list is a copy the caller may keep.
        """
        cached = self._cached_project(project_id)
        if isinstance(cached, tuple):
            return cached
        decoded = [_decode(raw) for raw in cached.raws]
        return self._install_project(project_id, decoded, cached.last_seq)

    @_guarded
    def _cached_project(self, project_id: bytes) -> tuple[Record | None, list[Record]] | _Pending:
        """A copy of the cached project, or the raw records to decode outside the lock."""
        self._drop_cache_if_changed()
        entry = self._cache.get(project_id)
        if entry is not None:
            self._cache.move_to_end(project_id)
            return _snapshot(entry)
        number = self._scope_number(project_id.hex(), create=False)
        rows = (
            []
            if number is None
            else self._db.execute(
                "SELECT seq, raw FROM records WHERE project = ?", (number,)
            ).fetchall()
        )
        if not rows:
            return None, []
        return _Pending([bytes(raw) for _, raw in rows], max(int(seq) for seq, _ in rows))

    @_guarded
    def _install_project(
        self, project_id: bytes, decoded: list[Record], last_seq: int
    ) -> tuple[Record | None, list[Record]]:
        """Cache a project decoded outside the lock, with whatever arrived after ``last_seq``."""
        self._drop_cache_if_changed()
        entry = self._cache.get(project_id)
        if entry is None:
            number = self._scope_number(project_id.hex(), create=False)
            query = "SELECT raw FROM records WHERE project = ? AND seq > ?"
            later = [_decode(raw) for (raw,) in self._db.execute(query, (number, last_seq))]
            genesis: Record | None = None
            records: list[Record] = []
            for record in decoded + later:
                if record.kind == "project":
                    genesis = record
                else:
                    records.append(record)
            entry = _CachedProject(genesis, records, ordered=False)
            self._cache_put(project_id, entry)
        return _snapshot(entry)

    def _cache_put(self, project_id: bytes, entry: _CachedProject) -> None:
        size = len(entry.records) + 1
        if size > MAX_CACHED_RECORDS:
            return
        self._cache[project_id] = entry
        self._cached_records += size
        self._evict()

    def _evict(self) -> None:
        while self._cached_records > MAX_CACHED_RECORDS and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached_records -= len(old.records) + 1

    def _cache_added(self, added: Iterable[tuple[bytes, Record]]) -> None:
        """Fold newly stored records into the cached projects they belong to."""
        for project_id, record in added:
            entry = self._cache.get(project_id)
            if entry is None:
                continue
            if record.kind == "project":
                entry.genesis = record
                continue
            if entry.records and _order(record) < _order(entry.records[-1]):
                entry.ordered = False
            entry.records.append(record)
            self._cached_records += 1
        self._evict()

    def _drop_cache_if_changed(self) -> None:
        """Forget every cached project if another connection (process) wrote since."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()
            self._cached_records = 0

    # ----------------------------------------------------------------------------------------
    # View snapshots: a project's key, and the snapshot bytes node.views stores under it

    @_guarded
    def project_key(self, project_id: bytes) -> ProjectKey | None:
        """``(records, last_seq)`` of a project's records (genesis included), None if none held.

        Read off the project index, without decoding: about 3 ms for 55,000 records, and
        remembered until records are stored again (here or by another process).
        """
        self._drop_cache_if_changed()
        version = (self._data_version, self._changes)
        if self._keys_memo[0] != version:
            self._keys_memo = (version, {})
        memo = self._keys_memo[1]
        if project_id in memo:
            return memo[project_id]
        number = self._scope_number(project_id.hex(), create=False)
        key: ProjectKey | None = None
        if number is not None:
            query = "SELECT count(*), max(seq) FROM records WHERE project = ?"
            count, last = self._db.execute(query, (number,)).fetchone()
            if count:
                key = (int(count), int(last))
        memo[project_id] = key
        return key

    @_guarded
    def project_keys(self) -> dict[bytes, ProjectKey]:
        """The key of every project whose genesis is held (one scan of the project index)."""
        query = (
            "SELECT s.name, count(*), max(r.seq) FROM records AS r JOIN scopes AS s"
            " ON s.n = r.project GROUP BY r.project HAVING max(r.kind = 'project')"
        )
        rows = self._db.execute(query)
        return {bytes.fromhex(name): (int(n), int(last)) for name, n, last in rows}

    @_guarded
    def snapshot_keys(self) -> dict[bytes, SnapshotKey]:
        """What each stored view snapshot was made from, by project (the bytes are not read)."""
        query = (
            "SELECT s.name, v.records, v.last_seq, v.format FROM view_snapshots AS v"
            " JOIN scopes AS s ON s.n = v.project"
        )
        return {
            bytes.fromhex(name): ((int(n), int(last)), int(fmt))
            for name, n, last, fmt in self._db.execute(query)
        }

    @_guarded
    def load_snapshot(self, project_id: bytes, key: ProjectKey, format: int) -> bytes | None:
        """The stored snapshot of a project if it was made from ``key`` in ``format``."""
        number = self._scope_number(project_id.hex(), create=False)
        if number is None:
            return None
        query = (
            "SELECT data FROM view_snapshots"
            " WHERE project = ? AND records = ? AND last_seq = ? AND format = ?"
        )
        row = self._db.execute(query, (number, *key, format)).fetchone()
        return None if row is None else bytes(row[0])

    @_guarded
    def save_snapshot(
        self,
        project_id: bytes,
        key: ProjectKey,
        format: int,
        data: bytes,
        *,
        now_ms: int | None = None,
    ) -> bool:
        """Store a project's snapshot made from ``key``, replacing the one held unless that one
        is in the same format and newer (made from more records). True when stored."""
        number = self._scope_number(project_id.hex(), create=False)
        if number is None:
            return False
        with self._transaction() as conn:
            changed = conn.execute(
                "INSERT INTO view_snapshots (project, records, last_seq, format, written_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project) DO UPDATE SET"
                " records = excluded.records, last_seq = excluded.last_seq,"
                " format = excluded.format, written_at = excluded.written_at, data = excluded.data"
                " WHERE format != excluded.format OR last_seq <= excluded.last_seq",
                (number, *key, format, _now_ms() if now_ms is None else now_ms, data),
            ).rowcount
        return changed > 0

    # ----------------------------------------------------------------------------------------
    # The peer address book

    @_guarded
    def remember_peer(self, peer_id: str, addrs: Sequence[str], now_ms: int) -> None:
        """Note a successful connection to ``peer_id`` and the addresses it listens on.

        An empty ``addrs`` keeps the addresses known before (an inbound connection tells us
        none). The book keeps the ``MAX_PEERS`` most recently seen peers.
        """
        if not peer_id or len(peer_id) > MAX_PEER_ID_LENGTH:
            raise ValueError(f"peer id must be 1..{MAX_PEER_ID_LENGTH} characters")
        kept = [a for a in dict.fromkeys(addrs) if 0 < len(a) <= MAX_ADDR_LENGTH]
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO peers (peer_id, addrs, last_seen, last_dial_ok, failures)"
                " VALUES (?, ?, ?, ?, 0) ON CONFLICT (peer_id) DO UPDATE SET"
                " addrs = CASE WHEN excluded.addrs = '[]' THEN addrs ELSE excluded.addrs END,"
                " last_seen = excluded.last_seen, last_dial_ok = excluded.last_dial_ok,"
                " failures = 0",
                (peer_id, json.dumps(kept[:MAX_PEER_ADDRS]), now_ms, now_ms),
            )
            conn.execute(
                "DELETE FROM peers WHERE peer_id NOT IN"
                " (SELECT peer_id FROM peers ORDER BY last_seen DESC LIMIT ?)",
                (MAX_PEERS,),
            )

    @_guarded
    def peer_failure(self, peer_id: str, now_ms: int) -> None:
        """Note a failed dial; a peer failing ``MAX_PEER_FAILURES`` times in a row is dropped."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE peers SET failures = failures + 1, last_failure = ? WHERE peer_id = ?",
                (now_ms, peer_id),
            )
            conn.execute(
                "DELETE FROM peers WHERE peer_id = ? AND failures >= ?",
                (peer_id, MAX_PEER_FAILURES),
            )

    @_guarded
    def known_peers(self, limit: int = MAX_PEERS) -> list[tuple[str, list[str]]]:
        """Remembered peers and their addresses, most recently seen first."""
        query = "SELECT peer_id, addrs FROM peers ORDER BY last_seen DESC, peer_id LIMIT ?"
        out: list[tuple[str, list[str]]] = []
        for peer_id, text in self._db.execute(query, (max(0, min(limit, MAX_PEERS)),)):
            try:
                addrs = json.loads(text)
            except ValueError:
                logger.warning("peer %s has unreadable addresses in the store; skipped", peer_id)
                continue
            out.append((peer_id, [a for a in addrs if isinstance(a, str)]))
        return out


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: Synchronous) -> None:
    """Check that ``conn`` is a Commons store (or empty), set it up, and migrate it."""
    app_id, version = _identity(conn)
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StoreError(f"{path.name} is not a Commons store (it holds other tables)")
    elif app_id != APPLICATION_ID:
        raise StoreError(f"{path.name} is not a Commons store (application id {app_id:#x})")
    _refuse_newer(path, version)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        logger.warning("%s: WAL is not available here, using journal mode %s", path, mode)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute(f"PRAGMA cache_size = {-PAGE_CACHE_KIB}")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our first look and the write lock.
        _, version = _identity(conn)
        _refuse_newer(path, version)
        for migration in MIGRATIONS[version:]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    logger.info("%s: schema migrated from version %d to %d", path, version, SCHEMA_VERSION)


def _refuse_newer(path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path.name} has schema version {version}, newer than this version of commons"
            f" knows ({SCHEMA_VERSION}): upgrade commons to open it"
        )


def _identity(conn: sqlite3.Connection) -> tuple[int, int]:
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return app_id, version
