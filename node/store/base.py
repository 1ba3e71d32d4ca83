"""What every part of the store shares: its errors, the lock-and-map decorator, the helpers
for id lists, and :class:`StoreBase`, the connection, transaction and scope numbering the
mixins of :class:`node.store.sqlite.Store` build on (see that module for the design).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, Final, ParamSpec, TypeAlias, TypeVar

from protocol.errors import ProtocolError
from protocol.record import Record, decode_trusted

if TYPE_CHECKING:
    from node.store.checkpoint import Checkpointer

__all__ = [
    "ID_PREFIX",
    "INSERT_ROWS",
    "CachedProject",
    "Pending",
    "ProjectKey",
    "StoreBase",
    "StoreClosedError",
    "StoreError",
    "chunks",
    "decode",
    "guarded",
    "id_in",
    "id_params",
    "insert_rows",
    "marks",
    "order_of",
    "ordered_copy",
    "project_of",
]

#: The most ``?`` parameters in one statement; longer id lists are split into chunks.
MAX_SQL_PARAMS: Final = 500
#: The most records one ``add`` call (one transaction) takes.
MAX_BATCH: Final = 10_000
#: The columns of a ``records`` row, in ``node.store.sqlite._columns``' order and then
#: ``received_at`` and ``published``.
INSERT_RECORDS: Final = (
    "INSERT INTO records"
    " (id, raw, kind, author, project, scope, ts, target, received_at, published)"
)

#: A project's record set as the store can name it without decoding: (records, greatest seq).
ProjectKey: TypeAlias = tuple[int, int]


class StoreError(Exception):
    """The store cannot be used: not a Commons store, damaged, newer schema, disk error."""


class StoreClosedError(StoreError):
    """The store was closed by this process (we did it), as opposed to a broken database."""


# --------------------------------------------------------------------------------------------

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="StoreBase")


def guarded(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Run a public method under the store's lock, mapping SQLite's errors to StoreError."""

    @functools.wraps(method)
    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            if self._conn is None:
                raise StoreClosedError(f"{self.path.name}: the store is closed")
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path.name}: {exc}") from exc

    return wrapper


@dataclass(slots=True)
class CachedProject:
    genesis: Record | None
    records: list[Record]
    ordered: bool = True


def order_of(record: Record) -> tuple[int, bytes]:
    return (record.ts, record.id)


@dataclass(frozen=True, slots=True)
class Pending:
    """A project's records read under the lock, to be decoded outside it."""

    raws: list[bytes]
    last_seq: int


def ordered_copy(entry: CachedProject) -> tuple[Record | None, list[Record]]:
    """Sort a cached project if appends disordered it, and copy it (under the store's lock)."""
    if not entry.ordered:
        entry.records.sort(key=order_of)
        entry.ordered = True
    return entry.genesis, list(entry.records)


def chunks(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), MAX_SQL_PARAMS):
        yield items[start : start + MAX_SQL_PARAMS]


def marks(n: int) -> str:
    return ",".join("?" * n)


#: Rows a multi-row INSERT statement (:func:`insert_rows`; at most 10 parameters a row here,
#: under SQLite's 32,766 since 3.32; statements of this size stay in the statement cache).
INSERT_ROWS: Final = 400


def insert_rows(
    conn: sqlite3.Connection,
    head: str,
    rows: Sequence[tuple[object, ...]],
    tail: str = "",
    *,
    row: str | None = None,
) -> None:
    """``head`` (an INSERT up to its column list) of ``rows``, then ``tail`` (an upsert
    clause, if any), :data:`INSERT_ROWS` rows a statement. ``row`` is one row's values, its
    ``?`` taking a row's items in order (by default a ``?`` an item): values the same in
    every row may be written into it as SQL literals, which SQLite then needs no binding for.

    Many rows a statement rather than ``executemany``: Python's sqlite3 releases the GIL for
    each step of a statement and takes it back for the next row, and while the validation
    threads run Python beside it every take waits its turn. Measured on 100,000 records:
    ``executemany`` 9 microseconds a row alone, 57 beside two busy Python threads; 400 rows a
    statement 8 and 10. With an upsert ``tail``, one statement's rows must have distinct keys.
    """
    if not rows:
        return
    row_marks = f"({marks(len(rows[0]))})" if row is None else row
    for start in range(0, len(rows), INSERT_ROWS):
        part = rows[start : start + INSERT_ROWS]
        values = ", ".join([row_marks] * len(part))
        conn.execute(f"{head} VALUES {values}{tail}", [v for row in part for v in row])


#: Bytes of a record id indexed by ``records_id`` (schema version 5): enough to find one
#: record among billions, a quarter of the 32-byte id a UNIQUE index held (46 bytes a record
#: at a million, against 19).
ID_PREFIX: Final = 8


def id_in(n: int, column: str = "id") -> str:
    """SQL matching ``column`` against ``n`` ids, off the prefix index ``records_id``: the
    prefixes find the rows, the whole ids pick them (parameters: :func:`id_params`)."""
    return f"substr({column}, 1, {ID_PREFIX}) IN ({marks(n)}) AND {column} IN ({marks(n)})"


def id_params(ids: Sequence[bytes]) -> tuple[bytes, ...]:
    """The parameters of :func:`id_in` for ``ids``."""
    return (*(i[:ID_PREFIX] for i in ids), *ids)


def project_of(record: Record) -> bytes | None:
    """The project a record concerns: its project key; a genesis concerns itself."""
    if record.kind == "project":
        return record.id
    return record.project


def decode(raw: bytes) -> Record:
    try:
        return decode_trusted(raw)
    except ProtocolError as exc:
        raise StoreError(f"a stored record does not decode, the store is damaged ({exc})") from exc


class StoreBase:
    """The connection and the state every part of the store reads; not opened directly."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()
        #: Checkpoints the write-ahead log off the insert path (node.store.checkpoint); set
        #: by ``Store.open``, told of every write transaction's rows.
        self._checkpointer: Checkpointer | None = None
        self._scope_numbers: dict[str, int] = {}
        #: Numbers of the kinds in ``records.kind`` (schema version 5), by name.
        self._kind_numbers: dict[str, int] = {}
        #: Participant numbers of the views' tallies (node.store.tally), by key; authors of
        #: records are numbered there too (``records.author``).
        self._unit_numbers: dict[bytes, int] = {}
        self._cache: OrderedDict[bytes, CachedProject] = OrderedDict()
        self._cached_records = 0
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        #: Commits by this connection that stored new records, in all and per scope (see
        #: :meth:`version` and :meth:`scope_version`).
        self._changes = 0
        self._scope_changes: dict[str, int] = {}
        self._scopes_memo: tuple[tuple[int, int], dict[str, int]] | None = None
        #: Project keys read since records were last stored, by project (see project_key).
        self._keys_memo: tuple[tuple[int, int], dict[bytes, ProjectKey | None]] = ((-1, -1), {})

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
        before = conn.total_changes
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        if self._checkpointer is not None:
            self._checkpointer.committed(conn.total_changes - before)

    @contextmanager
    def _adding(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that stores records (:meth:`_transaction`); scope, kind and
        participant numbers handed out inside it are forgotten if it rolls back, since they
        no longer exist."""
        try:
            with self._transaction() as conn:
                yield conn
        except BaseException:
            self._scope_numbers.clear()
            self._kind_numbers.clear()
            self._unit_numbers.clear()
            raise

    @staticmethod
    def _insert_records(
        conn: sqlite3.Connection, rows: Sequence[tuple[object, ...]], *, row: str | None = None
    ) -> int:
        """Insert ``records`` rows (:data:`INSERT_RECORDS`' columns, or ``row``'s values, as
        :func:`insert_rows` takes them); the ``seq`` the first gets if SQLite numbers them on
        from the greatest held (checked by the caller)."""
        first = int(conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM records").fetchone()[0])
        insert_rows(conn, INSERT_RECORDS, rows, row=row)
        return first

    def _stored_in(self, scopes: Iterable[str]) -> None:
        """Count a committed transaction that stored records of ``scopes``."""
        self._changes += 1
        for scope in scopes:
            self._scope_changes[scope] = self._scope_changes.get(scope, 0) + 1

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

    def _kind_number(self, name: str, *, create: bool = True) -> int | None:
        """The number of a kind in ``records.kind``, creating it (inside the caller's
        transaction) if asked: the kinds this version knows are numbered by the schema, a
        kind from a newer version gets the next number when its first record is stored."""
        number = self._kind_numbers.get(name)
        if number is not None:
            return number
        row = self._db.execute("SELECT n FROM kinds WHERE name = ?", (name,)).fetchone()
        if row is not None:
            number = int(row[0])
        elif create:
            number = self._db.execute("INSERT INTO kinds (name) VALUES (?)", (name,)).lastrowid
        if number is not None:
            self._kind_numbers[name] = number
        return number

    def _kinds_held(self, names: Iterable[str]) -> list[int]:
        """The numbers of those of ``names`` that have one (no record is of the others)."""
        numbers = (self._kind_number(name, create=False) for name in names)
        return sorted({n for n in numbers if n is not None})

    @staticmethod
    def _held(conn: sqlite3.Connection, ids: Sequence[bytes]) -> set[bytes]:
        """The ids among ``ids`` already stored, read through ``conn`` (``add`` asks inside its
        write transaction, where nobody else can store them meanwhile). The prefix index
        finds the candidates and the whole ids are compared here, which costs a third less
        than having SQLite compare them too (measured at a million records: 3.5 against 5.2
        microseconds an id)."""
        wanted = set(ids)
        held: set[bytes] = set()
        query = "SELECT id FROM records WHERE substr(id, 1, {}) IN ({})"
        for chunk in chunks(ids):
            statement = query.format(ID_PREFIX, marks(len(chunk)))
            found = (
                bytes(row[0]) for row in conn.execute(statement, [i[:ID_PREFIX] for i in chunk])
            )
            held.update(i for i in found if i in wanted)
        return held

    def _drop_cache_if_changed(self) -> None:
        """Forget every cached project if another connection (process) wrote since."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()
            self._cached_records = 0
