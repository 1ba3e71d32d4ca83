"""A big project's views stay warm: calls answer from recent results while records arrive.

``ViewCache(stale_seconds=...)`` (a running node) answers a big project's summary, shares
and prepared ledger pages from the results held in memory without reading the store, while
the node's background refresh makes them again; these tests check that such an answer is
exactly the fold of an earlier record set, never a mix, that other answers are made for the
current records, that the results are never older than ``stale_seconds``, and that a node
ingesting records all the time answers its views fast and from results it built in the
background.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from node.store.sqlite import Store
from node.views import cache
from node.views.cache import ViewCache, json_body
from node.views.tallied import Tallied
from protocol.attest import email_handle
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory

HANDLES = [email_handle(f"h{i}@x.org".encode()) for i in range(40)]


def _fold(p: Record, records: list[Record]) -> dict[str, Any]:
    """What the views answer for ``records``, by the full fold."""
    view = ProjectView.build(p, [p, *records])
    shares = [s.to_json() for s in view.shares()]
    entries = view.live_contributions()
    return {
        "shares body": json_body(shares),
        "page": ([e.to_json() for e in entries[: cache.DEFAULT_LEDGER_LIMIT]], len(entries)),
        "show": view.summary().to_json(),
    }


def _refuse(monkeypatch: pytest.MonkeyPatch, store: Store) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the store was read")

    for name in ("resolve_prefix", "project_key", "kinds_key", "ledger_rows", "tally_rows"):
        monkeypatch.setattr(store, name, refuse)


def test_recent_results_answer_without_the_store_and_never_mixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records arrive after a big project's results were made: its summary, shares and
    first page come from those results (the fold of the records then) without a store read;
    a page not made yet is made for the current records; past ``stale_seconds`` every
    answer is for the current records again. Without ``stale_seconds`` (the CLI) there is
    no such answer."""
    monkeypatch.setattr(cache, "WAIT_BELOW", 0.0)  # every project counts as big
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 7],), minutes=i) for i in range(30)]
    now = [100.0]
    with Store.open(tmp_path / "ledger.db") as store, Store.open(store.path) as reader:
        store.add([p, *records[:20]])
        views = ViewCache(store, clock=lambda: now[0], stale_seconds=10.0, reader=reader)
        fresh = ViewCache(store)
        assert views.warm(p.id) is True
        store.add(records[20:])
        before, after = _fold(p, records[:20]), _fold(p, records)
        text = p.id.hex()
        with monkeypatch.context() as patched:
            _refuse(patched, store)
            _refuse(patched, reader)
            assert views.shares_body(text) == before["shares body"]
            page = views.ledger_page(text)
            assert (page.entries, page.total) == before["page"]
            shown = views.project_show(text)
            shown.pop("followed")
            assert shown == before["show"]
            # The API's event loop gets the same answers, and none that needs the store.
            assert views.at_hand(views.shares_body, text) == before["shares body"]
            quick = views.at_hand(views.ledger_page, text, limit=7)
            assert quick is not None
            assert quick.body == json_body(before["page"][0][:7])
            assert quick.next_cursor == before["page"][0][6]["id"]
            alice = peer_id(f.pub("alice"))
            assert views.at_hand(views.ledger_page, text, author=alice) is None
            assert views.at_hand(views.ledger_page, text, cursor=quick.next_cursor) is None
            assert views.at_hand(views.project_list) is None
        # Not made yet: made now, for every record held.
        mine = views.ledger_page(text, author=peer_id(f.pub("alice")), limit=5)
        want = ProjectView.build(p, [p, *records]).live_contributions(author=f.pub("alice"))
        assert [e["id"] for e in mine.entries] == [e.id.hex() for e in want[:5]]
        assert mine.total == len(want)
        assert views.shares_body(text) == after["shares body"]  # those results are held now
        last = f.attested("alice", p, (HANDLES[0],), minutes=99)
        store.add([last])
        newest = _fold(p, [*records, last])
        assert views.shares_body(text) == after["shares body"]
        now[0] += 10.5  # older than stale_seconds: read the store, made again
        assert views.shares_body(text) == newest["shares body"]
        assert fresh.shares_body(text) == newest["shares body"]


def test_small_projects_are_made_again_by_the_call(tmp_path: Path) -> None:
    """A project whose results take less than ``WAIT_BELOW`` to make is made again by the
    call that finds them stale: a record stored before a call is in its answer."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(6)]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records[:-1]])
        views = ViewCache(store, stale_seconds=cache.STALE_SECONDS)
        assert views.warm(p.id) is True
        store.add(records[-1:])
        assert views.shares_body(p.id.hex()) == _fold(p, records)["shares body"]


def test_a_small_project_that_grows_big_by_a_sync_is_answered_as_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results made while a project was small are made again by a call that finds them
    stale, unless the cache heard (``note_stored``: the node's ingest listener) that the
    project has grown to ``BIG_RECORDS`` since: then, as for any big project, the call
    answers from them while they are recent, and leaves the making to the background."""
    monkeypatch.setattr(cache, "BIG_RECORDS", 10)
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 7],), minutes=i) for i in range(14)]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records[:3]])
        views = ViewCache(store, stale_seconds=cache.STALE_SECONDS)
        assert views.warm(p.id) is True
        store.add(records[3:6])
        views.note_stored(records[3:6])  # 4 + 3 records: still small, made again by the call
        assert views.at_hand(views.shares_body, p.id.hex()) is None
        assert views.shares_body(p.id.hex()) == _fold(p, records[:6])["shares body"]
        grown = ViewCache(store, stale_seconds=cache.STALE_SECONDS)
        assert grown.warm(p.id) is True  # made for 7 records, as the background makes them
        store.add(records[6:])
        grown.note_stored([p, *records[6:]])  # 7 + 8: big now (the genesis names no project)
        with monkeypatch.context() as patched:
            _refuse(patched, store)
            held = grown.at_hand(grown.shares_body, p.id.hex())
        assert held == _fold(p, records[:6])["shares body"] != _fold(p, records)["shares body"]


def test_a_project_the_store_counts_big_is_answered_as_big_before_the_listener_hears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call may read a project's key after a commit and before the node's ingest listener
    tells the cache of it (``note_stored``). When that key counts ``BIG_RECORDS`` or more,
    the call answers from the recent results, as for any big project, instead of making
    them itself; a page not made yet is still made for every record held; a project the
    store counts small is made again by the call."""
    monkeypatch.setattr(cache, "BIG_RECORDS", 10)
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 7],), minutes=i) for i in range(14)]
    made_by_calls: list[int] = []
    build = Tallied.build

    def counted(store: Store, pid: bytes, people: Any) -> Tallied | None:
        made_by_calls.append(1)
        return build(store, pid, people)

    with Store.open(tmp_path / "ledger.db") as store, Store.open(store.path) as reader:
        store.add([p, *records[:3]])
        views = ViewCache(store, stale_seconds=cache.STALE_SECONDS, reader=reader)
        assert views.warm(p.id) is True
        text = p.id.hex()
        store.add(records[3:5])  # 6 records: small, made again by the call
        monkeypatch.setattr(Tallied, "build", staticmethod(counted))
        assert views.shares_body(text) == _fold(p, records[:5])["shares body"]
        assert len(made_by_calls) == 1
        store.add(records[5:])  # 15 records, nothing heard
        assert views.at_hand(views.shares_body, text) is None  # the key must be read
        assert views.shares_body(text) == _fold(p, records[:5])["shares body"]
        page = views.ledger_page(text)
        assert (page.entries, page.total) == _fold(p, records[:5])["page"]
        assert len(made_by_calls) == 1  # neither call made them
        mine = views.ledger_page(text, author=HANDLES[0], limit=3)
        assert mine.total == 2  # a page not made: made for every record held (#0 and #7)
        assert views.shares_body(text) == _fold(p, records)["shares body"]


async def test_a_node_answers_from_built_views_while_records_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records are ingested all the time; meanwhile ``ledger`` and ``shares`` asked through
    the API answer within a bound, none of them making results itself (the background does,
    again and again), every answer the fold of some record set the node held; once ingest
    stops the answers catch up with every record."""
    from node.home import Home
    from node.runtime import NodeOptions, open_node
    from node.service import ServiceConfig

    monkeypatch.setattr(cache, "WAIT_BELOW", 0.0)  # every project counts as big
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 40],), minutes=1) for i in range(900)]
    home = Home(tmp_path / "home")
    home.init()
    with Store.open(home.store_path) as store:
        store.add([p, *records[:300]])
    background = threading.local()
    builds = {"call": 0, "background": 0}
    build, refresh = ViewCache._build, ViewCache.refresh

    def counted(self: ViewCache, *args: Any, **kw: Any) -> Any:
        builds["background" if getattr(background, "on", False) else "call"] += 1
        return build(self, *args, **kw)

    def refreshing(self: ViewCache, *args: Any, **kw: Any) -> Any:
        background.on = True
        try:
            return refresh(self, *args, **kw)
        finally:
            background.on = False

    monkeypatch.setattr(ViewCache, "_build", counted)
    monkeypatch.setattr(ViewCache, "refresh", refreshing)
    # The node's own views answer (not the API's front process, tested in test_api_front):
    # they are the ones counted here.
    options = NodeOptions(
        listen=["/ip4/127.0.0.1/tcp/0"],
        api="127.0.0.1:0",
        api_front=False,
        mdns=False,
        tuning=ServiceConfig(views_interval=0.2),
    )
    async with open_node(home, options) as node:
        text = p.id.hex()

        def ask() -> tuple[float, int, bytes]:
            started = time.monotonic()
            api = f"{node.api_url}/api/v1/projects/{text}"
            with urllib.request.urlopen(f"{api}/ledger?limit=10", timeout=30) as answer:
                total = int(answer.headers["X-Total-Count"])
                assert len(json.loads(answer.read())) == min(10, total)
            with urllib.request.urlopen(f"{api}/shares", timeout=30) as answer:
                body = answer.read()
            return time.monotonic() - started, total, body

        await trio.to_thread.run_sync(ask)  # made while the node started
        builds["background"] = 0
        waits: list[float] = []
        totals: list[int] = []
        folds: dict[int, bytes] = {}
        ingesting = True

        async def ingest() -> None:
            nonlocal ingesting
            for start in range(300, len(records), 50):
                batch = [r.raw for r in records[start : start + 50]]
                result = await node.ingestor.ingest(batch, source="sync")
                assert not result.rejected
                await trio.sleep(0.08)
                if start == 600:
                    # Half way, until the views' process has made answers again (its first
                    # child starts now, slowly on a loaded machine): calls see them grow.
                    assert node.views.maker is not None
                    with trio.fail_after(20):
                        while node.views.maker.answered < 1:  # noqa: ASYNC110 - a thread's count
                            await trio.sleep(0.05)
            ingesting = False

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ingest)
            while ingesting:
                took, total, body = await trio.to_thread.run_sync(ask)
                waits.append(took)
                totals.append(total)
                # The shares are the fold of the first ``held`` records (one state of the
                # store), and at least the page's: made then or later.
                held = sum(line["contributions"] for line in json.loads(body))
                assert held >= total
                if held not in folds:
                    folds[held] = _fold(p, records[:held])["shares body"]
                assert body == folds[held]
                await trio.sleep(0.03)
        assert builds["call"] == 0
        # Newer answers came, and only the background made them.
        assert builds["background"] >= 1
        assert totals == sorted(totals)
        assert totals[0] < totals[-1]
        assert max(waits) < 0.5, waits

        def caught_up() -> bool:
            return ask()[1] == len(records)

        with trio.fail_after(30):
            while not await trio.to_thread.run_sync(caught_up):  # noqa: ASYNC110 - a thread
                await trio.sleep(0.1)
        assert (await trio.to_thread.run_sync(ask))[2] == _fold(p, records)["shares body"]
        # The last answers were made again after ingest stopped, in the views' process (the
        # first such making may still be under way when ingest stops, on a loaded machine).
        assert node.views.maker is not None
        assert node.views.maker.answered >= 1
        child = node.views.maker.pid
    assert child is not None
    with pytest.raises(ProcessLookupError):  # stopped with the node
        os.kill(child, 0)


def test_answers_begun_before_a_purge_are_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records purged while a project's answers were being made (``forget``): those answers
    may show them, so they are answered once but never kept to answer later calls."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [f.attested("alice", p, (HANDLES[i % 3],), minutes=i) for i in range(6)]
    with Store.open(tmp_path / "ledger.db") as store:
        store.add([p, *records])
        views = ViewCache(store, stale_seconds=cache.STALE_SECONDS)
        build = Tallied.build.__func__  # type: ignore[attr-defined]

        def purged_meanwhile(cls: type[Tallied], *args: Any) -> Tallied | None:
            answers = build(cls, *args)
            views.forget()  # as NodeHandle.purge does once its transaction committed
            return answers

        with monkeypatch.context() as patched:
            patched.setattr(Tallied, "build", classmethod(purged_meanwhile))
            assert views.warm(p.id) is True
            assert views.warm(p.id) is True  # nothing was kept: made again
        assert views.warm(p.id) is True
        assert views.warm(p.id) is False  # made after the purge: kept
