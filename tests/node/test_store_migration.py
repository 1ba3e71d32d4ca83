"""A store of schema version 4 upgrades to version 5 (authors and kinds as numbers in the
``records`` row, the 8-byte id-prefix index) and then answers exactly as a store that held the
same records from the start: records by id and prefix, negentropy items of every scope
(refused ids included), identity reads, tallies, views, blocks, and a purge made afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from old_stores import write_old_store

from node.store.schema import (
    CONTRIBUTION,
    GENESIS,
    KIND_NUMBERS,
    PAGE_SIZE,
    PROFILE,
    SCHEMA_VERSION,
)
from node.store.sqlite import Store, StoreError
from node.views.cache import ViewCache
from protocol.attest import email_handle
from protocol.identity_records import IDENTITY_KINDS
from protocol.record import KINDS, Record, UnknownBody, sign_record
from protocol.testing import RecordFactory

HANDLE = email_handle(b"dave@example.org")
#: When the old store's refused ids and blocks were noted (``write_old_store``'s default).
AT = 1_700_000_000_000


def _history(f: RecordFactory) -> tuple[list[Record], list[Record]]:
    """Records of every kind (one of a kind this version does not know), in two projects,
    and records refused by policy."""
    p = f.project("alice", name="Old", maintainers=("bob",))
    q = f.project("erin", name="Other")
    c1 = f.contribution("bob", p, minutes=30, coauthors=("carol",))
    c2 = f.contribution("carol", p, type="docs", minutes=15)
    c3 = f.attested("alice", p, (HANDLE,), minutes=5)
    claim = f.claim("dave", p, HANDLE)
    vote = sign_record(
        f.key("alice"), body=UnknownBody(name="vote", value={"score": 5}), ts=f.now_ms + 1
    )
    f.now_ms += 1
    records = [
        p,
        q,
        c1,
        c2,
        c3,
        f.contribution("erin", q, minutes=7),
        f.endorsement("alice", c1, weight=3),
        f.endorsement("bob", c2),
        f.retraction("carol", c2),
        f.update("alice", p, add=("carol",)),
        f.profile("bob", name="Bob"),
        f.profile("bob", name="Robert"),
        f.profile("carol", name="Carol"),
        claim,
        f.confirm("alice", claim),
        f.link("dave", "dave", "ticket"),
        f.join("frank", "dave", "ticket"),
        f.revoke("dave", "dave", "frank"),
        vote,
    ]
    assert {r.kind for r in records} == KINDS | {"vote"}
    refused = [f.contribution("mallory", p), f.profile("mallory", name="M")]
    return records, refused


def _answers(store: Store, records: list[Record], refused: list[Record]) -> dict[str, Any]:
    """What the store answers about ``records``, through its public methods and the views."""
    ids = [r.id for r in records]
    bob = RecordFactory().pub("bob")
    projects = [r.id for r in records if r.kind == "project"]
    out: dict[str, Any] = {
        "get": [store.get(i) for i in ids],
        "raw": [store.get_raw(i) for i in ids],
        "has": [store.has(i) for i in [*ids, *(r.id for r in refused)]],
        "prefix": [
            store.resolve_prefix(r.id.hex()[:12], kind=r.kind) if store.has(r.id) else None
            for r in records
        ],
        "missing": store.missing([*ids, bytes(32)]),
        "served": store.raw_many(ids, served=lambda _project, author: author != bob),
        "scopes": store.scopes(),
        "items": {scope: store.items(scope) for scope in store.scopes()},
        "refused": {scope: store.refused_items(scope) for scope in store.scopes()},
        "count": (store.count(), store.count_by_kind()),
        "projects": (store.project_ids(), store.project_keys()),
        "profiles": (store.profiles(), store.profile(bob)),
        "identity": (store.of_kinds(IDENTITY_KINDS), store.kinds_key(IDENTITY_KINDS)),
        "latest": [
            store.latest(["contribution", "vote"]),
            store.latest(["profile"], author=bob),
            store.latest(["contribution", "endorsement"], project=projects[0]),
        ],
        "unpublished": store.unpublished(),
        "referring": [store.referring(i) for i in ids],
        "blocks": store.blocks(),
    }
    views = ViewCache(store, cache=False)
    for pid in projects:
        out[pid.hex()] = {
            "records": store.project_records(pid),
            "key": store.project_key(pid),
            "tallies": sorted(store.tally_rows(pid)),
            "types": store.type_counts(pid),
            "kinds": store.project_kinds(pid, ["project", "project-update", "claim"]),
            "ledger": list(store.ledger_rows(pid)),
            "by type": list(store.ledger_rows(pid, type="docs")),
            "show": views.project_show(pid.hex()),
            "shares": views.shares(pid.hex()),
            "page": views.ledger_page(pid.hex(), limit=2).entries,
        }
    return out


@pytest.mark.parametrize("tallied", [True, False], ids=["tallied", "backfill-pending"])
def test_a_version_4_store_upgrades_and_answers_as_before(tmp_path: Path, tallied: bool) -> None:
    f = RecordFactory()
    records, refused = _history(f)
    blocks = [("author", f.pub("mallory")), ("project", bytes(range(32)))]
    old = tmp_path / "old.db"
    write_old_store(old, 4, records, refused=refused, blocks=blocks, tallied=tallied)
    with Store.open(tmp_path / "new.db") as fresh:
        fresh.add(records[:-1], published=True, now_ms=AT)
        fresh.add(records[-1:], published=False, now_ms=AT)
        fresh.note_refused(refused, now_ms=AT)
        for kind, key in blocks:
            fresh.add_block(kind, key, now_ms=AT)  # type: ignore[arg-type]
        want = _answers(fresh, records, refused)
        with Store.open(old) as upgraded:
            assert upgraded.integrity_check() == "ok"
            # A new store's pages are PAGE_SIZE bytes; an old store keeps the size it has.
            page_size = "PRAGMA page_size"
            assert fresh._db.execute(page_size).fetchone()[0] == PAGE_SIZE != 4096
            assert upgraded._db.execute(page_size).fetchone()[0] == 4096
            # Compacted: the old table's pages went back to the file system (a backfill done
            # after it may free the page of its mark).
            free, pages = (
                upgraded._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("freelist_count", "page_count")
            )
            assert free <= 1 < pages
            assert _answers(upgraded, records, refused) == want
            # A purge afterwards finds the author's records by number, as a fresh store does.
            bob = f.pub("bob")
            assert upgraded.purge("author", bob, now_ms=2) == fresh.purge("author", bob, now_ms=2)
            assert _answers(upgraded, records, refused) == _answers(fresh, records, refused)
            # A kind this version does not know, arriving after the upgrade, gets a number.
            poll = sign_record(
                f.key("bob"), body=UnknownBody(name="poll", value={"q": 1}), ts=f.now_ms
            )
            assert upgraded.add([poll]) == fresh.add([poll]) == [True]
            assert upgraded.resolve_prefix(poll.id.hex()[:8], kind="poll") == poll.id
            assert upgraded.count_by_kind() == fresh.count_by_kind()
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        # The row holds numbers: the kinds this version knows by the schema's numbering.
        kinds = dict(conn.execute("SELECT name, n FROM kinds"))
        assert {k: kinds[k] for k in KIND_NUMBERS} == KIND_NUMBERS
        types = conn.execute("SELECT DISTINCT typeof(kind), typeof(author) FROM records")
        assert types.fetchall() == [("integer", "integer")]
        # The partial indexes name the kinds by the numbers the store's queries use.
        wheres = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
        assert f"WHERE kind <> {CONTRIBUTION}" in wheres["records_project"]
        assert f"WHERE kind = {GENESIS}" in wheres["records_genesis"]
        assert f"WHERE kind = {PROFILE}" in wheres["records_profile"]
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "records_id" in indexes
        assert "records_v5" not in indexes
        assert "view_snapshots" not in indexes  # the fold snapshots nothing reads any more
    finally:
        conn.close()


def test_a_failed_upgrade_leaves_the_version_4_store(tmp_path: Path) -> None:
    """The upgrade is one transaction: a store it cannot finish (here a trigger refusing the
    authors' new ``units`` rows stands in for a full disk) stays a whole version 4 store."""
    f = RecordFactory()
    records, _ = _history(f)
    path = tmp_path / "old.db"
    write_old_store(path, 4, records, tallied=True)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON units BEGIN SELECT RAISE(ABORT, 'full'); END"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="full"):
        Store.open(path)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (4,)
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (len(records),)
        assert conn.execute("SELECT DISTINCT typeof(author) FROM records").fetchall() == [("blob",)]
        assert (
            conn.execute("SELECT name FROM sqlite_master WHERE name = 'kinds'").fetchone() is None
        )
    finally:
        conn.close()
