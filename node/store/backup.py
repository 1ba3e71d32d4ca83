"""Copies of a store: ``commons backup`` and ``commons restore``.

Backup uses SQLite's online backup API from a connection of its own, so it runs beside a
node that keeps writing (or with no node at all). The copy is one consistent snapshot: the
backup connection opens a read transaction first and keeps it for the whole copy, so every
page comes from the same moment, the one the backup started, and every record committed (so
acknowledged) before then is in the copy. In WAL mode a reader never blocks a writer: the
node's commits go on into the log meanwhile (the log just cannot be checkpointed past the
snapshot until the copy ends). The pages are copied ``BACKUP_PAGES`` at a time, each step a
few milliseconds, so the copy never holds the file for long even on a store in another
journal mode, and :class:`BackupResult` reports the longest step.

The copy is written beside its destination, checked (``PRAGMA integrity_check``), switched to
a single-file journal mode, synced to disk, and only then renamed into place: a backup that
fails or is interrupted leaves no file behind, and an existing file is never replaced.

Restore checks the file first (a Commons store, ``integrity_check`` ok, a schema this version
reads), copies it beside the home's ``ledger.db``, opens it as a store (migrating it if it is
older) and renames it into place, only into a home whose store holds nothing yet.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from node.store.schema import APPLICATION_ID, BUSY_TIMEOUT_S, SCHEMA_VERSION
from node.store.sqlite import Store, StoreError

__all__ = ["BACKUP_PAGES", "BackupError", "BackupResult", "backup", "check_backup", "restore"]

#: Pages copied per step of the backup (4 KiB each: 256 KiB a step, a few milliseconds).
BACKUP_PAGES: Final = 64


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    records: int  # records in the copy: every one committed before the backup started
    bytes: int
    steps: int
    longest_step_ms: float


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _copy(source: sqlite3.Connection, target: Path, pages: int) -> tuple[int, float]:
    """Copy ``source`` into a new file ``target`` in steps of ``pages``; return the number of
    steps and the longest one in milliseconds. The copy ends in a single-file journal mode."""
    times: list[float] = []
    last = time.perf_counter()

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        times.append(now - last)
        last = now

    dest = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(dest, pages=pages, progress=progress)
        # The copy carries the source's WAL mode in its header; a backup is one file.
        dest.execute("PRAGMA journal_mode = DELETE")
        problems = [str(row[0]) for row in dest.execute("PRAGMA integrity_check")]
    finally:
        dest.close()
    if problems != ["ok"]:
        raise BackupError(f"the copy failed its integrity check: {'; '.join(problems[:3])}")
    return len(times), max(times, default=0.0) * 1000


def backup(store_path: Path, target: Path, *, pages: int = BACKUP_PAGES) -> BackupResult:
    """Copy the store at ``store_path`` into the new file ``target`` (see the module's doc)."""
    if not store_path.exists():
        raise BackupError(f"no store at {store_path}: nothing to back up")
    if target.exists() or target.is_symlink():
        raise BackupError(f"{target} exists: a backup never replaces a file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder")
    partial = _partial(target)
    source = sqlite3.connect(store_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _check_commons(source, str(store_path))
        # The snapshot: a read transaction, opened by a first read and held to the end.
        source.execute("BEGIN")
        records = int(source.execute("SELECT count(*) FROM records").fetchone()[0])
        steps, longest = _copy(source, partial, pages)
        source.execute("COMMIT")
        _fsync(partial)
        os.link(partial, target)  # fails if target appeared meanwhile: never replaced
        _fsync_dir(target.parent)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {store_path}: {exc}") from None
    except FileExistsError:
        raise BackupError(f"{target} exists: a backup never replaces a file") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        source.close()
        partial.unlink(missing_ok=True)
    return BackupResult(target, records, target.stat().st_size, steps, longest)


def _check_commons(conn: sqlite3.Connection, name: str) -> int:
    """The schema version of a Commons store; BackupError for any other file."""
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{name} is not a Commons store ({exc})") from None
    if app != APPLICATION_ID:
        raise BackupError(f"{name} is not a Commons store")
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{name} has schema version {version}, newer than this version of Commons "
            f"reads ({SCHEMA_VERSION}): upgrade Commons first"
        )
    return version


def check_backup(path: Path) -> int:
    """Check a backup file (a Commons store that passes ``integrity_check``) without writing
    to it; return the records it holds."""
    if not path.is_file():
        raise BackupError(f"no file {path}")
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None
    try:
        _check_commons(conn, str(path))
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"{path} is damaged: {'; '.join(problems[:3])}")
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is damaged or not a Commons store ({exc})") from None
    finally:
        conn.close()


def _check_empty(store_path: Path) -> None:
    """Refuse unless there is no store at ``store_path``, or one without records."""
    if not store_path.exists():
        return
    try:
        with Store.open(store_path) as store:
            held = store.count()
    except StoreError as exc:  # something else is there: not ours to replace
        raise BackupError(f"{store_path} is in the way: {exc}") from None
    if held:
        raise BackupError(
            f"{store_path} already holds {held} records: restore only into a new home "
            "(or move that ledger.db away first)"
        )


def restore(path: Path, store_path: Path) -> int:
    """Put the backup ``path`` in place as ``store_path``, which must hold no record yet;
    return the records restored."""
    records = check_backup(path)
    _check_empty(store_path)
    partial = _partial(store_path)
    try:
        source = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            _copy(source, partial, BACKUP_PAGES)
        finally:
            source.close()
        with Store.open(partial) as store:  # brings an older schema up to date
            if store.count() != records:
                raise BackupError(f"the copy of {path} lost records")
        _fsync(partial)
        for suffix in ("-wal", "-shm"):  # the empty store's, if it had them
            Path(f"{store_path}{suffix}").unlink(missing_ok=True)
        os.replace(partial, store_path)
        _fsync_dir(store_path.parent)
    except (sqlite3.Error, StoreError) as exc:
        raise BackupError(f"cannot restore {path}: {exc}") from None
    except OSError as exc:
        raise BackupError(f"cannot write {store_path}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
    return records
