"""The views from the store's tallies (node.views.tallied) answer exactly as the full fold.

Random record sets (Hypothesis) with every kind the fold reads: plain and attested
contributions with coauthors and equal timestamps, SSH-signed work and claims it proves,
endorsements (eligible or not, re-endorsed, retracted), retractions by the author and by
others, maintainer changes, claims and confirmations (disputes, withdrawals, two handles one
key), stored in random batches, then purged by author. Every answer of ``ViewCache`` is
compared with ``protocol.ledger``'s fold of the same records: project show, shares, every
ledger filter and page by cursor.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from old_stores import write_old_store

from node.store import tally
from node.store.base import INSERT_ROWS
from node.store.sqlite import Store
from node.views.cache import ViewCache, json_body
from node.views.tallied import Tallied
from protocol.attest import email_handle, handle_key
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory

KEYS = ["alice", "bob", "carol", "dave"]
HANDLES = [email_handle(b"h1@x.org"), email_handle(b"h2@x.org"), "forge:example.org/h3"]
TYPES = ["code", "docs"]
#: SSH keys that sign commits (recorded as ``ssh_key``) and prove claims.
SSH = ["ssh-h1", "ssh-h2"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[Record, list[Record]]:
    """A project by alice (bob a maintainer) and a random history of its records."""
    f = RecordFactory()
    f.step_ms = 0  # equal timestamps unless drawn: the ledger order's ties
    p = f.project("alice", maintainers=("bob",), ts=1000)
    records: list[Record] = []
    contributions: list[Record] = []
    claims: list[Record] = []
    names: dict[bytes, str] = {}
    for _ in range(draw(st.integers(1, 40))):
        op = draw(st.sampled_from(["c", "c", "c", "a", "a", "e", "e", "r", "u", "k", "k"]))
        who = draw(st.sampled_from(KEYS))
        ts = 1000 + draw(st.integers(0, 6))
        if op == "c":
            co = draw(st.lists(st.sampled_from([k for k in KEYS if k != who]), max_size=2))
            record = f.contribution(
                who,
                p,
                type=draw(st.sampled_from(TYPES)),
                minutes=draw(st.one_of(st.none(), st.integers(0, 500))),
                coauthors=tuple(dict.fromkeys(co)),
                ts=ts,
                title=f"c{len(records)}",
            )
            contributions.append(record)
        elif op == "a":
            handles = draw(st.lists(st.sampled_from(HANDLES), min_size=1, max_size=3, unique=True))
            minutes = draw(st.one_of(st.none(), st.integers(0, 90)))
            signer = draw(st.sampled_from([None, *SSH]))
            record = f.attested(who, p, tuple(handles), minutes=minutes, ts=ts, signed_by=signer)
            contributions.append(record)
        elif op == "e" and contributions:
            target = draw(st.sampled_from(contributions))
            record = f.endorsement(who, target, weight=draw(st.integers(1, 10)), ts=ts)
        elif op == "r" and records:
            target = draw(st.sampled_from(records))
            if target.kind in ("project-update", "retraction"):
                continue
            by = names[target.id] if draw(st.booleans()) else who
            record = f.retraction(by, target, ts=ts)
        elif op == "u":
            change = draw(st.sampled_from(KEYS))
            if draw(st.booleans()):
                record = f.update(who, p, add=(change,), ts=ts)
            else:
                record = f.update(who, p, remove=(change,), ts=ts)
        elif op == "k":
            if claims and draw(st.booleans()):
                record = f.confirm(who, draw(st.sampled_from(claims)), ts=ts)
            else:
                ssh = draw(st.sampled_from([None, *SSH]))
                record = f.claim(who, p, draw(st.sampled_from(HANDLES)), ts=ts, ssh=ssh)
                claims.append(record)
        else:
            continue
        names[record.id] = who if record.kind != "retraction" else names.get(record.id, who)
        records.append(record)
    return p, records


def _bucket(ts: int) -> tuple[str, int]:
    """ "Months" of 2 ms for the contributions chart: the histories' times (1000 to 1006)
    fall in several, and the walk by month meets retracted and endorsed ones."""
    return f"{ts // 2:08d}", ts // 2 * 2


#: Buckets the chart shows at most, fewer than the histories have.
MONTHS = 3


def _fold_answers(p: Record, records: list[Record]) -> dict[str, Any]:
    view = ProjectView.build(p, [p, *records])
    shares = [s.to_json() for s in view.shares()]
    months = Counter(_bucket(e.record.ts)[0] for e in view.live_contributions())
    out: dict[str, Any] = {
        "show": view.summary().to_json(),
        "shares": shares,
        "shares body": json_body(shares),
        "months": sorted(months.items())[-MONTHS:],
    }
    for author in _authors():
        for kind in (None, *TYPES):
            entries = view.live_contributions(author=author, type=kind)
            out[f"ledger {author and author.hex()[:8]} {kind}"] = (
                [e.to_json() for e in entries],
                len(entries),
            )
    for handle in HANDLES:  # the work recorded on a handle's behalf, claimed or not
        for kind in (None, *TYPES):
            entries = view.live_contributions(handle=handle, type=kind)
            out[f"ledger {handle} {kind}"] = ([e.to_json() for e in entries], len(entries))
    return out


def _authors() -> list[bytes | None]:
    f = RecordFactory()
    return [None, *(f.pub(k) for k in KEYS), handle_key(HANDLES[0])]


def _tallied_answers(views: ViewCache, pid: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"show": views.project_show(pid.hex()), "shares": None}
    out["show"].pop("followed")
    out["shares"] = views.shares(pid.hex())
    out["shares body"] = views.shares_body(pid.hex())
    out["months"] = views.contribution_months(pid.hex(), _bucket, MONTHS)
    filters = [(author and author.hex()[:8], author and peer_id(author)) for author in _authors()]
    filters += [(handle, handle) for handle in HANDLES]
    for label, name in filters:
        for kind in (None, *TYPES):
            # Pages of 3 by cursor, to walk the keyset pagination through ties.
            entries: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = views.ledger_page(pid.hex(), author=name, type=kind, limit=3, cursor=cursor)
                entries += page.entries
                total = page.total
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            out[f"ledger {label} {kind}"] = (entries, total)
    return out


def _store_in_batches(store: Store, records: list[Record], cuts: list[int]) -> None:
    start = 0
    for cut in [*sorted(set(cuts)), len(records)]:
        if cut > start:
            store.add(records[start:cut])
            start = cut


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(histories(), st.data())
def test_tallied_views_equal_the_full_fold(
    tmp_path: Path, history: tuple[Record, list[Record]], data: st.DataObject
) -> None:
    p, records = history
    order = data.draw(st.permutations(records))
    cuts = data.draw(st.lists(st.integers(0, len(records)), max_size=3))
    path = tmp_path / f"t{abs(hash((p.id, tuple(r.id for r in order))))}.db"
    store = Store.open(path, synchronous="NORMAL")
    try:
        _store_in_batches(store, [p, *order], cuts)
        views = ViewCache(store, cache=False)
        assert isinstance(views._answers(p.id), Tallied)
        assert _tallied_answers(views, p.id) == _fold_answers(p, records)
        # A purge of one author's records takes their credit out of the sums.
        gone = data.draw(st.sampled_from(KEYS[1:]))
        gone_key = RecordFactory().pub(gone)
        store.purge("author", gone_key)
        left = [r for r in records if r.author != gone_key]
        assert _tallied_answers(ViewCache(store, cache=False), p.id) == _fold_answers(p, left)
        held = {r.id: r for r in [p, *left]}.values()  # a history may repeat a record
        assert store.count_by_kind() == dict(sorted(Counter(r.kind for r in held).items()))
        assert store.count() == len(held)
    finally:
        store.close()
        path.unlink()


def test_a_store_of_version_3_is_tallied_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store made before the tallies is filled in when opened, in batches that each commit,
    and then answers as the fold."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [
        f.contribution(KEYS[i % 4], p, minutes=i, coauthors=("dave",) if i % 4 == 1 else ())
        for i in range(1, 30)
    ]
    records.append(f.attested("alice", p, (HANDLES[0], HANDLES[2]), minutes=7))
    records.append(f.endorsement("bob", records[0], weight=3))
    records.append(f.retraction("carol", records[1]))
    path = tmp_path / "old.db"
    write_old_store(path, 3, [p, *records])
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()
    monkeypatch.setattr(tally, "BACKFILL_BATCH", 7)
    with Store.open(path) as store:
        assert _tallied_answers(ViewCache(store, cache=False), p.id) == _fold_answers(p, records)
        assert store.project_key(p.id) == (len(records) + 1, len(records) + 1)
        assert store.count() == len(records) + 1
        assert store.count_by_kind()["contribution"] == 30


def test_warming_makes_the_first_page_and_the_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up warming leaves the default ledger page and the shares made: the first
    calls read nothing more from the store."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(12)]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records])
        views = ViewCache(store)
        assert views.warm(p.id) is True
        assert views.warm(p.id) is False  # held for the current records

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("the store was read again")

        monkeypatch.setattr(store, "ledger_rows", refuse)
        monkeypatch.setattr(store, "tally_rows", refuse)
        fold = _fold_answers(p, records)
        assert views.shares(p.id.hex()) == fold["shares"]
        page = views.ledger_page(p.id.hex())
        assert (page.entries, page.total) == fold["ledger None None"]


def test_the_answers_held_follow_inserts_and_purges(tmp_path: Path) -> None:
    """A node's answers are held per record set: a record stored or purged gives new ones,
    made again from the tallies (the shares' encoded bytes and the first page included)."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(9)]
    records += [f.contribution(KEYS[i % 4], p, minutes=i) for i in range(5)]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records[:-3]])
        views = ViewCache(store)
        assert views.warm(p.id) is True
        for step in ("add", "purge"):
            if step == "add":
                store.add(records[-3:])
                held = records
            else:
                store.purge("author", RecordFactory().pub("bob"))
                views.forget()
                held = [r for r in records if r.author != RecordFactory().pub("bob")]
            fold = _fold_answers(p, held)
            assert views.shares_body(p.id.hex()) == fold["shares body"]
            assert views.shares(p.id.hex()) == fold["shares"]
            page = views.ledger_page(p.id.hex())
            assert (page.entries, page.total) == fold["ledger None None"]


async def test_a_node_makes_the_tallied_views_before_its_api_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first ledger page and the shares of a project are made while the node starts:
    once its API is up, answering them reads nothing from the store."""
    from node.home import Home
    from node.runtime import NodeOptions, open_node

    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(12)]
    home = Home(tmp_path / "home")
    home.init()
    with Store.open(home.store_path) as store:
        store.add([p, *records])
    options = NodeOptions(listen=["/ip4/127.0.0.1/tcp/0"], api="127.0.0.1:0", mdns=False)
    async with open_node(home, options) as node:

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("the store was read again")

        monkeypatch.setattr(node.store, "ledger_rows", refuse)
        monkeypatch.setattr(node.store, "tally_rows", refuse)
        fold = _fold_answers(p, records)
        assert node.views.shares_body(p.id.hex()) == fold["shares body"]
        page = node.views.ledger_page(p.id.hex())
        assert (page.entries, page.total) == fold["ledger None None"]


def test_tallied_answers_are_made_again_whatever_their_size_after_a_pause(
    tmp_path: Path,
) -> None:
    """After a start the answers from the tallies are made outside the record budget (they
    cost per participant); later, as records arrive, they are made again once
    ``REBUILD_PAUSE`` times what they took has passed, and left for later until then; a
    project that arrives later is made too, shown or not."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(6)]
    now = [0.0]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records[:-1]])
        views = ViewCache(store, clock=lambda: now[0])
        assert views.refresh(lambda _: True, 0) == [p.id]
        store.add(records[-1:])
        assert views.refresh(lambda _: True, 0, shown_only=True) == []
        assert views.deferred == [p.id]
        now[0] = 60.0  # far more than three times what making them took
        assert views.refresh(lambda _: True, 0, shown_only=True) == [p.id]
        assert views.deferred == []
        assert views.shares_body(p.id.hex()) == _fold_answers(p, records)["shares body"]
        # A project that arrives later (by a sync), never shown, is made as well.
        q = f.project("bob")
        store.add([q, f.attested("bob", q, (HANDLES[0],))])
        assert views.refresh(lambda _: True, 0, shown_only=True) == [q.id]


def test_a_batch_of_more_rows_than_one_statement_is_tallied_whole(tmp_path: Path) -> None:
    """The tallies of a batch are written ``INSERT_ROWS`` rows a statement: a batch of more
    contributions and participants than that, in one transaction, counts every one."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    n = 2 * INSERT_ROWS + 7
    records = [
        f.contribution(
            KEYS[i % 4],
            p,
            type=TYPES[i % 2],
            minutes=i % 50,
            coauthors=(KEYS[(i + 1) % 4],) if i % 3 == 0 else (),
        )
        for i in range(n)
    ]
    records += [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(n // 2)]
    with Store.open(tmp_path / "ledger.db") as store:
        assert all(store.add([p, *records]))
        views = ViewCache(store)
        fold = _fold_answers(p, records)
        assert views.shares(p.id.hex()) == fold["shares"]
        show = views.project_show(p.id.hex())
        show.pop("followed")
        assert show == fold["show"]
        for author in _authors():
            name = None if author is None else peer_id(author)
            for kind in (None, *TYPES):
                page = views.ledger_page(p.id.hex(), author=name, type=kind, limit=5)
                entries, total = fold[f"ledger {author and author.hex()[:8]} {kind}"]
                assert (page.entries, page.total) == (entries[:5], total)
