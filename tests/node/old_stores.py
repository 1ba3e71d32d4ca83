"""Stores of earlier schema versions written the way those versions wrote them, for the
migration tests: the released migrations up to a version, then rows in that version's layout
(``records.kind`` the kind's name, ``records.author`` the 32-byte key: versions 1 to 4)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from node.store.base import project_of
from node.store.schema import MIGRATIONS
from node.store.tally import tally_records
from protocol.record import EndorsementBody, Record, RetractionBody
from protocol.validation import scope_of

__all__ = ["write_old_store"]

#: The row a store of versions 1 to 4 wrote for a record (``received_at``, ``published``).
_INSERT_V4 = (
    "INSERT INTO records (id, raw, kind, author, project, scope, ts, target, received_at,"
    " published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_old_store(
    path: Path,
    version: int,
    records: Sequence[Record],
    *,
    refused: Iterable[Record] = (),
    blocks: Iterable[tuple[str, bytes]] = (),
    tallied: bool = False,
    received_at: int = 1_700_000_000_000,
) -> None:
    """Write a store of schema ``version`` (1 to 4) holding ``records`` (all published but the
    last), the ids of ``refused`` (from version 3) and the operator's ``blocks``. With
    ``tallied`` (version 4) the tallies are written as version 4 wrote them at insert time;
    without, version 4's backfill is left to do, as after an upgrade from version 3."""
    assert 1 <= version <= 4
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        for migration in MIGRATIONS[:version]:
            for statement in migration:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        stored = []
        for i, record in enumerate(records):
            project = project_of(record)
            body = record.body
            target = body.target if isinstance(body, EndorsementBody | RetractionBody) else None
            pnum = None if project is None else _scope(conn, project.hex())
            published = int(i < len(records) - 1)
            row = (record.id, record.raw, record.kind, record.author, pnum)
            row += (_scope(conn, scope_of(record)), record.ts, target, received_at + i, published)
            seq = conn.execute(_INSERT_V4, row).lastrowid
            stored.append((int(seq or 0), pnum, record))
        for record in refused:
            conn.execute(
                "INSERT INTO refused (id, scope, ts, project, author, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    _scope(conn, scope_of(record)),
                    record.ts,
                    project_of(record),
                    record.author,
                    received_at,
                ),
            )
        for kind, key in blocks:
            conn.execute("INSERT INTO blocks VALUES (?, ?, ?)", (kind, key, received_at))
        if tallied:
            assert version == 4
            tally_records(conn, stored)
            conn.execute("DROP TABLE tally_backfill")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _scope(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT n FROM scopes WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute("INSERT INTO scopes (name) VALUES (?)", (name,)).lastrowid or 0)
