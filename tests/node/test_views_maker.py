"""A big project's answers made again in a process of their own (``node.views.maker``).

The child process reads the store a second time and makes the summary, the shares and the
first ledger page; these tests check that what it makes is what this process would make,
byte for byte, that a cache whose answers it made answers every view as the full fold does,
and that a child that fails, hangs or idles is stopped and leaves the making to this process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.store.sqlite import Store
from node.views import cache, maker
from node.views.cache import ViewCache, json_body
from node.views.maker import AnswerMaker
from node.views.tallied import Tallied
from protocol.attest import email_handle
from protocol.identity import People
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory

HANDLES = [email_handle(f"h{i}@x.org".encode()) for i in range(9)] + ["forge:git.example.org/zoe"]
LIMIT = cache.DEFAULT_LEDGER_LIMIT + 1


def _records(f: RecordFactory, p: Record, n: int, start: int = 0) -> list[Record]:
    """Attested contributions (some by two handles) and plain ones by two people."""
    out: list[Record] = []
    for i in range(start, start + n):
        if i % 5 == 4:
            out.append(f.contribution("carol" if i % 2 else "dave", p, minutes=i, title=f"c{i}"))
        else:
            handles = (HANDLES[i % 10],) if i % 3 else (HANDLES[i % 10], HANDLES[(i + 1) % 10])
            out.append(f.attested("alice", p, handles, minutes=i % 7))
    return out


def _fold(p: Record, records: list[Record]) -> dict[str, Any]:
    view = ProjectView.build(p, [p, *records])
    shares = [s.to_json() for s in view.shares()]
    entries = view.live_contributions()
    return {
        "shares": shares,
        "shares body": json_body(shares),
        "page": ([e.to_json() for e in entries[: cache.DEFAULT_LEDGER_LIMIT]], len(entries)),
        "show": view.summary().to_json(),
        "view": view,
    }


@pytest.fixture
def project(tmp_path: Path) -> tuple[RecordFactory, Record, list[Record], Path]:
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = _records(f, p, 40)
    # Special records: an endorsement and a retraction, folded rather than added up.
    records.append(f.endorsement("bob", records[1], weight=3))
    records.append(f.retraction("alice", records[2]))
    path = tmp_path / "ledger.db"
    with Store.open(path) as store:
        store.add([p, *records])
    return f, p, records, path


def test_the_child_prepares_what_this_process_prepares(
    project: tuple[RecordFactory, Record, list[Record], Path],
) -> None:
    """The summary, the shares and the first page the child makes equal, byte for byte,
    those :meth:`Tallied.prepare` makes here, labelled with the key of the state read;
    answers that adopt them answer as the full fold."""
    _, p, records, path = project
    with Store.open(path) as store:
        here = Tallied.build(store, p.id, People.fold([]))
        assert here is not None
        here.prepare(LIMIT)
        want = here.prepared()
        apart = AnswerMaker(path)
        try:
            made = apart.make(p.id, (0, 0), LIMIT)
            assert made is not None
            key, prepared = made
            assert key == store.project_key(p.id)
            assert prepared == want
            assert apart.answered == 1
            assert apart.started == 1
            # Another request is answered by the same child.
            assert apart.make(p.id, (0, 0), LIMIT) == made
            assert apart.started == 1
            # Not the caller's persons (it would fold them otherwise): not made.
            assert apart.make(p.id, (1, 1), LIMIT) is None
            assert apart.make(b"\x01" * 32, (0, 0), LIMIT) is None
        finally:
            apart.close()
        assert apart.make(p.id, (0, 0), LIMIT) is None  # closed
        adopting = Tallied.build(store, p.id, People.fold([]))
        assert adopting is not None
        adopting.adopt(prepared)
        fold = _fold(p, records)
        assert adopting.made((None, None, LIMIT, None))
        assert adopting.ledger(None, None, LIMIT) == fold["page"]
        assert adopting.shares_body() == fold["shares body"]
        assert adopting.shares() == fold["shares"]
        assert adopting.show() == fold["show"]


def _remade(path: Path, apart: AnswerMaker, **kw: Any) -> tuple[Store, Store, ViewCache]:
    store = Store.open(path)
    reader = Store.open(path)
    views = ViewCache(store, reader=reader, maker=apart, stale_seconds=30.0, **kw)
    return store, reader, views


def test_a_cache_makes_a_remade_project_apart_and_answers_as_the_fold(
    project: tuple[RecordFactory, Record, list[Record], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A project's first answers are made here; once they are held and big, the background
    makes them again in the child. Every view then answers as the full fold: the prepared
    ones from the child's, the others (an author's page) made here for the same records;
    while newer records arrive the recent answers stay the fold of the older ones."""
    monkeypatch.setattr(cache, "WAIT_BELOW", 0.0)  # every project counts as big
    f, p, records, path = project
    apart = AnswerMaker(path)
    store, reader, views = _remade(path, apart)
    try:
        assert views.warm(p.id) is True
        assert apart.started == 0  # nothing held yet: made here, a call may be waiting
        more = _records(f, p, 12, start=40)
        store.add(more)
        assert views.warm(p.id) is True
        assert apart.answered == 1
        everything = [*records, *more]
        fold = _fold(p, everything)
        text = p.id.hex()
        assert views.shares_body(text) == fold["shares body"]
        assert views.shares(text) == fold["shares"]
        page = views.ledger_page(text)
        assert (page.entries, page.total) == fold["page"]
        assert page.body == json_body(fold["page"][0])
        shown = views.project_show(text)
        shown.pop("followed")
        assert shown == fold["show"]
        carol = f.pub("carol")
        mine = views.ledger_page(text, author=peer_id(carol), limit=3)
        want = fold["view"].live_contributions(author=carol)
        assert [e["id"] for e in mine.entries] == [e.id.hex() for e in want[:3]]
        assert mine.total == len(want)
        handle = views.ledger_page(text, author=HANDLES[3])
        assert handle.total == len(fold["view"].live_contributions(handle=HANDLES[3]))
        # Newer records: the recent answers are those of the older set, never a mix.
        newest = _records(f, p, 5, start=52)
        store.add(newest)
        assert views.at_hand(views.shares_body, text) == fold["shares body"]
        assert views.warm(p.id) is True
        assert apart.answered == 2
        assert views.shares_body(text) == _fold(p, [*everything, *newest])["shares body"]
    finally:
        apart.close()
        reader.close()
        store.close()


def test_a_child_that_fails_leaves_the_making_here(
    project: tuple[RecordFactory, Record, list[Record], Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child killed between two requests: the next answers are made here, the node says
    so once, and the maker rests ``FAILURE_PAUSE`` before it starts another child, which
    then makes them again."""
    monkeypatch.setattr(cache, "WAIT_BELOW", 0.0)
    f, p, records, path = project
    now = [0.0]
    apart = AnswerMaker(path, clock=lambda: now[0])
    store, reader, views = _remade(path, apart)
    text = p.id.hex()
    try:
        assert views.warm(p.id) is True
        batches = [_records(f, p, 3, start=100 + 3 * i) for i in range(4)]
        store.add(batches[0])
        assert views.warm(p.id) is True
        assert apart.answered == 1
        child = apart.pid
        assert child is not None
        os.kill(child, signal.SIGKILL)
        store.add(batches[1])
        with caplog.at_level(logging.WARNING, logger="node.views.maker"):
            assert views.warm(p.id) is True
        assert apart.pid is None
        assert "the node makes the answers itself" in caplog.text
        assert (
            views.shares_body(text) == _fold(p, [*records, *batches[0], *batches[1]])["shares body"]
        )
        store.add(batches[2])
        assert views.warm(p.id) is True  # made here: the maker rests
        assert (apart.started, apart.answered) == (1, 1)
        now[0] += maker.FAILURE_PAUSE
        store.add(batches[3])
        assert views.warm(p.id) is True
        assert (apart.started, apart.answered) == (2, 2)
        held = [*records, *(r for batch in batches for r in batch)]
        assert views.shares_body(text) == _fold(p, held)["shares body"]
    finally:
        apart.close()
        reader.close()
        store.close()


def test_a_child_that_does_not_answer_is_stopped(
    project: tuple[RecordFactory, Record, list[Record], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child that gives no answer within ``answer_seconds`` is killed and the request
    answered None (the caller makes the answers)."""
    _, p, _, path = project
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    apart = AnswerMaker(path, answer_seconds=0.3, command=silent)
    try:
        with caplog.at_level(logging.WARNING, logger="node.views.maker"):
            assert apart.make(p.id, (0, 0), LIMIT) is None
        assert "gave no answer in 0.3 s" in caplog.text
        assert apart.pid is None
    finally:
        apart.close()


def test_bad_messages_end_the_exchange() -> None:
    """A message longer than ``MAX_MESSAGE`` or cut short ends the exchange (EOFError)
    instead of being read."""
    import io

    too_long = maker._LENGTH.pack(maker.MAX_MESSAGE + 1) + b"x"
    with pytest.raises(EOFError, match="bytes"):
        maker._receive(io.BytesIO(too_long))
    with pytest.raises(EOFError, match="inside a message"):
        maker._receive(io.BytesIO(maker._LENGTH.pack(10) + b"short"))
    with pytest.raises(EOFError):
        maker._receive(io.BytesIO(b""))
    out = io.BytesIO()
    maker._send(out, ("made", None))
    assert maker._receive(io.BytesIO(out.getvalue())) == ("made", None)


def test_an_idle_child_is_stopped_and_started_again(
    project: tuple[RecordFactory, Record, list[Record], Path],
) -> None:
    """No request for ``idle_seconds``: the child is stopped (an idle node keeps one
    process); the next request starts another."""
    _, p, _, path = project
    now = [0.0]
    apart = AnswerMaker(path, idle_seconds=60.0, clock=lambda: now[0])
    try:
        assert apart.make(p.id, (0, 0), LIMIT) is not None
        child = apart.pid
        assert child is not None
        now[0] += 59.0
        apart.idle()
        assert apart.pid == child
        now[0] += 1.0
        apart.idle()
        assert apart.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(child, 0)  # stopped and reaped
        assert apart.make(p.id, (0, 0), LIMIT) is not None
        assert apart.started == 2
    finally:
        apart.close()


def test_the_child_outlives_a_signal_to_the_group(
    project: tuple[RecordFactory, Record, list[Record], Path],
) -> None:
    """Ctrl-C or a service manager's SIGTERM reaches the node's whole process group: the
    child stays (the node closes its pipe as it stops) and keeps answering meanwhile."""
    _, p, _, path = project
    apart = AnswerMaker(path)
    try:
        assert apart.make(p.id, (0, 0), LIMIT) is not None
        child = apart._child
        assert child is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            child.send_signal(sig)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)
        assert apart.make(p.id, (0, 0), LIMIT) is not None
        assert apart.started == 1
    finally:
        apart.close()
    assert child.returncode == 0


def test_the_child_leaves_when_the_node_goes(
    project: tuple[RecordFactory, Record, list[Record], Path],
) -> None:
    """The node's end closes the child's input: the child leaves by itself (no process is
    left behind by a node that was killed)."""
    _, p, _, path = project
    apart = AnswerMaker(path)
    try:
        assert apart.make(p.id, (0, 0), LIMIT) is not None
        child = apart._child
        assert child is not None
        assert child.stdin is not None
        child.stdin.close()  # as when the node's process ends
        assert child.wait(timeout=10) == 0
    finally:
        apart.close()
