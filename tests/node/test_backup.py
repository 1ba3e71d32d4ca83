"""``commons backup`` and ``commons restore``: a consistent copy taken under write load, and
its return into a new home as an identical ledger."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.main import main
from node.home import Home
from node.runtime import NodeOptions, open_node
from node.store.backup import BackupError, backup, check_backup, restore
from node.store.sqlite import Store
from protocol.testing import RecordFactory


def held(path: Path) -> dict[bytes, bytes]:
    """Every record of the store or backup at ``path``: id -> bytes."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, raw FROM records").fetchall())
    finally:
        conn.close()


def filled_home(root: Path, f: RecordFactory, count: int) -> Home:
    home = Home(root)
    home.init()
    project = f.project("alice")
    records = [project, *f.many_contributions("alice", project, count)]
    with Store.open(home.store_path) as store:
        for start in range(0, len(records), 5000):
            store.add(records[start : start + 5000], published=True)
    return home


async def test_a_backup_under_write_load_holds_every_acknowledged_record(
    tmp_path: Path,
) -> None:
    f = RecordFactory()
    home = filled_home(tmp_path / "seed", f, 8000)
    project = f.project("carol")
    fresh = [project, *f.many_contributions("bob", project, 3000)]
    acked: list[tuple[float, bytes]] = []
    target = tmp_path / "seed.backup"
    options = NodeOptions(listen=["/ip4/127.0.0.1/tcp/0"], api=None, mdns=False)
    with trio.fail_after(120):
        async with open_node(home, options) as node, trio.open_nursery() as nursery:

            async def write() -> None:
                for record in fresh:
                    await node.submit(record.raw)
                    acked.append((time.monotonic(), record.id))

            nursery.start_soon(write)
            while len(acked) < 50:  # noqa: ASYNC110 - the writer is another task
                await trio.sleep(0.01)
            started = time.monotonic()
            result = await trio.to_thread.run_sync(lambda: backup(home.store_path, target, pages=8))
            ended = time.monotonic()
            nursery.cancel_scope.cancel()
    before = {i for at, i in acked if at <= started}
    during = [i for at, i in acked if started < at < ended]
    assert during, "the node's writes did not go on while the backup ran"
    assert check_backup(target) == result.records
    copy = held(target)
    assert len(copy) == result.records
    assert before <= set(copy)
    # Every page of the copy is from the moment the backup began: nothing acknowledged after
    # it ended is there, and the copy is a whole ledger (the preloaded records too).
    assert not {i for at, i in acked if at > ended} & set(copy)
    assert len(copy) >= 8001 + len(before)
    assert result.steps > 1
    # Restored into a new home, the backup is the ledger.
    restored = Home(tmp_path / "new")
    restored.path.mkdir()
    assert restore(target, restored.store_path) == len(copy)
    assert held(restored.store_path) == copy
    with Store.open(restored.store_path) as store:
        assert store.integrity_check() == "ok"
        assert store.count() == len(copy)


def test_a_restore_gives_back_the_same_ledger(tmp_path: Path, capsys: Any) -> None:
    home = filled_home(tmp_path / "a", RecordFactory(), 300)
    target = tmp_path / "a.backup"
    assert main(["--home", str(home.path), "--json", "backup", str(target)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 301
    assert summary["file"] == str(target)
    assert summary["bytes"] == target.stat().st_size
    # One file: the copy is not left in WAL mode.
    assert not Path(f"{target}-wal").exists()
    fresh = tmp_path / "b"
    assert main(["--home", str(fresh), "restore", str(target)]) == 0
    out = capsys.readouterr().out
    assert "restored 301 records" in out
    assert "identity.key" in out  # the home has no identity yet: it says how to get one
    assert held(fresh / "ledger.db") == held(home.store_path)
    # `commons init` then completes the home around the restored store.
    assert main(["--home", str(fresh), "init"]) == 0
    assert main(["--home", str(fresh), "--json", "status"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["records"] == 301
    # A restore into a home initialised beforehand (an empty store) works too.
    empty = Home(tmp_path / "c")
    empty.init()
    with Store.open(empty.store_path):
        pass
    assert main(["--home", str(empty.path), "restore", str(target)]) == 0
    assert held(empty.store_path) == held(home.store_path)


def test_backup_and_restore_refuse_what_they_must(tmp_path: Path, capsys: Any) -> None:
    home = filled_home(tmp_path / "a", RecordFactory(), 10)
    target = tmp_path / "a.backup"
    target.write_text("keep me")
    assert main(["--home", str(home.path), "backup", str(target)]) == 1
    assert "never replaces" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    target.unlink()
    assert main(["--home", str(home.path), "backup", str(target)]) == 0
    capsys.readouterr()
    # Not into a home that holds records.
    assert main(["--home", str(home.path), "restore", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "already holds 11 records" in err
    # Not a damaged file: the check comes first, and nothing is left behind.
    damaged = tmp_path / "damaged.backup"
    data = bytearray(target.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the header's page size: a whole page spoilt
    data[len(data) // 2 : len(data) // 2 + 2 * page] = b"\xff" * (2 * page)
    damaged.write_bytes(bytes(data))
    fresh = tmp_path / "b"
    assert main(["--home", str(fresh), "restore", str(damaged)]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not (fresh / "ledger.db").exists()
    # Not a file that is not a Commons store, nor a missing one.
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    for bad in (other, tmp_path / "missing.backup"):
        assert main(["--home", str(fresh), "restore", str(bad)]) == 1
        assert capsys.readouterr().err.count("\n") == 1
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_a_backup_refuses_a_home_without_a_store(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no store"):
        backup(tmp_path / "ledger.db", tmp_path / "out")
    assert sorted(tmp_path.iterdir()) == []
