"""Tests of node/views/cache.py: a fold's answers equal ``protocol.ledger``'s exactly, results
held for a record set are never used once it changed, and refreshing folds within a budget.

The reference for every answer is ``protocol.ledger`` itself: records decoded from the store,
folded by ``ProjectView.build`` and printed with its ``to_json`` methods.
"""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from old_stores import write_old_store

from node.home import Home
from node.metrics import Metrics
from node.runtime import NodeOptions, open_node
from node.store import sqlite as storage
from node.store.sqlite import Store
from node.sync.ingest import Ingestor
from node.views.cache import ViewCache, ViewError
from protocol.attest import email_handle
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id, public_key_from_peer_id
from protocol.testing import RecordFactory

LIMITS = (None, 1, 3, 100_000)
TYPES = (None, "code", "docs", "design", "translation")


def rich_project(f: RecordFactory) -> list[Record]:
    """A project exercising every rule the views depend on (section 5 of docs/RECORD-FORMAT.md)."""
    p = f.project(
        "alice", name="Wikispeed", maintainers=("carol",), description="Cars", tags=("auto",)
    )
    c1 = f.contribution("bob", p, title="Wheels", minutes=60)
    c2 = f.contribution("dave", p, title="Frame", type="design", minutes=45, coauthors=("bob",))
    c3 = f.contribution(
        "erin", p, title="Docs ✓ ünïcode", type="docs", minutes=None, ts=c2.ts
    )  # same ts as c2: the id breaks the tie
    c4 = f.contribution(
        "bob", p, title="Engine", minutes=100, coauthors=("dave", "frank"), description="V8"
    )
    c5 = f.contribution("dave", p, title="Retracted", minutes=500)
    c6 = f.contribution("frank", p, title="Zero", minutes=0)
    c7 = f.contribution("alice", p, title="By a maintainer", minutes=30)
    records = [
        p,
        c1,
        c2,
        c3,
        c4,
        c5,
        c6,
        c7,
        f.endorsement("carol", c1, weight=3),
        f.endorsement("carol", c1, weight=2),  # would replace her 3, but carol is removed
        f.endorsement("alice", c4, weight=10),
        f.endorsement("alice", c4, weight=6),  # later: replaces her 10
        f.endorsement("alice", c2),
        f.endorsement("bob", c1, weight=5),  # a participant: does not count
        f.endorsement("erin", c4, weight=9),  # not a maintainer yet
        f.endorsement("alice", c5, weight=4),  # of a retracted contribution
        f.endorsement("carol", c7, weight=7),
        f.retraction("dave", c5),
        f.retraction("bob", c3),  # not the author's: no effect
    ]
    retracted_endorsement = f.endorsement("carol", c2, weight=8)
    records += [retracted_endorsement, f.retraction("carol", retracted_endorsement)]
    # Maintainers change: erin in (her endorsement starts counting), carol out (hers stop),
    # and an update by a non-maintainer that has no effect.
    records += [
        f.update("alice", p, add=("erin",), remove=("carol",), license="MIT", links=("https://x",)),
        f.update("bob", p, name="Hijacked"),
        f.update("erin", p, name="Wikispeed II"),
    ]
    return records


def reference(store: Store, pid: bytes) -> ProjectView:
    genesis, records = store.project_records(pid)
    assert genesis is not None
    return ProjectView.build(genesis, records)


def everything(views: ViewCache, pid: bytes, people: list[str]) -> dict[str, Any]:
    """Every answer the views give for a project, over all filter combinations."""
    text = pid.hex()
    out: dict[str, Any] = {
        "show": views.project_show(text),
        "list": views.project_list(),
        "shares": views.shares(text),
    }
    for author, type_, limit in itertools.product([None, *people], TYPES, LIMITS):
        out[f"ledger {author} {type_} {limit}"] = views.ledger(
            text, author=author, type=type_, limit=limit
        )
    return out


def expected(store: Store, pids: list[bytes], pid: bytes, people: list[str]) -> dict[str, Any]:
    """``everything`` straight from protocol.ledger's fold and its to_json methods."""
    view = reference(store, pid)
    listing = [{**reference(store, p).summary().to_list_json(), "followed": True} for p in pids]
    listing.sort(key=lambda p: (str(p["name"]).lower(), str(p["id"])))
    out: dict[str, Any] = {
        "show": {**view.summary().to_json(), "followed": True},
        "list": listing,
        "shares": [s.to_json() for s in view.shares()],
    }
    for author, type_, limit in itertools.product([None, *people], TYPES, LIMITS):
        key = None if author is None else public_key_from_peer_id(author)
        entries = view.live_contributions(
            author=key, type=type_, limit=1000 if limit is None else limit
        )
        out[f"ledger {author} {type_} {limit}"] = [e.to_json() for e in entries]
    return out


def people_of(factory: RecordFactory) -> list[str]:
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "nobody"]
    return [peer_id(factory.pub(n)) for n in names]


def no_decoding(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any decoding of a project's records fail the test."""

    def refuse(project_id: bytes) -> Any:
        raise AssertionError(f"project {project_id.hex()[:8]} was decoded")

    monkeypatch.setattr(store, "project_records", refuse)


# --------------------------------------------------------------------------------------------
# Fold answers equal protocol.ledger's


def test_fold_answers_equal_protocol_ledger(
    tmp_path: Path, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ledger.db"
    records = rich_project(f)
    empty = f.project("zed", name="empty project")
    pid, pids, people = records[0].id, [records[0].id, empty.id], people_of(f)
    with Store.open(path) as store:
        store.add([*records, empty])
        want = expected(store, pids, pid, people)
        want_empty = expected(store, pids, empty.id, people)
        # The fold answers as protocol.ledger does...
        views = ViewCache(store, tallies=False)
        assert everything(views, pid, people) == want
        assert everything(views, empty.id, people) == want_empty
        once = ViewCache(store, cache=False, tallies=False)  # the CLI's: keeps nothing
        assert everything(once, pid, people) == want
        # ...and the folds held in memory answer again without decoding anything.
        no_decoding(store, monkeypatch)
        assert everything(views, pid, people) == want
        assert everything(views, empty.id, people) == want_empty
    # The rules did produce what the test means to cover.
    show, shares = want["show"], {s["contributor"]: s for s in want["shares"]}
    assert show["name"] == "Wikispeed II"
    assert show["license"] == "MIT"
    assert show["contributions"] == 6
    assert isinstance(shares[people[1]]["claimed_minutes"], float)  # a third of 100 minutes
    assert want_empty["show"]["contributions"] == 0
    assert want_empty["shares"] == []
    assert len(want["ledger None None 1"]) == 1


def test_the_fold_of_an_attested_history_equals_protocol_ledger(
    tmp_path: Path, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = f.project("alice", maintainers=("bob",))
    carol, dave = email_handle(b"carol@example.org"), "forge:github.com/dave"
    c1 = f.attested("alice", p, (carol, dave), minutes=30)
    c2 = f.attested("alice", p, (dave,))
    claim = f.claim("carol", p, carol)
    records = [p, c1, c2, f.endorsement("bob", c1, weight=2), claim, f.confirm("bob", claim)]
    path, people = tmp_path / "ledger.db", people_of(f)
    with Store.open(path) as store:
        store.add(records)
        want = expected(store, [p.id], p.id, people)
        assert everything(ViewCache(store, tallies=False), p.id, people) == want
        assert everything(ViewCache(store), p.id, people) == want  # from the tallies
    shares = {s["contributor"]: s["contributions"] for s in want["shares"]}
    assert shares == {peer_id(f.pub("carol")): 1, dave: 2}
    assert want["ledger None None None"][1]["credited"] == [peer_id(f.pub("carol")), dave]
    assert want[f"ledger {peer_id(f.pub('alice'))} None None"] == []


def test_ledger_pages_with_a_cursor_from_a_fold_and_from_the_tallies(
    store: Store, f: RecordFactory
) -> None:
    p = f.project("alice")
    # Equal timestamps too: the cursor is a place in the (ts, id) order, not a ts.
    many = [f.contribution("bob", p, title=f"c{i}", ts=f.now_ms + i // 3) for i in range(25)]
    store.add([p, *many])
    text = p.id.hex()
    everyone = ViewCache(store).ledger(text, limit=1000)
    assert len(everyone) == 25
    for views in (
        ViewCache(store),
        ViewCache(store, cache=False),
        ViewCache(store, tallies=False),
        ViewCache(store, cache=False, tallies=False),
    ):
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = views.ledger_page(text, limit=10, cursor=cursor)
            assert page.total == 25
            seen += page.entries
            if page.next_cursor is None:
                break
            assert page.next_cursor == page.entries[-1]["id"]
            cursor = page.next_cursor
        assert seen == everyone
    # A retracted entry still marks its place.
    gone = everyone[9]["id"]
    store.add([f.retraction("bob", next(c for c in many if c.id.hex() == gone))])
    after = ViewCache(store).ledger_page(text, limit=5, cursor=gone)
    assert after.entries == everyone[10:15]
    assert after.total == 24
    with pytest.raises(ViewError, match="cursor"):
        ViewCache(store).ledger_page(text, cursor=p.id.hex())


def test_bad_filters_are_refused_before_any_work(store: Store, f: RecordFactory) -> None:
    records = rich_project(f)
    store.add(records)
    views = ViewCache(store)
    text = records[0].id.hex()
    with pytest.raises(ViewError) as info:
        views.ledger(text, author="not-a-peer-id")
    assert info.value.status == 400
    for limit in (-1, 0):
        with pytest.raises(ViewError) as info:
            views.ledger(text, limit=limit)
        assert info.value.status == 400
    with pytest.raises(ViewError, match="not one of code,") as info:
        views.ledger(text, type="bogus")
    assert info.value.status == 400
    with pytest.raises(ViewError) as info:
        views.ledger("ab" * 32)
    assert info.value.status == 404


# --------------------------------------------------------------------------------------------
# Staleness: results are used only for exactly the records they were made from


def ingestor(store: Store) -> Ingestor:
    return Ingestor(store, now_ms=lambda: 1_900_000_000_000, metrics=Metrics())


async def test_stale_results_are_not_used_after_new_records(
    tmp_path: Path, f: RecordFactory
) -> None:
    path = tmp_path / "ledger.db"
    records = rich_project(f)
    pid = records[0].id
    with Store.open(path) as store:
        store.add(records)
        views = ViewCache(store, tallies=False)
        before = views.ledger(pid.hex())
        # A contribution arrives the way gossip, sync and the API store records.
        new = f.contribution("grace", pid, title="Arrived later", minutes=5)
        result = await ingestor(store).ingest([new.raw], source="gossip")
        assert result.new == [new]
        for fresh in (
            views,
            ViewCache(store, tallies=False),
            ViewCache(store, cache=False, tallies=False),
        ):
            ledger = fresh.ledger(pid.hex())
            assert ledger[0]["id"] == new.id.hex()
            assert ledger[1:] == before
        # A project-update (a record of the meta scope) also makes the results stale: the
        # key covers every record of the project, not only those of its own scope.
        shares_before = ViewCache(store, tallies=False).shares(pid.hex())
        update = f.update("erin", pid, remove=("alice",))
        assert (await ingestor(store).ingest([update.raw], source="gossip")).new == [update]
        want = [s.to_json() for s in reference(store, pid).shares()]
        assert want != shares_before  # alice's endorsements stopped counting
        assert ViewCache(store, tallies=False).shares(pid.hex()) == want
        assert views.shares(pid.hex()) == want
    with Store.open(path) as store:
        assert ViewCache(store, tallies=False).shares(pid.hex()) == want


def test_another_process_storing_records_makes_the_results_stale(
    tmp_path: Path, f: RecordFactory
) -> None:
    path = tmp_path / "ledger.db"
    records = rich_project(f)
    pid = records[0].id
    with Store.open(path) as store:
        store.add(records)
        views = ViewCache(store)
        views.ledger(pid.hex())
        new = f.contribution("grace", pid, title="From an import")
        with Store.open(path) as other:  # as `commons import` would, while the node runs
            other.add([new])
        assert views.ledger(pid.hex())[0]["id"] == new.id.hex()


def test_records_arriving_during_a_fold_are_labelled_honestly(
    store: Store, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is read before the records: a fold that saw more records than its key counts
    is labelled with the later key, so held results never claim fewer records than they
    hold."""
    records = rich_project(f)
    pid = records[0].id
    store.add(records)
    late = f.contribution("grace", pid, title="During the fold")
    read = store.project_records

    def read_after_a_commit(project_id: bytes) -> tuple[Record | None, list[Record]]:
        store.add([late])
        return read(project_id)

    monkeypatch.setattr(store, "project_records", read_after_a_commit)
    views = ViewCache(store, tallies=False)
    assert views.ledger(pid.hex())[0]["id"] == late.id.hex()
    no_decoding(store, monkeypatch)  # held for the key after the late record
    assert views.ledger(pid.hex())[0]["id"] == late.id.hex()


def test_refresh_folds_within_the_budget_and_what_changed(
    store: Store, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = rich_project(f)
    two = f.project("erin", name="Two")
    three = f.project("frank", name="Not followed")
    big = f.project("grace", name="Big")
    store.add([*one, two, three, big, *f.many_contributions("grace", big, 30)])
    # A contribution whose project's genesis is not held: nothing to fold there.
    orphan = f.contribution("bob", b"\x07" * 32, title="Orphan")
    store.add([orphan])
    views = ViewCache(store, tallies=False)

    def follows(pid: bytes) -> bool:
        return pid != three.id

    # Smallest first, within the budget: the 31-record project does not fit after the others.
    assert views.refresh(follows, budget=len(one) + 1) == [two.id, one[0].id]
    assert views.refresh(follows, budget=1000) == [big.id]
    assert views.refresh(follows, budget=1000) == []  # all current in memory
    assert views.warm(one[0].id) is False
    # After a change only the project that changed is folded again...
    store.add([f.contribution("bob", two, title="New")])
    assert views.refresh(follows, budget=1000, shown_only=True) == [two.id]
    # ...and a project never shown (no fold held) is left alone.
    four = f.project("grace", name="Caught up on")
    store.add([four, f.contribution("bob", four, title="Synced")])
    assert views.refresh(follows, budget=1000, shown_only=True) == []
    assert views.refresh(follows, budget=1000) == [four.id]


# --------------------------------------------------------------------------------------------
# The schema


def test_a_version_1_store_migrates(tmp_path: Path, f: RecordFactory) -> None:
    path = tmp_path / "ledger.db"
    records = rich_project(f)
    write_old_store(path, 1, records)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (1,)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "view_snapshots" not in tables
    conn.close()
    with Store.open(path) as store:
        assert store.count() == len(records)
        assert store._db.execute("PRAGMA user_version").fetchone() == (storage.SCHEMA_VERSION,)
        want = ViewCache(store, tallies=False).ledger(records[0].id.hex())
        assert ViewCache(store).ledger(records[0].id.hex()) == want
        assert store.integrity_check() == "ok"


# --------------------------------------------------------------------------------------------
# A restarted node answers from the tallies


async def test_a_restarted_node_answers_from_the_tallies_without_decoding_the_project(
    tmp_path: Path, f: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "node")
    home.init()
    records = rich_project(f)
    pid = records[0].id.hex()
    with Store.open(home.store_path) as store:
        store.add(records)
    options = NodeOptions(listen=["/ip4/127.0.0.1/tcp/0"], api=None, mdns=False)
    with trio.fail_after(30):
        async with open_node(home, options) as node:
            ledger = await trio.to_thread.run_sync(node.views.ledger, pid)
            shares = await trio.to_thread.run_sync(node.views.shares, pid)
        async with open_node(home, options) as node:
            no_decoding(node.store, monkeypatch)
            assert await trio.to_thread.run_sync(node.views.ledger, pid) == ledger
            assert await trio.to_thread.run_sync(node.views.shares, pid) == shares
