"""Tests of node/storage.py: the SQLite store, its queries, caches, schema and durability."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from node.store import peers as peers_module
from node.store import projects as projects_module
from node.store import schema
from node.store import sqlite as storage
from node.store.sqlite import Store, StoreClosedError, StoreError
from protocol.errors import RemoteProtocolError
from protocol.record import Record, decode_trusted
from protocol.testing import EPOCH_MS, RecordFactory
from protocol.validation import scope_of

REPO = Path(__file__).resolve().parents[2]
#: Two profiles by "alice" (name "Alice") whose ids share their first 8 hex digits, "51104532",
#: found once by a birthday search; Ed25519 signing is deterministic, so they are stable.
COLLIDING_TS = (EPOCH_MS + 60_955, EPOCH_MS + 86_692)
COLLIDING_PREFIX = "51104532"


def order(records: list[Record]) -> list[tuple[int, bytes]]:
    return sorted((r.ts, r.id) for r in records)


def two_projects(f: RecordFactory) -> tuple[list[Record], list[Record], list[Record]]:
    """Records of project 1, of project 2, and profiles, with shared timestamps here and there."""
    p1 = f.project("alice", name="One", maintainers=("carol",))
    c1 = f.contribution("bob", p1, title="Wheels", minutes=60)
    c2 = f.contribution("dave", p1, title="Frame", minutes=30, ts=c1.ts)  # same ts as c1
    e1 = f.endorsement("carol", c1, weight=3)
    u1 = f.update("alice", p1, name="One, renamed", ts=e1.ts)  # meta record, same ts as e1
    r1 = f.retraction("dave", c2)
    p2 = f.project("erin", name="Two")
    c3 = f.contribution("bob", p2, title="Docs")
    u2 = f.update("erin", p2, add=("bob",))
    profiles = [f.profile("bob", name="Bob"), f.profile("alice", name="Alice")]
    return [p1, c1, c2, e1, u1, r1], [p2, c3, u2], profiles


def test_round_trip(store: Store, f: RecordFactory) -> None:
    p = f.project("alice", name="Wikispeed")
    c = f.contribution("bob", p, title="Chassis CAD", minutes=120, artifacts=("https://x.org",))
    assert store.add([p, c]) == [True, True]
    got = store.get(c.id)
    assert got == c
    assert got is not None
    assert got.raw == c.raw
    assert got.id == c.id
    assert store.get_raw(p.id) == p.raw
    assert store.has(p.id)
    assert not store.has(bytes(32))
    assert store.get(bytes(32)) is None
    assert store.get_raw(bytes(32)) is None
    assert store.count() == 2
    assert store.count_by_kind() == {"contribution": 1, "project": 1}
    assert store.integrity_check() == "ok"


def test_duplicates_within_and_across_batches(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    a, b, c = (f.contribution("bob", p, title=t) for t in "abc")
    assert store.add([p, a, b, a]) == [True, True, True, False]
    assert store.add([b, c, c]) == [False, True, False]
    assert store.add([]) == []
    assert store.count() == 4


def test_big_batches_span_several_insert_statements(store: Store, f: RecordFactory) -> None:
    """Rows go in ``INSERT_ROWS`` at a time plus a remainder: every row lands exactly once,
    with its columns, whatever statement carried it."""
    p = f.project("alice")
    many = list(f.many_contributions("bob", p, 2 * storage.INSERT_ROWS + 7))
    held = many[: storage.INSERT_ROWS // 2]
    assert store.add(held) == [True] * len(held)
    batch = [p, *many, many[3], many[-1]]
    expected = [True] + [r not in held for r in many] + [False, False]
    assert store.add(batch) == expected
    assert store.count() == len(many) + 1
    assert store.items(p.id.hex()) == sorted((r.ts, r.id) for r in many)
    assert [r.id for r in store.project_records(p.id)[1]] == [r.id for r in many]
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute(
            "SELECT k.name, u.key, r.ts FROM records AS r JOIN kinds AS k ON k.n = r.kind"
            " JOIN units AS u ON u.n = r.author WHERE r.id = ?",
            (many[-1].id,),
        )
        assert rows.fetchall() == [("contribution", many[-1].author, many[-1].ts)]
    finally:
        conn.close()


def _columns_by_id(path: Path) -> dict[bytes, tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT r.id, k.name, p.name, s.name, r.target FROM records AS r"
            " JOIN kinds AS k ON k.n = r.kind LEFT JOIN scopes AS p ON p.n = r.project"
            " LEFT JOIN scopes AS s ON s.n = r.scope"
        )
        return {bytes(row[0]): tuple(row[1:]) for row in rows}
    finally:
        conn.close()


def test_a_batch_of_many_projects_and_kinds_stores_the_columns_lone_adds_do(
    store: Store, f: RecordFactory, tmp_path: Path
) -> None:
    """``add`` looks a (project, kind)'s numbers up once a batch: a batch mixing two projects'
    geneses, contributions, endorsements, updates and retractions with profiles stores
    each row's kind, project and scope exactly as adding the records one by one does."""
    one, two, profiles = two_projects(f)
    batch = [one[0], two[0], profiles[0], *one[1:], *two[1:], profiles[1]]
    assert store.add(batch) == [True] * len(batch)
    with Store.open(tmp_path / "lone.db") as lone:
        for record in batch:
            assert lone.add([record]) == [True]
    columns = _columns_by_id(store.path)
    assert columns == _columns_by_id(tmp_path / "lone.db")
    assert columns[one[1].id] == ("contribution", one[0].id.hex(), one[0].id.hex(), None)
    assert columns[one[4].id][0::2] == ("project-update", "meta")  # a meta record of project 1
    assert columns[profiles[0].id] == ("profile", None, "meta", None)


def test_ids_sharing_the_indexed_prefix_are_told_apart(store: Store, f: RecordFactory) -> None:
    """The id index holds 8 bytes of each id: a held row whose id shares them with a record
    (written here directly, as no search finds a real pair) neither hides nor stands in
    for that record, in any lookup or when it is stored."""
    p = f.project("alice")
    c = f.contribution("bob", p)
    twin = c.id[:8] + bytes(24)
    store.add([p])
    with store._transaction() as conn:
        conn.execute(
            "INSERT INTO records (id, raw, kind, author, project, scope, ts, target, received_at)"
            " SELECT ?, raw, kind, author, project, scope, ts, target, received_at FROM records",
            (twin,),
        )
    assert not store.has(c.id)
    assert store.get(c.id) is None
    assert store.missing([c.id, twin]) == [c.id]
    assert store.add([c]) == [True]
    assert store.add([c]) == [False]
    assert store.get(c.id) == c
    assert store.get_raw(twin) == p.raw
    assert store.raw_many([twin, c.id]) == [p.raw, c.raw]
    assert store.mark_published([c.id]) == 1
    assert store.resolve_prefix(c.id.hex()[:20]) == c.id
    with pytest.raises(RemoteProtocolError, match="ambiguous-id"):
        store.resolve_prefix(c.id.hex()[:16])


def test_a_failed_batch_stores_nothing(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    c = f.contribution("bob", p)
    with pytest.raises(AttributeError):
        store.add([p, c, object()])  # type: ignore[list-item]
    assert store.count() == 0
    assert store.scopes() == {}
    # Scope numbers handed out in the rolled-back transaction are not reused by mistake.
    assert store.add([c, p]) == [True, True]
    assert store.items(p.id.hex()) == [(c.ts, c.id)]
    assert store.project_records(p.id) == (p, [c])


def test_batch_bound(store: Store, f: RecordFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "MAX_BATCH", 2)
    p = f.project("alice")
    with pytest.raises(ValueError, match="at most 2"):
        store.add([p, f.contribution("bob", p), f.contribution("bob", p)])


def test_items_per_scope_sorted_by_ts_then_id(store: Store, f: RecordFactory) -> None:
    one, two, profiles = two_projects(f)
    everything = one + two + profiles
    store.add(list(reversed(everything)))
    meta = [r for r in everything if scope_of(r) == "meta"]
    assert {r.kind for r in meta} == {"project", "project-update", "profile"}
    assert store.items("meta") == order(meta)
    assert store.items(one[0].id.hex()) == order(
        [r for r in one if r.kind in ("contribution", "endorsement", "retraction")]
    )
    assert store.items(two[0].id.hex()) == order([two[1]])
    assert store.items("00" * 32) == []
    projects = sorted([one[0].id.hex(), two[0].id.hex()])
    assert list(store.scopes()) == ["meta", *projects]
    assert store.scopes() == {"meta": len(meta), two[0].id.hex(): 1, one[0].id.hex(): 4}


def test_resolve_prefix(store: Store, f: RecordFactory) -> None:
    a, b = (f.profile("alice", name="Alice", ts=ts) for ts in COLLIDING_TS)
    assert a.id.hex()[:8] == b.id.hex()[:8] == COLLIDING_PREFIX
    p = f.project("bob")
    store.add([a, b, p])
    assert store.resolve_prefix(p.id.hex()[:8]) == p.id
    assert store.resolve_prefix(p.id.hex().upper()) == p.id
    assert store.resolve_prefix(a.id.hex()[:9]) == a.id  # an odd number of digits
    assert store.resolve_prefix(a.id.hex()) == a.id
    with pytest.raises(RemoteProtocolError) as err:
        store.resolve_prefix(COLLIDING_PREFIX)
    assert err.value.code == "ambiguous-id"
    assert store.resolve_prefix(p.id.hex()[:8], kind="project") == p.id
    with pytest.raises(RemoteProtocolError) as err:
        store.resolve_prefix(p.id.hex()[:8], kind="contribution")
    assert err.value.code == "unknown-id"
    with pytest.raises(RemoteProtocolError) as err:
        store.resolve_prefix(COLLIDING_PREFIX, kind=("project", "contribution"))
    assert err.value.code == "unknown-id"
    unknown = "ff" * 32 if not p.id.hex().startswith("ff") else "00" * 32
    with pytest.raises(RemoteProtocolError) as err:
        store.resolve_prefix(unknown)
    assert err.value.code == "unknown-id"
    for bad in ("1234567", "xyzxyzxyz", "0" * 65):
        with pytest.raises(RemoteProtocolError) as err:
            store.resolve_prefix(bad)
        assert err.value.code == "bad-id"


def test_project_records_are_exactly_the_projects(store: Store, f: RecordFactory) -> None:
    one, two, profiles = two_projects(f)
    store.add(two + profiles + one)
    genesis, records = store.project_records(one[0].id)
    assert genesis == one[0]
    assert records == sorted(one[1:], key=lambda r: (r.ts, r.id))
    genesis, records = store.project_records(two[0].id)
    assert genesis == two[0]
    assert [r.id for r in records] == [r.id for r in two[1:]]
    assert store.project_records(bytes(32)) == (None, [])
    assert store.project_records(profiles[0].id) == (None, [])


def test_project_cache_follows_new_records(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    early = f.contribution("bob", p, ts=p.ts + 100)
    store.add([early])  # the genesis has not arrived yet
    assert store.project_records(p.id) == (None, [early])
    later = f.contribution("carol", p, ts=p.ts + 200)
    between = f.endorsement("alice", early, ts=p.ts + 150)
    other = f.project("zed")
    assert store.add([later, p, between, other, f.contribution("bob", other)]) == [True] * 5
    genesis, records = store.project_records(p.id)
    assert genesis == p
    assert records == [early, between, later]
    records.clear()  # the caller's copy; the cache is unaffected
    assert store.project_records(p.id)[1] == [early, between, later]
    assert store.add([later]) == [False]
    assert store.project_records(p.id)[1] == [early, between, later]


def test_project_cache_sees_other_processes(tmp_path: Path, f: RecordFactory) -> None:
    p = f.project("alice")
    c1, c2 = f.contribution("bob", p), f.contribution("bob", p)
    with Store.open(tmp_path / "ledger.db") as first, Store.open(tmp_path / "ledger.db") as second:
        first.add([p, c1])
        assert first.project_records(p.id) == (p, [c1])
        second.add([c2])
        assert first.project_records(p.id) == (p, [c1, c2])


def test_project_cache_bound(
    store: Store, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projects_module, "MAX_CACHED_RECORDS", 3)
    p1, p2 = f.project("alice"), f.project("bob")
    c1, c2 = f.contribution("bob", p1), f.contribution("carol", p2)
    store.add([p1, p2, c1, c2])
    for _ in range(2):  # each load evicts the other project; answers stay right
        assert store.project_records(p1.id) == (p1, [c1])
        assert store.project_records(p2.id) == (p2, [c2])
    big = f.project("dave")
    many = list(f.many_contributions("bob", big, 5))
    store.add([big, *many])
    assert store.project_records(big.id) == (big, many)  # too big to cache, still served


def test_project_ids_profiles_referring(store: Store, f: RecordFactory) -> None:
    one, two, profiles = two_projects(f)
    newer = f.profile("bob", name="Robert")
    older = f.profile("bob", name="Bobby", ts=EPOCH_MS - 5)
    store.add(one + two + profiles + [newer, older])
    assert store.project_ids() == [one[0].id, two[0].id]
    latest = store.profiles()
    assert sorted(r.id for r in latest) == sorted([newer.id, profiles[1].id])
    assert store.profile(f.pub("bob")) == newer
    assert store.profile(f.pub("nobody")) is None
    contribution = one[1]
    assert store.referring(contribution.id) == [one[3]]  # the endorsement
    assert store.referring(one[2].id) == [one[5]]  # the retraction
    assert store.count_by_kind() == {
        "contribution": 3,
        "endorsement": 1,
        "profile": 4,
        "project": 2,
        "project-update": 2,
        "retraction": 1,
    }


def test_missing_and_raw_many_in_chunks(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    held = [p, *f.many_contributions("bob", p, 700)]
    store.add(held)
    absent = [bytes([i % 256, i // 256]) + bytes(30) for i in range(600)]
    ids = [r.id for r in held]
    mixed = [x for pair in zip(ids[:600], absent, strict=True) for x in pair] + ids[600:]
    assert store.missing(mixed + absent[:3]) == absent
    assert store.missing(ids) == []
    assert store.raw_many(mixed) == [r.raw for r in held]
    assert store.raw_many(absent) == []


def test_iter_raw_orders_by_ts_then_id(store: Store, f: RecordFactory) -> None:
    one, two, profiles = two_projects(f)
    everything = one + two + profiles
    store.add(everything)
    by_raw = {r.raw: r for r in everything}
    expected = [r.raw for r in sorted(everything, key=lambda r: (r.ts, r.id))]
    assert list(store.iter_raw()) == expected
    assert list(store.iter_raw(batch=2)) == expected
    only = list(store.iter_raw([one[0].id.hex()], batch=1))
    assert [by_raw[raw] for raw in only] == sorted(one[1:4] + one[5:], key=lambda r: (r.ts, r.id))
    assert list(store.iter_raw(["nonexistent"])) == []
    with pytest.raises(ValueError, match="batch"):
        next(store.iter_raw(batch=0))


def test_unpublished_and_mark_published(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    mine = [f.contribution("alice", p, title=str(i)) for i in range(3)]
    theirs = f.contribution("bob", p)
    store.add([mine[2], p], published=False)
    store.add([theirs], published=True)
    store.add([mine[0], mine[1]])
    assert store.unpublished() == [mine[2], p, mine[0], mine[1]]
    assert store.unpublished(limit=1) == [mine[2]]
    assert store.mark_published([p.id, theirs.id, mine[0].id, bytes(32)]) == 2
    assert store.unpublished() == [mine[2], mine[1]]
    assert store.mark_published([mine[2].id, mine[1].id]) == 2
    assert store.unpublished() == []


def test_peer_book(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.remember_peer("12D3KooWA", ["/ip4/10.0.0.1/tcp/4710"], now_ms=1_000)
    store.remember_peer("12D3KooWB", ["/ip4/10.0.0.2/tcp/4710", "/ip4/10.0.0.2/tcp/4710"], 2_000)
    assert store.known_peers() == [
        ("12D3KooWB", ["/ip4/10.0.0.2/tcp/4710"]),
        ("12D3KooWA", ["/ip4/10.0.0.1/tcp/4710"]),
    ]
    store.remember_peer("12D3KooWA", [], now_ms=3_000)  # inbound: addresses kept
    assert store.known_peers(limit=1) == [("12D3KooWA", ["/ip4/10.0.0.1/tcp/4710"])]
    store.remember_peer("12D3KooWA", ["/dns4/a.example/tcp/1", "x" * 5000], now_ms=4_000)
    assert store.known_peers(limit=1) == [("12D3KooWA", ["/dns4/a.example/tcp/1"])]
    for i in range(peers_module.MAX_PEER_FAILURES - 1):
        store.peer_failure("12D3KooWB", now_ms=5_000 + i)
    store.remember_peer("12D3KooWB", [], now_ms=6_000)  # a success resets the count
    for i in range(peers_module.MAX_PEER_FAILURES - 1):
        store.peer_failure("12D3KooWB", now_ms=7_000 + i)
    assert [peer for peer, _ in store.known_peers()] == ["12D3KooWB", "12D3KooWA"]
    store.peer_failure("12D3KooWB", now_ms=8_000)
    assert [peer for peer, _ in store.known_peers()] == ["12D3KooWA"]
    store.peer_failure("12D3KooWunknown", now_ms=8_000)
    monkeypatch.setattr(peers_module, "MAX_PEERS", 2)
    store.remember_peer("12D3KooWC", ["/ip4/10.0.0.3/tcp/1"], now_ms=9_000)
    store.remember_peer("12D3KooWD", ["/ip4/10.0.0.4/tcp/1"], now_ms=10_000)
    assert [peer for peer, _ in store.known_peers()] == ["12D3KooWD", "12D3KooWC"]
    with pytest.raises(ValueError, match="peer id"):
        store.remember_peer("", [], now_ms=0)


def test_reopening_keeps_everything(tmp_path: Path, f: RecordFactory) -> None:
    path = tmp_path / "ledger.db"
    one, two, profiles = two_projects(f)
    with Store.open(path) as first:
        first.add(one + two + profiles)
        first.remember_peer("12D3KooWA", ["/ip4/10.0.0.1/tcp/4710"], now_ms=1)
    with Store.open(path) as again:
        assert again.count() == len(one + two + profiles)
        assert again.project_records(one[0].id) == (one[0], one[1:])
        assert again.items("meta") == order(
            [r for r in one + two + profiles if scope_of(r) == "meta"]
        )
        assert again.known_peers() == [("12D3KooWA", ["/ip4/10.0.0.1/tcp/4710"])]
        assert again.integrity_check() == "ok"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {storage.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this version"):
        Store.open(path)


def test_other_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("these are not the records you are looking for\n" * 100)
    with pytest.raises(StoreError, match=r"notes\.db is not a Commons store"):
        Store.open(text)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a Commons store"):
        Store.open(other)
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path / "no" / "such" / "dir" / "ledger.db")


def test_closed_store(tmp_path: Path, f: RecordFactory) -> None:
    store = Store.open(tmp_path / "ledger.db")
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StoreClosedError):
        store.add([f.project("alice")])
    with pytest.raises(StoreClosedError):
        store.count()


def test_threads_share_one_store(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    batches = [list(f.many_contributions(f"user{i}", p, 50)) for i in range(4)]
    store.add([p])
    errors: list[BaseException] = []

    def work(batch: list[Record]) -> None:
        try:
            for record in batch:
                store.add([record])
                store.project_records(p.id)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 201
    assert len(store.project_records(p.id)[1]) == 200


_WRITER = """
import sys, time
from node.store.sqlite import Store
from protocol.testing import RecordFactory
f = RecordFactory()
p = f.project("alice")
store = Store.open(sys.argv[1])
store.add([p, *f.many_contributions("bob", p, 300)])
print("committed", flush=True)
time.sleep(60)
"""


def test_acknowledged_batch_survives_sigkill(tmp_path: Path, f: RecordFactory) -> None:
    path = tmp_path / "ledger.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert line == "committed\n"
    assert proc.returncode == -signal.SIGKILL
    p = f.project("alice")
    expected = [p, *f.many_contributions("bob", p, 300)]
    with Store.open(path) as store:
        assert store.missing([r.id for r in expected]) == []
        assert store.count() == 301
        assert store.integrity_check() == "ok"


def test_records_added_while_a_project_decodes_are_kept(store: Store, f: RecordFactory) -> None:
    # project_records decodes outside the lock; what arrives meanwhile must not be lost.
    p = f.project("alice")
    c1, c2 = f.contribution("bob", p), f.contribution("carol", p)
    store.add([p, c1])
    pending = store._cached_project(p.id)
    assert isinstance(pending, storage.Pending)
    store.add([c2])
    decoded = [decode_trusted(raw) for raw in pending.raws]
    assert store._install_project(p.id, decoded, pending.last_seq) == (p, [c1, c2])
    assert store.project_records(p.id) == (p, [c1, c2])


def test_sqlite_failures_become_store_errors(
    tmp_path: Path, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "ledger.db"
    p = f.project("alice")
    with Store.open(path) as store:
        store.add([p])
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreError, match="locked"):
                store.add([f.contribution("bob", p)])
            other.execute("UPDATE records SET raw = x'c1' WHERE id = ?", (p.id,))
            other.execute("COMMIT")
        finally:
            other.close()
        with pytest.raises(StoreError, match="damaged"):
            store.get(p.id)
        assert store.count() == 1
