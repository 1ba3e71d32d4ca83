"""The store's part of local policy (:mod:`node.policy`): the operator's blocks and peer bans,
the ids of records refused by policy, and purges.

A record refused by policy (a blocked project or author) is not stored, but its id is kept in
``refused`` with its scope and timestamp: :meth:`ModerationMixin.refused_items` adds those to
the scope's negentropy item list, so reconciliation counts the record as held and never
fetches it again, while the sync server never serves it (it is not in ``records``). A purge
moves stored records there in one transaction. Unblocking deletes the rows the policy no
longer refuses (:meth:`ModerationMixin.release_refused`), and the next reconciliation fetches
those records again. The table is bounded: beyond ``MAX_REFUSED`` ids the oldest are
forgotten, and at worst fetched (and refused) once more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Literal, TypeAlias

from node.clock import now_ms as _now_ms
from node.store.base import StoreBase, guarded, project_of
from node.store.schema import CONTRIBUTION
from node.store.tally import recount, untally
from protocol.record import Record
from protocol.validation import scope_of

__all__ = ["MAX_BANS", "MAX_BLOCKS", "MAX_REFUSED", "BlockKind", "ModerationMixin"]

#: Ids of refused records remembered (about 150 bytes each on disk).
MAX_REFUSED: Final = 200_000
#: Blocks and bans the operator may keep (each is checked on every record or connection).
MAX_BLOCKS: Final = 10_000
MAX_BANS: Final = 10_000

BlockKind: TypeAlias = Literal["project", "author"]
#: Whether the policy still refuses a record of (project, author).
StillRefused: TypeAlias = Callable[[bytes | None, bytes], bool]


class ModerationMixin(StoreBase):
    """Refused ids, blocks, bans and purges (part of :class:`node.store.sqlite.Store`)."""

    # ----------------------------------------------------------------------------------------
    # Refused ids: known to reconciliation, never stored, never served

    @guarded
    def note_refused(self, records: Sequence[Record], *, now_ms: int | None = None) -> int:
        """Remember the ids of records refused by policy; returns how many were new."""
        if not records:
            return 0
        at = _now_ms() if now_ms is None else now_ms
        with self._transaction():
            added = self._insert_refused(records, at)
        return added

    def _insert_refused(self, records: Iterable[Record], at: int) -> int:
        """Insert into ``refused`` inside the caller's transaction, then apply the bound."""
        db = self._db
        added = 0
        scopes: set[str] = set()
        for record in records:
            scope = scope_of(record)
            number = self._scope_number(scope)
            changed = db.execute(
                "INSERT OR IGNORE INTO refused (id, scope, ts, project, author, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, number, record.ts, project_of(record), record.author, at),
            ).rowcount
            if changed:
                added += 1
                scopes.add(scope)
        if added:
            db.execute(
                "DELETE FROM refused WHERE seq <= (SELECT max(seq) FROM refused) - ?",
                (MAX_REFUSED,),
            )
            self._touched(scopes)
        return added

    def _touched(self, scopes: Iterable[str]) -> None:
        """Item lists of ``scopes`` changed (their cached copies and messages are stale)."""
        for scope in scopes:
            self._scope_changes[scope] = self._scope_changes.get(scope, 0) + 1

    @guarded
    def refused_items(self, scope: str) -> list[tuple[int, bytes]]:
        """The (ts, id) of the refused records of ``scope``, ascending (usually none)."""
        number = self._scope_number(scope, create=False)
        if number is None:
            return []
        query = "SELECT ts, id FROM refused WHERE scope = ? ORDER BY ts, id"
        return [(int(ts), bytes(i)) for ts, i in self._db.execute(query, (number,))]

    @guarded
    def refused_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM refused").fetchone()[0])

    @guarded
    def is_refused(self, record_id: bytes) -> bool:
        query = "SELECT 1 FROM refused WHERE id = ?"
        return self._db.execute(query, (record_id,)).fetchone() is not None

    @guarded
    def release_refused(self, still_refused: StillRefused) -> int:
        """Forget the refused ids the policy no longer refuses (after an unblock, or a block
        taken out of config.toml), so reconciliation fetches those records again."""
        rows = self._db.execute(
            "SELECT r.seq, r.project, r.author, s.name FROM refused AS r"
            " JOIN scopes AS s ON s.n = r.scope"
        ).fetchall()
        gone = [
            (int(seq), str(scope))
            for seq, project, author, scope in rows
            if not still_refused(None if project is None else bytes(project), bytes(author))
        ]
        if gone:
            with self._transaction() as conn:
                conn.executemany("DELETE FROM refused WHERE seq = ?", [(s,) for s, _ in gone])
            self._touched({scope for _, scope in gone})
        return len(gone)

    # ----------------------------------------------------------------------------------------
    # Purges

    @guarded
    def purge(self, kind: BlockKind, key: bytes, *, now_ms: int | None = None) -> int:
        """Delete every stored record of a project (``kind`` "project": its genesis, updates and
        everything filed under it) or by an author, with the view snapshots of the
        projects concerned (written by earlier versions: nothing writes them now), and
        remember their ids as refused; one transaction. Returns how many records were
        deleted."""
        at = _now_ms() if now_ms is None else now_ms
        if kind == "project":
            number = self._scope_number(key.hex(), create=False)
            if number is None:
                return 0
            # Its contributions are its scope's (records_scope), the rest on records_project.
            where = f"((r.project = ? AND r.kind <> {CONTRIBUTION}) OR"
            where += f" (r.scope = ? AND r.kind = {CONTRIBUTION}))"
            args: tuple[object, ...] = (number, number)
        else:
            where, args = "r.author = (SELECT n FROM units WHERE key = ?)", (key,)
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT r.seq, r.id, r.ts, u.key, r.project, p.name, s.name FROM records AS r"
                " JOIN units AS u ON u.n = r.author LEFT JOIN scopes AS p ON p.n = r.project"
                f" JOIN scopes AS s ON s.n = r.scope WHERE {where}",
                args,
            ).fetchall()
            if not rows:
                return 0
            projects = {int(row[4]) for row in rows if row[4] is not None}
            conn.executemany(
                "INSERT OR IGNORE INTO refused (id, scope, ts, project, author, at)"
                " VALUES (?, (SELECT n FROM scopes WHERE name = ?), ?, ?, ?, ?)",
                [
                    (id_, scope, ts, None if name is None else bytes.fromhex(name), author, at)
                    for _, id_, ts, author, _, name, scope in rows
                ],
            )
            untally(conn, [int(row[0]) for row in rows], projects if kind == "project" else ())
            conn.executemany("DELETE FROM records WHERE seq = ?", [(row[0],) for row in rows])
            recount(conn, projects)
            conn.execute(
                "DELETE FROM refused WHERE seq <= (SELECT max(seq) FROM refused) - ?",
                (MAX_REFUSED,),
            )
        # Every cache keyed on what the store holds is stale now.
        self._cache.clear()
        self._cached_records = 0
        self._changes += 1
        self._touched({str(row[6]) for row in rows})
        return len(rows)

    # ----------------------------------------------------------------------------------------
    # Blocks

    @guarded
    def blocks(self) -> list[tuple[BlockKind, bytes, int]]:
        """The operator's blocks: (kind, key, when it was added in ms), oldest first."""
        rows = self._db.execute("SELECT kind, key, at FROM blocks ORDER BY at, kind, key")
        return [(_kind(kind), bytes(key), int(at)) for kind, key, at in rows]

    @guarded
    def add_block(self, kind: BlockKind, key: bytes, *, now_ms: int | None = None) -> bool:
        """Block a project or an author; False if it was blocked already."""
        count = int(self._db.execute("SELECT count(*) FROM blocks").fetchone()[0])
        at = _now_ms() if now_ms is None else now_ms
        with self._transaction() as conn:
            if conn.execute(
                "SELECT 1 FROM blocks WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone():
                return False
            if count >= MAX_BLOCKS:
                raise ValueError(f"{MAX_BLOCKS} blocks already: remove some first")
            conn.execute("INSERT INTO blocks (kind, key, at) VALUES (?, ?, ?)", (kind, key, at))
        return True

    @guarded
    def remove_block(self, kind: BlockKind, key: bytes) -> bool:
        """Unblock a project or an author; False if it was not blocked here."""
        with self._transaction() as conn:
            query = "DELETE FROM blocks WHERE kind = ? AND key = ?"
            return conn.execute(query, (kind, key)).rowcount > 0

    # ----------------------------------------------------------------------------------------
    # Peer bans

    @guarded
    def bans(self, *, now_ms: int | None = None) -> list[tuple[str, int | None]]:
        """The bans in force: (peer id, until in ms or None for ever), by peer id."""
        now = _now_ms() if now_ms is None else now_ms
        query = "SELECT peer_id, until FROM bans WHERE until IS NULL OR until > ? ORDER BY peer_id"
        return [(str(p), None if u is None else int(u)) for p, u in self._db.execute(query, (now,))]

    @guarded
    def add_ban(self, peer_id: str, until_ms: int | None, *, now_ms: int | None = None) -> None:
        """Ban a peer until ``until_ms`` (None: for ever), replacing an earlier ban of it;
        expired bans are dropped."""
        now = _now_ms() if now_ms is None else now_ms
        with self._transaction() as conn:
            conn.execute("DELETE FROM bans WHERE until IS NOT NULL AND until <= ?", (now,))
            count = int(conn.execute("SELECT count(*) FROM bans").fetchone()[0])
            held = conn.execute("SELECT 1 FROM bans WHERE peer_id = ?", (peer_id,)).fetchone()
            if held is None and count >= MAX_BANS:
                raise ValueError(f"{MAX_BANS} bans already: lift some first")
            conn.execute(
                "INSERT INTO bans (peer_id, until, at) VALUES (?, ?, ?) ON CONFLICT (peer_id)"
                " DO UPDATE SET until = excluded.until, at = excluded.at",
                (peer_id, until_ms, now),
            )

    @guarded
    def remove_ban(self, peer_id: str) -> bool:
        """Lift a peer's ban; False if it was not banned."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM bans WHERE peer_id = ?", (peer_id,)).rowcount > 0


def _kind(text: str) -> BlockKind:
    return "project" if text == "project" else "author"
