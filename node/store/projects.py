"""The store's per-project reads: a project's records decoded and cached for
``protocol.ledger``, and the project keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from node.store.base import (
    CachedProject,
    Pending,
    StoreBase,
    decode,
    guarded,
    order_of,
    ordered_copy,
)
from node.store.schema import CONTRIBUTION
from protocol.record import Record

__all__ = ["MAX_CACHED_RECORDS", "ProjectsMixin"]

#: Every record of a project (parameters: its number twice), off the two indexes that hold
#: them: its contributions on ``records_scope``, the rest on the partial ``records_project``.
_PROJECT_ROWS: Final = (
    f"SELECT seq, raw FROM records WHERE project = ? AND kind <> {CONTRIBUTION}"
    f" UNION ALL SELECT seq, raw FROM records WHERE scope = ? AND kind = {CONTRIBUTION}"
)
#: Decoded records kept by the per-project cache, in all projects together (about 1 KB each).
MAX_CACHED_RECORDS: Final = 150_000


class ProjectsMixin(StoreBase):
    """A project's records (part of :class:`node.store.sqlite.Store`)."""

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
        decoded = [decode(raw) for raw in cached.raws]
        return self._install_project(project_id, decoded, cached.last_seq)

    @guarded
    def _cached_project(self, project_id: bytes) -> tuple[Record | None, list[Record]] | Pending:
        """A copy of the cached project, or the raw records to decode outside the lock."""
        self._drop_cache_if_changed()
        entry = self._cache.get(project_id)
        if entry is not None:
            self._cache.move_to_end(project_id)
            return ordered_copy(entry)
        number = self._scope_number(project_id.hex(), create=False)
        rows = (
            [] if number is None else self._db.execute(_PROJECT_ROWS, (number, number)).fetchall()
        )
        if not rows:
            return None, []
        return Pending([bytes(raw) for _, raw in rows], max(int(seq) for seq, _ in rows))

    @guarded
    def _install_project(
        self, project_id: bytes, decoded: list[Record], last_seq: int
    ) -> tuple[Record | None, list[Record]]:
        """Cache a project decoded outside the lock, with whatever arrived after ``last_seq``."""
        self._drop_cache_if_changed()
        entry = self._cache.get(project_id)
        if entry is None:
            number = self._scope_number(project_id.hex(), create=False)
            query = f"SELECT seq, raw FROM ({_PROJECT_ROWS}) WHERE seq > ?"
            rows = self._db.execute(query, (number, number, last_seq))
            later = [decode(raw) for _, raw in rows]
            genesis: Record | None = None
            records: list[Record] = []
            for record in decoded + later:
                if record.kind == "project":
                    genesis = record
                else:
                    records.append(record)
            entry = CachedProject(genesis, records, ordered=False)
            self._cache_put(project_id, entry)
        return ordered_copy(entry)

    def _cache_put(self, project_id: bytes, entry: CachedProject) -> None:
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
            if entry.records and order_of(record) < order_of(entry.records[-1]):
                entry.ordered = False
            entry.records.append(record)
            self._cached_records += 1
        self._evict()
