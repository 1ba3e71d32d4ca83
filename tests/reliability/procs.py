"""Process-level helpers for the reliability tests, on top of tests/system/system_harness.py.

``Writer`` keeps a steady stream of records going into one node's HTTP API from background
threads and remembers every id the node acknowledged (201). ``store_ids`` reads a home's
SQLite store directly (read-only, so also while its node runs, and after a SIGKILL).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from protocol.testing import RecordFactory
from protocol.validation import parse_record

__all__ = ["Writer", "digest", "integrity", "store_ids", "store_raws"]


def _connect(home: Path, *, readonly: bool = True) -> sqlite3.Connection:
    path = home / "ledger.db"
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def store_ids(home: Path) -> set[bytes]:
    conn = _connect(home)
    try:
        return {bytes(row[0]) for row in conn.execute("SELECT id FROM records")}
    finally:
        conn.close()


def store_raws(home: Path, ids: Iterable[bytes]) -> dict[bytes, bytes]:
    conn = _connect(home)
    try:
        out = {}
        for record_id in ids:
            row = conn.execute("SELECT raw FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is not None:
                out[record_id] = bytes(row[0])
        return out
    finally:
        conn.close()


def integrity(home: Path) -> str:
    """``PRAGMA integrity_check`` of a home's store (opened read-write: a store left by a
    killed process is recovered from its WAL first, as the node itself would)."""
    conn = _connect(home, readonly=False)
    try:
        return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def digest(ids: Iterable[bytes]) -> str:
    """A short digest of a set of record ids (SHA-256 of the sorted ids)."""
    return hashlib.sha256(b"".join(sorted(ids))).hexdigest()[:16]


def valid_raw(record_id: bytes, raw: bytes) -> bool:
    record = parse_record(raw, now_ms=None)
    return record.id == record_id


@dataclass
class Writer:
    """Threads that author records through one node's API as fast as it answers.

    One thread asks the node to author contributions (``POST .../contributions``: the node
    signs), another posts records signed elsewhere (``POST /api/v1/records``). ``acked`` holds
    every id answered with 201; a request cut off by the node's death is simply not acked.
    """

    api: str
    token: str
    project: str
    factory: RecordFactory
    acked: set[bytes] = field(default_factory=set)
    failures: int = 0
    latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    def start(self) -> Writer:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._author_loop, daemon=True),
            threading.Thread(target=self._submit_loop, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def _post(
        self,
        http: httpx.Client,
        path: str,
        *,
        json: object = None,
        content: bytes | None = None,
    ) -> bytes | None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        start = time.monotonic()
        try:
            response = http.post(path, headers=headers, json=json, content=content)
        except httpx.HTTPError:
            with self._lock:
                self.failures += 1
            time.sleep(0.05)
            return None
        if response.status_code != 201:
            with self._lock:
                self.failures += 1
            return None
        with self._lock:
            self.latencies.append(time.monotonic() - start)
        return bytes.fromhex(response.json()["id"])

    def _author_loop(self) -> None:
        with httpx.Client(base_url=self.api, timeout=10) as http:
            while not self._stop.is_set():
                n = self._next()
                body = {"type": "code", "title": f"authored #{n}", "minutes": n % 500}
                got = self._post(http, f"/api/v1/projects/{self.project}/contributions", json=body)
                if got is not None:
                    with self._lock:
                        self.acked.add(got)

    def _submit_loop(self) -> None:
        project = bytes.fromhex(self.project)
        with httpx.Client(base_url=self.api, timeout=10) as http:
            while not self._stop.is_set():
                n = self._next()
                with self._lock:
                    record = self.factory.contribution(
                        "crash-writer", project, title=f"signed elsewhere #{n}", minutes=n % 300
                    )
                got = self._post(http, "/api/v1/records", content=record.raw)
                if got is not None:
                    assert got == record.id
                    with self._lock:
                        self.acked.add(got)
