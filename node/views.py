"""The JSON views of INTERFACES.md, computed from the store with ``protocol.ledger``.

The CLI and the HTTP API print exactly these values (``--json`` and the API bodies agree by
construction). The store returns a project's records; the fold is ``protocol.ledger``'s, so
there is one implementation of the rules. A :class:`ViewCache` keeps the last fold of each
project until the store records a change to it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from node.storage import Store
from protocol.errors import ProtocolError
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id, public_key_from_peer_id

__all__ = ["ViewCache", "ViewError", "record_json"]

#: Folded projects kept in memory by a running node.
MAX_CACHED_VIEWS = 64
#: The most ledger entries one call returns when no limit is given.
DEFAULT_LEDGER_LIMIT = 1000
MAX_LEDGER_LIMIT = 100_000


class ViewError(Exception):
    """A view cannot be shown: unknown or ambiguous id, bad filter. ``status`` for HTTP."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def record_json(record: Record) -> dict[str, Any]:
    """``commons record show --json``: the record decoded, bytes as hex, author as peer id."""
    body = _json_value(record.body.to_value())
    for key in ("maintainers", "coauthors"):
        if key in body:
            body[key] = [peer_id(bytes.fromhex(k)) for k in body[key]]
    if record.kind == "project-update":
        for key in ("add_maintainers", "remove_maintainers"):
            if key in body:
                body[key] = [peer_id(bytes.fromhex(k)) for k in body[key]]
    return {
        "id": record.id.hex(),
        "kind": record.kind,
        "author": peer_id(record.author),
        "ts": record.ts,
        "project": record.project.hex() if record.project is not None else None,
        "body": body,
    }


class ViewCache:
    """Answers the view queries; caches folded projects keyed by the store's change count."""

    def __init__(self, store: Store, *, cache: bool = True) -> None:
        self.store = store
        self._cache: OrderedDict[bytes, tuple[int, ProjectView]] = OrderedDict()
        self._enabled = cache
        self._lock = threading.Lock()
        self._building: dict[bytes, threading.Lock] = {}

    def _resolve(self, text: str, kind: str | None = None) -> bytes:
        try:
            return self.store.resolve_prefix(text, kind=kind)
        except ProtocolError as exc:
            status = 400 if exc.code == "bad-id" else 404
            raise ViewError(exc.message, status) from None

    def project_view(self, project_text: str) -> ProjectView:
        pid = self._resolve(project_text, kind="project")
        return self._view(pid)

    def warm(self, pid: bytes) -> None:
        """Decode and fold a project now (from a worker thread) so its first view is fast."""
        self._view(pid)

    def _project_lock(self, pid: bytes) -> threading.Lock:
        with self._lock:
            lock = self._building.get(pid)
            if lock is None:
                lock = self._building[pid] = threading.Lock()
            return lock

    def _view(self, pid: bytes) -> ProjectView:
        # One thread decodes and folds a project at a time: a call that arrives while the
        # start-up warming (or another call) is at it waits for that result instead of
        # doing the same work beside it.
        lock = self._project_lock(pid)
        with lock:
            return self._view_locked(pid)

    def _view_locked(self, pid: bytes) -> ProjectView:
        # The store keeps each project's decoded records; the ledger is grow-only, so the
        # number of a project's records identifies the state the fold saw.
        genesis, records = self.store.project_records(pid)
        if genesis is None:
            raise ViewError(f"no project {pid.hex()}")
        version = len(records)
        with self._lock:
            hit = self._cache.get(pid)
            if hit is not None and hit[0] == version:
                self._cache.move_to_end(pid)
                return hit[1]
        view = ProjectView.build(genesis, records)
        if self._enabled:
            with self._lock:
                self._cache[pid] = (version, view)
                self._cache.move_to_end(pid)
                while len(self._cache) > MAX_CACHED_VIEWS:
                    self._cache.popitem(last=False)
        return view

    # ---------------------------------------------------------------------------- views

    def project_list(self) -> list[dict[str, Any]]:
        out = [self._view(pid).summary().to_list_json() for pid in self.store.project_ids()]
        out.sort(key=lambda p: (str(p["name"]).lower(), str(p["id"])))
        return out

    def project_show(self, project_text: str) -> dict[str, Any]:
        return self.project_view(project_text).summary().to_json()

    def ledger(
        self,
        project_text: str,
        *,
        author: str | None = None,
        type: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        view = self.project_view(project_text)
        author_key = None
        if author:
            try:
                author_key = public_key_from_peer_id(author)
            except ProtocolError as exc:
                raise ViewError(exc.message, 400) from None
        if limit is None:
            limit = DEFAULT_LEDGER_LIMIT
        if not 0 <= limit <= MAX_LEDGER_LIMIT:
            raise ViewError(f"limit must be 0..{MAX_LEDGER_LIMIT}", 400)
        entries = view.live_contributions(author=author_key, type=type, limit=limit)
        return [e.to_json() for e in entries]

    def shares(self, project_text: str) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.project_view(project_text).shares()]

    def record(self, record_text: str) -> Record:
        rid = self._resolve(record_text)
        record = self.store.get(rid)
        if record is None:  # pragma: no cover - resolve found it
            raise ViewError(f"no record {record_text}")
        return record
