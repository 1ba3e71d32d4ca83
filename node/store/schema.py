"""The store's schema and its migrations, and the checks made when a database is opened.

Migration i (0-based) takes the database from user_version i to i + 1; a released migration is
never edited, a change is a new one appended to :data:`MIGRATIONS`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Final, Literal, TypeAlias

from node.store.base import StoreError

__all__ = [
    "BUSY_TIMEOUT_S",
    "CONTRIBUTION",
    "GENESIS",
    "KIND_NUMBERS",
    "MIGRATIONS",
    "PAGE_SIZE",
    "PROFILE",
    "SCHEMA_VERSION",
    "Synchronous",
    "prepare",
]

logger = logging.getLogger(__name__)

#: Marks a database file as a Commons store ("Cmns"); any other value is someone else's file.
APPLICATION_ID: Final = 0x436D6E73
#: How long a write waits for another process's transaction before failing.
BUSY_TIMEOUT_S: Final = 5.0
#: SQLite page cache for this connection, in KiB (negative ``cache_size`` means KiB).
PAGE_CACHE_KIB: Final = 16 * 1024
#: Bytes a page of a store created from now on (one created before keeps its own: SQLite fixes
#: the size when the first table is written, and in WAL mode for good). Four times SQLite's
#: default: a batch of records dirties a quarter as many pages, each written once to the log
#: and once by the checkpoint, and a B-tree is a level shallower. Measured storing a million
#: attested contributions in 50,000-record batches: 16.5 microseconds of CPU a record against
#: 19.4 with 4 KiB pages, the file 607 MB against 625.
PAGE_SIZE: Final = 16 * 1024

Synchronous: TypeAlias = Literal["FULL", "NORMAL"]

_V1: Final = (
    # "meta" or a project id in hex, numbered; a project's number is its scope's.
    "CREATE TABLE scopes (n INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    # seq: arrival order on this node. Only a purge (node.store.moderation) deletes records;
    # SQLite may then hand the greatest seq out again, so a purge drops every cached view.
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
_V3: Final = (
    # Records refused by local policy (node.policy): their ids stay in the scope's negentropy
    # item list, so reconciliation treats them as held and never fetches them again, but
    # they are never served. seq orders them for the bound (the oldest are forgotten first).
    """CREATE TABLE refused (
        seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,
        scope INTEGER NOT NULL REFERENCES scopes (n), ts INTEGER NOT NULL,
        project BLOB, author BLOB NOT NULL, at INTEGER NOT NULL
    )""",
    "CREATE INDEX refused_scope ON refused (scope, ts, id)",
    # The operator's blocks (commons admin block-project / block-author): kind 'project' or
    # 'author', key the project id or the author's public key.
    """CREATE TABLE blocks (
        kind TEXT NOT NULL, key BLOB NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (kind, key)
    ) WITHOUT ROWID""",
    # The operator's peer bans (commons admin ban): until NULL is for ever.
    """CREATE TABLE bans (
        peer_id TEXT PRIMARY KEY, until INTEGER, at INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
_V4: Final = (
    # The fold inputs the views read instead of decoding a project (node.store.tally). Keys
    # and handles are numbered once in ``units`` so the per-record rows hold small integers.
    "CREATE TABLE units (n INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, handle TEXT)",
    # A row per (contribution, participant before claims), in time order per participant.
    """CREATE TABLE credits (
        project INTEGER NOT NULL, unit INTEGER NOT NULL, ts INTEGER NOT NULL,
        seq INTEGER NOT NULL, PRIMARY KEY (project, unit, ts, seq)
    ) WITHOUT ROWID""",
    # A row per contribution, in time order per project and contribution type.
    """CREATE TABLE typed (
        project INTEGER NOT NULL, type TEXT NOT NULL, ts INTEGER NOT NULL,
        seq INTEGER NOT NULL, PRIMARY KEY (project, type, ts, seq)
    ) WITHOUT ROWID""",
    # Running sums per project, participant and participant count (protocol.tally.TallyRow).
    """CREATE TABLE tallies (
        project INTEGER NOT NULL, unit INTEGER NOT NULL, parts INTEGER NOT NULL,
        contributions INTEGER NOT NULL, minutes INTEGER NOT NULL,
        PRIMARY KEY (project, unit, parts)
    ) WITHOUT ROWID""",
    """CREATE TABLE type_tallies (
        project INTEGER NOT NULL, type TEXT NOT NULL, contributions INTEGER NOT NULL,
        PRIMARY KEY (project, type)
    ) WITHOUT ROWID""",
    # Each project's record count and greatest seq: its view key (node.views).
    """CREATE TABLE project_totals (
        project INTEGER PRIMARY KEY, records INTEGER NOT NULL, last_seq INTEGER NOT NULL
    )""",
    # Present while the records held before this version are still to be tallied: the
    # greatest seq tallied so far (node.store.tally.backfill runs when the store is opened).
    "CREATE TABLE tally_backfill (last INTEGER NOT NULL)",
    # Records per kind (the metrics' gauge), kept like the tallies.
    "CREATE TABLE kind_totals (kind TEXT PRIMARY KEY, records INTEGER NOT NULL) WITHOUT ROWID",
    # Disk: contributions, nearly every record of a big project, leave the kind index (its
    # queries read kind_totals, the identity records and the genesis records instead) and
    # the project index (a project's contributions are its scope's, on records_scope).
    "DROP INDEX records_kind",
    "DROP INDEX records_project",
    "CREATE INDEX records_project ON records (project, kind) WHERE kind <> 'contribution'",
    "CREATE INDEX records_genesis ON records (ts, id) WHERE kind = 'project'",
    "INSERT INTO tally_backfill VALUES (-1)",
)
#: The kinds numbered by schema version 5, as released (never renumbered: the numbers are in
#: every row). ``contribution`` and ``endorsement``, nearly every record of a big project, are
#: 0 and 1, which SQLite stores in the row header alone; a kind unknown to this version gets
#: the next free number in ``kinds`` when its first record is stored.
_V5_KINDS: Final = (
    (0, "contribution"),
    (1, "endorsement"),
    (2, "retraction"),
    (3, "project"),
    (4, "project-update"),
    (5, "profile"),
    (6, "claim"),
    (7, "claim-confirmation"),
    (8, "device-link"),
    (9, "device-join"),
    (10, "device-revoke"),
)
_V5: Final = (
    # Disk (issue 16): the row held the author's 32-byte key and the kind's name; both are now
    # numbers, the author's in ``units`` (where node.store.tally numbers participants) and the
    # kind's in ``kinds``. The table is rebuilt in seq order, so seq, and with it the tallies'
    # rows that name records by seq, stay as they were. The 32-byte UNIQUE id index becomes an
    # index on the id's first 8 bytes (every lookup checks the whole id in the row; Store.add
    # keeps ids unique, since it inserts only ids it found not held inside its transaction).
    "CREATE TABLE kinds (n INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    "INSERT INTO kinds (n, name) VALUES " + ", ".join(f"({n}, '{name}')" for n, name in _V5_KINDS),
    "INSERT INTO kinds (name) SELECT DISTINCT kind FROM records"
    " WHERE kind NOT IN (SELECT name FROM kinds) ORDER BY kind",
    "INSERT OR IGNORE INTO units (key) SELECT DISTINCT author FROM records ORDER BY author",
    """CREATE TABLE records_v5 (
        seq INTEGER PRIMARY KEY, id BLOB NOT NULL, raw BLOB NOT NULL,
        kind INTEGER NOT NULL REFERENCES kinds (n), author INTEGER NOT NULL REFERENCES units (n),
        ts INTEGER NOT NULL, project INTEGER REFERENCES scopes (n),
        scope INTEGER NOT NULL REFERENCES scopes (n), target BLOB,
        received_at INTEGER NOT NULL, published INTEGER NOT NULL DEFAULT 0
    )""",
    "INSERT INTO records_v5 (seq, id, raw, kind, author, ts, project, scope, target,"
    " received_at, published) SELECT r.seq, r.id, r.raw, k.n, u.n, r.ts, r.project, r.scope,"
    " r.target, r.received_at, r.published FROM records AS r JOIN kinds AS k ON k.name = r.kind"
    " JOIN units AS u ON u.key = r.author ORDER BY r.seq",
    "DROP TABLE records",
    "ALTER TABLE records_v5 RENAME TO records",
    "CREATE INDEX records_id ON records (substr(id, 1, 8))",
    "CREATE INDEX records_scope ON records (scope, ts, id)",
    "CREATE INDEX records_project ON records (project, kind) WHERE kind <> 0",
    "CREATE INDEX records_genesis ON records (ts, id) WHERE kind = 3",
    "CREATE INDEX records_profile ON records (author, ts, id) WHERE kind = 5",
    "CREATE INDEX records_target ON records (target) WHERE target IS NOT NULL",
    "CREATE INDEX records_unpublished ON records (published) WHERE published = 0",
    # The fold snapshots of schema 2: the tallies replaced them, nothing reads them any more.
    "DROP TABLE view_snapshots",
)
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION: Final = len(MIGRATIONS)
#: The version whose migration rebuilds ``records`` (upgrades to it compact the file after).
_REBUILT: Final = 5
#: The number of each kind this version knows, as stored in ``records.kind``.
KIND_NUMBERS: Final = {name: n for n, name in _V5_KINDS}
#: The kinds the store's SQL names by number; a query uses a partial index only when its
#: condition names the same number as the index's (``kind <> 0``, ``kind = 3``, ``kind = 5``).
CONTRIBUTION: Final = KIND_NUMBERS["contribution"]
GENESIS: Final = KIND_NUMBERS["project"]
PROFILE: Final = KIND_NUMBERS["profile"]


def prepare(conn: sqlite3.Connection, path: Path, synchronous: Synchronous) -> None:
    """Check that ``conn`` is a Commons store (or empty), set it up, and migrate it."""
    app_id, version = _identity(conn)
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise StoreError(f"{path.name} is not a Commons store (it holds other tables)")
    elif app_id != APPLICATION_ID:
        raise StoreError(f"{path.name} is not a Commons store (application id {app_id:#x})")
    _refuse_newer(path, version)
    if version == 0:
        # A new file (an empty one too): the size takes effect when the schema is written.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        logger.warning("%s: WAL is not available here, using journal mode %s", path, mode)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute(f"PRAGMA cache_size = {-PAGE_CACHE_KIB}")
    if version == SCHEMA_VERSION:
        return
    started = time.monotonic()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have migrated between our first look and the write lock.
        _, version = _identity(conn)
        _refuse_newer(path, version)
        if 0 < version < _REBUILT:
            logger.info("%s: rebuilding the records table for schema %d (once)", path, _REBUILT)
        for migration in MIGRATIONS[version:]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    logger.info(
        "%s: schema migrated from version %d to %d (%.1f s)",
        path,
        version,
        SCHEMA_VERSION,
        time.monotonic() - started,
    )
    if 0 < version < _REBUILT:
        _compact(conn, path)


def _compact(conn: sqlite3.Connection, path: Path) -> None:
    """Give the disk the old ``records`` table took back after the rebuild (VACUUM, then a
    checkpoint that empties the log): without it the file keeps both copies' size, the old
    one's pages free for later records. Measured at a million records (the 2-core VM): 33 s
    for the rebuild, 8 s for this. A failure (a full disk) leaves the migrated store whole."""
    started = time.monotonic()
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError as exc:
        logger.warning("%s: not compacted after the upgrade (%s): new records reuse it", path, exc)
        return
    logger.info("%s: compacted after the upgrade (%.1f s)", path, time.monotonic() - started)


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
