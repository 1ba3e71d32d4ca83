"""Tests of node/store/checkpoint.py: the write-ahead log checkpointed off the insert path,
bounded under continuous writes, and readers unaffected."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.store import checkpoint
from node.store.sqlite import Store
from protocol.record import Record
from protocol.testing import RecordFactory


def contributions(f: RecordFactory, count: int, name: str = "Logged") -> list[Record]:
    project = f.project("alice", name=name)
    people = ["bob", "carol", "dave", "erin"]
    return [project] + [
        f.contribution(people[i % 4], project, title=f"Part {i}", minutes=i % 90)
        for i in range(count - 1)
    ]


def in_file(db: Path) -> int:
    """Records in the database file itself, the log ignored: what checkpoints copied (-1
    while the file holds no table yet, or a checkpoint is half way through copying)."""
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def poll(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_log_is_checkpointed_by_the_thread_not_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    records = contributions(RecordFactory(), 1_500)
    with Store.open(db) as store:
        # The writer's own checkpoint waits for a log of 64 MiB: far more than these
        # records, so any copy into the file before the close is the thread's.
        pages = int(store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        page_size = int(store._db.execute("PRAGMA page_size").fetchone()[0])
        assert pages * page_size >= checkpoint.WAL_LIMIT_BYTES
        for start in range(0, len(records), 500):
            assert all(store.add(records[start : start + 500]))
        assert poll(lambda: in_file(db) == len(records)), "the thread never checkpointed"
        assert store.count() == len(records)
    # The close checkpoints what is left and removes the log.
    assert not db.with_name("ledger.db-wal").exists()
    assert in_file(db) == len(records)


def test_a_trickle_of_writes_is_checkpointed_once_writes_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "IDLE_CHECKPOINT_S", 0.2)
    db = tmp_path / "ledger.db"
    records = contributions(RecordFactory(), 5)
    with Store.open(db) as store:
        assert all(store.add(records))  # far fewer rows than CHECKPOINT_CHANGES
        assert poll(lambda: in_file(db) == len(records))


@pytest.mark.parametrize("thread", [True, False], ids=["with-thread", "writer-only"])
def test_the_log_stays_bounded_under_continuous_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: bool
) -> None:
    """Writes that never pause, with the thread checkpointing beside them or never at all
    (the worst case: it cannot keep up): the writer's own checkpoint past the limit keeps the
    log within the limit and a transaction or two."""
    limit = 256 * 1024
    monkeypatch.setattr(checkpoint, "WAL_LIMIT_BYTES", limit)
    if not thread:
        monkeypatch.setattr(checkpoint, "CHECKPOINT_CHANGES", 10**9)
        monkeypatch.setattr(checkpoint, "IDLE_CHECKPOINT_S", 3600.0)
    db = tmp_path / "ledger.db"
    records = contributions(RecordFactory(), 4_000)
    largest = 0
    with Store.open(db) as store:
        for start in range(0, len(records), 200):
            before = wal_size(db)
            assert all(store.add(records[start : start + 200]))
            largest = max(largest, wal_size(db) - before)
            # The limit, plus the transaction that passed it and, when the thread was
            # checkpointing just then (the writer's own attempt fails), the next one.
            assert wal_size(db) <= limit + 2 * largest + 64 * 1024
        assert store.count() == len(records)
        assert store.integrity_check() == "ok"
    with Store.open(db) as store:
        assert store.count() == len(records)


def test_a_reader_keeps_its_snapshot_while_checkpoints_run(tmp_path: Path) -> None:
    """A reader's open transaction (a backup, another process) sees one snapshot throughout;
    the checkpoints cannot copy past it meanwhile, and catch up once it ends."""
    db = tmp_path / "ledger.db"
    records = contributions(RecordFactory(), 3_000)
    with Store.open(db) as store:
        assert all(store.add(records[:1_000]))
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            seen = reader.execute("SELECT count(*) FROM records").fetchone()[0]
            assert seen == 1_000
            for start in range(1_000, len(records), 500):
                assert all(store.add(records[start : start + 500]))
            assert store.count() == len(records)
            assert reader.execute("SELECT count(*) FROM records").fetchone()[0] == seen
            reader.execute("COMMIT")
            assert reader.execute("SELECT count(*) FROM records").fetchone()[0] == len(records)
        finally:
            reader.close()
        assert all(store.add(contributions(RecordFactory(), 1_200, "Later")))  # wakes the thread
        assert poll(lambda: in_file(db) == store.count())
        assert store.integrity_check() == "ok"


def test_closing_stops_the_thread_and_removes_the_log(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    store = Store.open(db)
    assert all(store.add(contributions(RecordFactory(), 50)))
    assert wal_size(db) > 0
    store.close()
    store.close()
    assert not db.with_name("ledger.db-wal").exists()
    assert f"checkpoint {db.name}" not in [t.name for t in threading.enumerate()]
    assert os.path.getsize(db) > 0
