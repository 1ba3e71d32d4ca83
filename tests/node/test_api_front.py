"""The API's gate and front processes (node.api.gate, node.api.front), as a client sees them.

A running node holds its API address through a small gate process, which passes every
connection to the node's own API; while the node is busy, connections whose first request asks
for a project's ``ledger`` or ``shares`` go to a front process instead, which answers these two
views from a store connection of its own, one request a connection. These tests run a real
node (with its real gate and front) and check what a client sees: the same answers as the
node's app gives, everything else passed to the node on the same connections, a purge
forgotten, the front coming when the node is busy and leaving when it is calm without a
request lost, and the node serving the address itself once the gate is gone.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.api.app import build_app
from node.api.front import FRONT_RECORDS, Demand
from node.home import Home
from node.runtime import Node, NodeOptions, open_node
from node.store.sqlite import Store
from protocol.attest import email_handle
from protocol.record import Record
from protocol.testing import RecordFactory

HANDLES = [email_handle(f"h{i}@x.org".encode()) for i in range(12)]


@asynccontextmanager
async def running(
    tmp_path: Path, records: list[Record], *, busy: bool = True, **options: Any
) -> AsyncIterator[Node]:
    """A node of a home holding ``records``; ``busy``: told of a catch-up's worth of records
    coming, so that its front serves the address (when it has one)."""
    home = Home(tmp_path / "home")
    home.init()
    with Store.open(home.store_path) as store:
        store.add(records)
    chosen = NodeOptions(listen=["/ip4/127.0.0.1/tcp/0"], api="127.0.0.1:0", mdns=False)
    for name, value in options.items():
        setattr(chosen, name, value)
    async with open_node(home, chosen) as node:
        if busy and node.demand is not None:
            await _busy(node)
        yield node


async def _busy(node: Node) -> None:
    """Tell ``node`` that a catch-up's worth of records is coming; wait for its front to take
    the address (or to fail to start)."""
    assert node.demand is not None
    with trio.fail_after(30):
        while node.front is None:
            node.demand.note(FRONT_RECORDS)  # busy until the front serves, however slow
            await trio.sleep(0.02)


def _address(node: Node) -> tuple[str, int]:
    assert node.api_url is not None
    host, _, port = node.api_url.removeprefix("http://").rpartition(":")
    return host, int(port)


def _exchange(node: Node, data: bytes, answers: int) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send ``data`` on one connection and read ``answers`` HTTP answers back (each with a
    Content-Length): their status lines, headers and bodies, in order."""
    out = []
    with socket.create_connection(_address(node), timeout=30) as sock:
        sock.sendall(data)
        buffer = b""
        while len(out) < answers:
            while b"\r\n\r\n" not in buffer:
                piece = sock.recv(65536)
                assert piece, f"the connection closed after {len(out)} answers"
                buffer += piece
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            status, *lines = head.split(b"\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers["content-length"])
            while len(buffer) < length:
                piece = sock.recv(65536)
                assert piece
                buffer += piece
            out.append((status, headers, buffer[:length]))
            buffer = buffer[length:]
    return out


def _project(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", maintainers=("bob",))
    attested = [f.attested("alice", p, (HANDLES[i % 12],), minutes=i + 1) for i in range(40)]
    own = [f.contribution("carol", p, minutes=30, title=f"work {i}") for i in range(5)]
    return p, [p, *attested, *own]


def _front_pid(node: Node) -> int:
    assert node.front is not None
    return node.front.pid


async def test_the_front_answers_the_views_as_the_node_does(tmp_path: Path) -> None:
    """Every form of ``ledger`` and ``shares`` (pages, cursors, filters, HEAD, each error)
    answered at the API address is the node's own app's answer: status, body and headers
    (but the date and the server's name)."""
    f = RecordFactory()
    p, records = _project(f)
    text = p.id.hex()
    base = f"/api/v1/projects/{text}"
    asked = [
        f"{base}/ledger",
        f"{base}/ledger?limit=7",
        f"{base}/ledger?limit=3&type=code&author={HANDLES[1]}",
        f"{base}/ledger?author={f.key('carol').peer_id}",
        f"{base}/shares",
        f"/api/v1/projects/{text[:12]}/shares",
        f"{base}/ledger?limit=0",
        f"{base}/ledger?limit=x",
        f"{base}/ledger?type=nonsense",
        f"{base}/ledger?cursor=00ff",
        f"{base}/ledger?author=email:nobody",
        f"/api/v1/projects/{'ab' * 32}/ledger",
        "/api/v1/projects/zz/shares",
    ]
    async with running(tmp_path, records) as node:
        assert node.front is not None
        app = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(node)))
        async with app, httpx.AsyncClient(base_url=node.api_url) as client:
            # The next page, as the Link header of the first one says.
            first = await client.get(f"{base}/ledger?limit=7")
            link = first.headers["link"].partition(">")[0].removeprefix("<")
            assert first.headers["x-next-cursor"] in link
            for path in [*asked, link]:
                for method in ("GET", "HEAD"):
                    got = await client.request(method, path)
                    want = await app.request(method, f"http://testserver{path}")
                    assert got.status_code == want.status_code, (method, path, got.text)
                    assert got.content == (want.content if method == "GET" else b"")
                    mine = ("date", "server", "connection")
                    seen = {k: v for k, v in got.headers.items() if k not in mine}
                    theirs = {k: v for k, v in want.headers.items() if k != "connection"}
                    assert seen == theirs, (method, path)
                    # Answered by the front (the node's server, Hypercorn, names itself),
                    # one request a connection.
                    assert "server" not in got.headers
                    assert got.headers["connection"] == "close"
            shares = json.loads((await client.get(f"{base}/shares")).content)
            assert sum(line["contributions"] for line in shares) == len(records) - 1


async def test_a_connection_stays_with_the_server_of_its_first_request(tmp_path: Path) -> None:
    """Calm, every request goes to the node: on one kept-alive connection a view, a write
    (a record posted with the token), the view again showing the write, then the status, each
    answered in order. Busy, a connection whose first request is a view is answered by the
    front, which closes it after that answer; one that begins with another request stays with
    the node, whose view answers then say ``Connection: close``. A write without the token is
    the node's 401, as ever."""
    f = RecordFactory()
    p, records = _project(f)
    later = f.contribution("dave", p, minutes=5, title="late work")
    async with running(tmp_path, records, busy=False) as node:
        token = node.home.api_token()
        host = f"{_address(node)[0]}:{_address(node)[1]}"
        ledger = f"GET /api/v1/projects/{p.id.hex()}/ledger HTTP/1.1\r\nHost: {host}\r\n\r\n"
        post = (
            f"POST /api/v1/records HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(later.raw)}\r\n\r\n"
        ).encode() + later.raw
        status = f"GET /api/v1/status HTTP/1.1\r\nHost: {host}\r\n\r\n"

        def converse() -> list[tuple[bytes, dict[str, str], bytes]]:
            return _exchange(node, ledger.encode() + post + (ledger + status).encode(), 4)

        answers = await trio.to_thread.run_sync(converse)
        ok, created = b"HTTP/1.1 200 ", b"HTTP/1.1 201 "
        assert [a[0] for a in answers] == [ok, created, ok, ok]
        before, after = json.loads(answers[0][2]), json.loads(answers[2][2])
        assert json.loads(answers[1][2]) == {"id": later.id.hex()}
        assert int(answers[2][1]["x-total-count"]) == int(answers[0][1]["x-total-count"]) + 1
        assert after[0]["id"] == later.id.hex()
        assert later.id.hex() not in {e["id"] for e in before}
        assert json.loads(answers[3][2])["records"] == len(records) + 1
        assert {a[1]["server"] for a in answers} == {"hypercorn-h11"}
        assert "connection" not in answers[0][1]

        await _busy(node)
        # A view first: the front answers it and closes the connection (the status sent
        # behind it is not answered: a client sends it again on a new connection).
        front_answers = await trio.to_thread.run_sync(
            _exchange, node, (ledger + status).encode(), 1
        )
        assert front_answers[0][0] == ok
        assert "server" not in front_answers[0][1]
        assert front_answers[0][1]["connection"] == "close"
        assert int(front_answers[0][1]["x-total-count"]) == len(records)
        # Another request first: the node answers all of them, its view saying close.
        node_answers = await trio.to_thread.run_sync(_exchange, node, (status + ledger).encode(), 2)
        assert [a[1]["server"] for a in node_answers] == ["hypercorn-h11"] * 2
        assert node_answers[1][1]["connection"] == "close"
        assert node_answers[1][2] == front_answers[0][2]

        unauthorized = (
            f"POST /api/v1/records HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nx"
        ).encode()
        refused = await trio.to_thread.run_sync(_exchange, node, unauthorized, 1)
        assert refused[0][0] == b"HTTP/1.1 401 "


async def test_a_purge_is_forgotten_by_the_front(tmp_path: Path) -> None:
    """An operator's block that purges an author's records: the front's next answers no
    longer count them."""
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records) as node:
        token = node.home.api_token()
        carol = f.key("carol").peer_id
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            shares = (await client.get(f"/api/v1/projects/{p.id.hex()}/shares")).json()
            assert carol in {line["contributor"] for line in shares}
            blocked = await client.post(
                "/api/v1/admin/blocks",
                json={"kind": "author", "key": carol, "purge": True},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert blocked.status_code in (200, 201), blocked.text
            with trio.fail_after(20):
                while True:
                    shares = (await client.get(f"/api/v1/projects/{p.id.hex()}/shares")).json()
                    if carol not in {line["contributor"] for line in shares}:
                        break
                    await trio.sleep(0.1)
            page = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
            assert int(page.headers["x-total-count"]) == len(records) - 1 - 5


async def test_the_node_answers_the_views_once_the_front_is_gone(tmp_path: Path) -> None:
    """A front that dies is logged and the views go back to the node: they keep answering,
    as everything else does."""
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records) as node:
        front = _front_pid(node)
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            os.kill(front, signal.SIGKILL)
            with trio.fail_after(20):
                while node.front is not None:  # noqa: ASYNC110 - the node's task clears it
                    await trio.sleep(0.05)
            answer = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
            assert answer.status_code == 200
            assert answer.headers["server"] == "hypercorn-h11"  # the node's own server
            assert int(answer.headers["x-total-count"]) == len(records) - 1
            assert (await client.get("/api/v1/status")).status_code == 200


async def test_the_node_serves_its_address_once_the_gate_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gate that dies is logged and the node serves the address itself (its front, if
    any, stops). A node that stops takes its gate with it."""
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records) as node:
        assert node.gate is not None
        gate, front = node.gate.pid, _front_pid(node)
        os.kill(gate, signal.SIGKILL)
        with trio.fail_after(30):
            while node.gate is not None or node.front is not None:  # noqa: ASYNC110
                await trio.sleep(0.05)
            async with httpx.AsyncClient(base_url=node.api_url) as client:
                while True:  # the node's server takes the address once the gate is gone
                    try:
                        answer = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
                        break
                    except httpx.ConnectError:
                        await trio.sleep(0.05)
        assert answer.status_code == 200
        assert answer.headers["server"] == "hypercorn-h11"
        with pytest.raises(ProcessLookupError):
            os.kill(front, 0)
    assert "the API's gate process stopped" in caplog.text
    async with running(tmp_path, [], busy=False) as node:
        assert node.gate is not None
        gate = node.gate.pid
    with pytest.raises(ProcessLookupError):
        os.kill(gate, 0)


async def test_without_the_front_the_node_serves_its_address(tmp_path: Path) -> None:
    """``api_front=False``: no child process, the node's server answers everything."""
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records, api_front=False) as node:
        assert node.front is None
        assert node.gate is None
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            answer = await client.get(f"/api/v1/projects/{p.id.hex()}/shares")
        assert answer.status_code == 200
        assert answer.headers["server"] == "hypercorn-h11"


async def test_the_front_forgets_when_told_and_stops_when_the_pipe_closes() -> None:
    """The node's lines: each ``forget`` (split across reads or not) drops the answers held;
    any other line is ignored; the pipe's end stops the front."""
    from node.api.front import _control

    class Views:
        forgotten = 0

        def forget(self) -> None:
            self.forgotten += 1

    views = Views()
    read, write = os.pipe()
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def run() -> None:
                    await _control(views, done, b"forget\nfor", fd=read)  # type: ignore[arg-type]
                    assert done.is_set()

                nursery.start_soon(run)
                await trio.sleep(0.05)
                assert views.forgotten == 1
                os.write(write, b"get\nsomething else\n" + b"x" * 10_000 + b"\nforget\n")
                while views.forgotten < 3:  # noqa: ASYNC110 - the reader's count
                    await trio.sleep(0.01)
                os.close(write)
                write = -1
        assert views.forgotten == 3
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


async def test_a_front_that_does_not_start_leaves_the_node_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A front process that exits before saying it is ready: the start goes on, the node
    says why and serves the address itself."""
    import sys

    from node.api import front

    real = front.helper_command

    def failing(module: str, *args: str, site: bool = True) -> list[str]:
        if module != "node.api.front":
            return real(module, *args, site=site)
        return [sys.executable, "-c", "import sys; sys.exit(3)"]

    monkeypatch.setattr(front, "helper_command", failing)
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records, busy=False) as node:
        assert node.demand is not None
        node.demand.note(FRONT_RECORDS)
        with trio.fail_after(20):
            while "did not start" not in caplog.text:  # noqa: ASYNC110 - the node's task
                await trio.sleep(0.02)
        assert node.front is None
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            answer = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
        assert answer.status_code == 200
        assert answer.headers["server"] == "hypercorn-h11"
        assert "connection" not in answer.headers
    assert "the API's front process did not start (exited with 3)" in caplog.text


async def test_demand_follows_the_records_expected_and_received(autojump_clock: Any) -> None:
    """A fetch's need, or batches adding up within the window, make the node busy; it is
    calm again ``calm`` seconds after the last such note, and a want is cleared only then."""
    demand = Demand(records=100, window=10, calm=30)
    demand.note(99)
    assert not demand.wanted.is_set()
    await trio.sleep(11)  # the window passed: the 99 no longer count
    demand.note(60)
    assert not demand.wanted.is_set()
    await trio.sleep(5)
    demand.note(40)  # 100 within the window
    assert demand.wanted.is_set()
    started = trio.current_time()
    await trio.sleep(20)
    demand.clear()
    assert demand.wanted.is_set(), "still busy: not cleared"
    demand.note(500)  # one fetch of 500: busy for 30 s more from now
    await demand.calm()
    assert trio.current_time() - started == pytest.approx(50)
    demand.clear()
    assert not demand.wanted.is_set()
    demand.note(1000)
    assert demand.wanted.is_set()


async def test_the_ingestor_tells_of_fetches_and_big_batches(tmp_path: Path) -> None:
    """What a node counts as load: every fetch's need, and batches of ``HELPER_BATCH`` or more
    begun (an import, a catch-up's frames), not single records."""
    from node.clock import now_ms
    from node.metrics import Metrics
    from node.sync.ingest import HELPER_BATCH, Ingestor

    f = RecordFactory()
    p = f.project("alice")
    small = [f.contribution("alice", p, minutes=1, title=f"w{i}").raw for i in range(3)]
    big = [f.contribution("alice", p, minutes=1, title=f"b{i}").raw for i in range(HELPER_BATCH)]
    with Store.open(tmp_path / "s.db") as store:
        told: list[int] = []
        ingestor = Ingestor(store, now_ms=now_ms, metrics=Metrics())
        ingestor.loaded = told.append
        ingestor.expect(7)
        await ingestor.validate([p.raw, *small], source="api")
        await ingestor.validate(big, source="api")
        assert told == [7, HELPER_BATCH]


async def test_the_front_comes_when_busy_and_leaves_when_calm(tmp_path: Path) -> None:
    """A node told of a catch-up has its views answered by a front; once calm it answers them
    itself again and the front leaves. Clients asking all along get every answer, with no
    retry: from the front while the node is busy and from the node before and after, whether
    they open a connection a request or keep one alive (its view answers say close while
    the front serves, so the next goes to the front), and a kept connection that asks for the
    status between views stays with the node throughout."""
    f = RecordFactory()
    p, records = _project(f)
    path = f"/api/v1/projects/{p.id.hex()}/ledger"
    async with running(tmp_path, records, busy=False) as node:
        assert node.demand is not None
        node.demand.calm_seconds = 1.0
        servers: list[str] = []
        failures: list[str] = []
        stop = trio.Event()

        async def ask(kept: httpx.AsyncClient | None, status: bool = False) -> None:
            while not stop.is_set():
                try:
                    if kept is None:
                        async with httpx.AsyncClient(base_url=node.api_url, timeout=30) as once:
                            answer = await once.get(path)
                    else:
                        if status:
                            said = await kept.get("/api/v1/status")
                            if said.status_code != 200:
                                failures.append(f"status: {said.status_code}")
                        answer = await kept.get(path)
                except httpx.HTTPError as exc:
                    kind = "once" if kept is None else "kept"
                    failures.append(f"{kind} at {trio.current_time():.2f}: {exc!r}")
                    continue
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:80]}")
                servers.append(answer.headers.get("server", "front"))
                await trio.sleep(0.005)

        # Timeouts for a loaded machine: what is checked is that every request is answered.
        kept_client = httpx.AsyncClient(base_url=node.api_url, timeout=30)
        mixed_client = httpx.AsyncClient(base_url=node.api_url, timeout=30)
        async with kept_client as kept, mixed_client as mixed, trio.open_nursery() as n:
            n.start_soon(ask, None)
            n.start_soon(ask, kept)
            n.start_soon(ask, mixed, True)
            with trio.fail_after(60):
                while len(servers) < 5:  # noqa: ASYNC110 - the askers' count
                    await trio.sleep(0.02)
                await _busy(node)
                front = node.front
                assert front is not None
                seen = len(servers)
                while "front" not in servers[seen:]:  # noqa: ASYNC110 - the askers' count
                    await trio.sleep(0.02)
                while node.front is not None:  # noqa: ASYNC110 - calm after 1 s
                    await trio.sleep(0.02)
                seen = len(servers)
                while len(servers) < seen + 10:  # noqa: ASYNC110 - the askers' count
                    await trio.sleep(0.02)
                assert await front.wait() == 0  # it left of itself, once drained (not killed)
                seen = len(servers)
                while len(servers) < seen + 10:  # noqa: ASYNC110 - the askers' count
                    await trio.sleep(0.02)
            stop.set()
        assert failures == []
        assert servers[0] == "hypercorn-h11"
        assert "front" in servers
        assert set(servers[-10:]) == {"hypercorn-h11"}


async def test_the_node_takes_its_address_back_even_when_its_views_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected failure while the node readies its own views to answer again is logged;
    the views go back to the node anyway and the front leaves."""
    from node import runtime

    def broken(views: Any) -> None:
        raise RuntimeError("views broke")

    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records, busy=False) as node:
        assert node.demand is not None
        node.demand.calm_seconds = 0.5
        monkeypatch.setattr(runtime, "_prepare_views", broken)
        await _busy(node)
        front = node.front
        assert front is not None
        with trio.fail_after(20):
            assert await front.wait() == 0
        assert "could not prepare the node's views to answer again" in caplog.text
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            answer = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
        assert answer.status_code == 200
        assert answer.headers["server"] == "hypercorn-h11"
