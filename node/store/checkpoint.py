"""Checkpoints of the store's write-ahead log, off the insert path.

In WAL mode every commit appends to the log (``ledger.db-wal``) and a *checkpoint* copies the
logged pages back into the database file, after which the log starts again from its
beginning. SQLite's default runs that checkpoint inside the commit that took the log past
1,000 pages, on the committing connection, so under the store's lock: measured on a catch-up
of a million records, about 40 % of each 4,096-record commit (2.0 s, 0.85 s without it) was
the checkpoint, and every call of the node waited for it.

Here the writing connection checkpoints only past :data:`WAL_LIMIT_BYTES`
(``wal_autocheckpoint``), and :class:`Checkpointer` runs SQLite's ``PASSIVE`` checkpoints from
a thread and a connection of its own once :data:`CHECKPOINT_CHANGES` rows were written since
the last one (or :data:`IDLE_CHECKPOINT_S` after a commit, when writes trickle). A passive
checkpoint takes no lock a writer needs: commits go on into the log meanwhile, and the next
commit after a complete checkpoint writes the log from its beginning again. When writes never
pause long enough for the thread to catch up, the log passes the limit and the writer's own
checkpoint (SQLite's, as before, only rarer) brings it back; the thread leaves a log past the
limit to that checkpoint rather than collide with it, so the log stays bounded by the limit
plus a transaction or two (the one that passed it, and the next when the thread was
checkpointing just then); ``journal_size_limit`` then truncates the file to the limit.
Closing the store still checkpoints the whole log and removes it (the last connection's close).

Durability does not move: a commit is durable when its log frames are synced (``synchronous``
FULL syncs them in the commit, as before); a checkpoint only copies durable frames, and the
thread's connection uses the store's ``synchronous`` setting, so the database file is synced
before the log is reused. ``max_store_mb`` counts the database's pages as the last commit left
them, wherever they are (log or file), so checkpointing later does not change it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

from node.store.schema import BUSY_TIMEOUT_S, Synchronous

__all__ = [
    "CHECKPOINT_CHANGES",
    "IDLE_CHECKPOINT_S",
    "WAL_LIMIT_BYTES",
    "Checkpointer",
    "bound_log",
]

log = logging.getLogger(__name__)

#: Rows written (``total_changes``) after which the thread checkpoints: a big batch writes
#: about a page a row, so this is near SQLite's default of 1,000 pages.
CHECKPOINT_CHANGES: Final = 1_000
#: Seconds after the last commit the thread checkpoints what is left in the log.
IDLE_CHECKPOINT_S: Final = 5.0
#: The log's size past which the writing connection checkpoints itself (and the size its file
#: is truncated to after that).
WAL_LIMIT_BYTES: Final = 64 * 1024 * 1024


def bound_log(conn: sqlite3.Connection) -> None:
    """Let the writing connection ``conn`` checkpoint only when its log passes
    :data:`WAL_LIMIT_BYTES`, and truncate the log's file to that when it is reused."""
    limit = WAL_LIMIT_BYTES
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute(f"PRAGMA wal_autocheckpoint = {max(1, limit // page_size)}")
    conn.execute(f"PRAGMA journal_size_limit = {limit}")


class Checkpointer:
    """A thread that checkpoints one store's log (see the module's description).

    :meth:`committed` is called by the store after each write transaction commits, under the
    store's lock; it only counts and wakes the thread, which is started at the first call.
    :meth:`close` stops the thread and closes its connection, before the store closes its own
    (whose close, the last, checkpoints the rest and removes the log).
    """

    def __init__(self, path: Path, synchronous: Synchronous) -> None:
        self.path = path
        self.synchronous = synchronous
        #: Complete checkpoints made by the thread, and checkpoints it tried that could not
        #: copy the whole log (a reader on an older snapshot, another process checkpointing).
        self.checkpoints = 0
        self.partial = 0
        self._changes = 0
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def committed(self, changes: int) -> None:
        """Count ``changes`` rows just committed; wake the thread when they reach
        :data:`CHECKPOINT_CHANGES`."""
        if changes <= 0:
            return
        with self._wake:
            if self._stopping:
                return
            self._changes += changes
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"checkpoint {self.path.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be making) and close its connection."""
        with self._wake:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._wake.notify()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            while self._wait():
                self._checkpoint(conn)
        except sqlite3.Error as exc:
            # The writer's own checkpoint past the limit, and the close, still bound the log.
            log.warning("%s: background checkpoints stopped: %s", self.path.name, exc)
        finally:
            if conn is not None:
                conn.close()

    def _wait(self) -> bool:
        """Wait until a checkpoint is due; False when the store is closing."""
        with self._wake:
            while not self._stopping:
                if self._changes >= CHECKPOINT_CHANGES:
                    break
                pending = self._changes
                self._wake.wait(IDLE_CHECKPOINT_S if pending else None)
                if self._changes == pending and pending and not self._stopping:
                    break  # no commit for IDLE_CHECKPOINT_S: checkpoint what is left
            self._changes = 0
            return not self._stopping

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        # Past the limit the writer checkpoints after its next commit; one of ours running
        # then would make its attempt fail (one checkpointer at a time) and the log grow on.
        try:
            logged_bytes = self.path.with_name(self.path.name + "-wal").stat().st_size
        except OSError:
            logged_bytes = 0
        if logged_bytes > WAL_LIMIT_BYTES:
            return
        busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if busy or (logged >= 0 and copied < logged):
            self.partial += 1
        else:
            self.checkpoints += 1
