"""The API's front process (node.api.front): ``ledger`` and ``shares`` answered beside the node.

A running node serves its API address through a child process that answers these two views
from a store connection of its own and passes every other request, byte for byte, to the
node's own API. These tests run a real node (with its real front process) and check what a
client sees: the same answers as the node's app gives, writes and everything else passed
through on the same connections, pipelined requests answered in order, a purge forgotten,
and the node serving the address itself once the front is gone.
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
from node.home import Home
from node.runtime import Node, NodeOptions, open_node
from node.store.sqlite import Store
from protocol.attest import email_handle
from protocol.record import Record
from protocol.testing import RecordFactory

HANDLES = [email_handle(f"h{i}@x.org".encode()) for i in range(12)]


@asynccontextmanager
async def running(tmp_path: Path, records: list[Record], **options: Any) -> AsyncIterator[Node]:
    home = Home(tmp_path / "home")
    home.init()
    with Store.open(home.store_path) as store:
        store.add(records)
    chosen = NodeOptions(listen=["/ip4/127.0.0.1/tcp/0"], api="127.0.0.1:0", mdns=False)
    for name, value in options.items():
        setattr(chosen, name, value)
    async with open_node(home, chosen) as node:
        yield node


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
                    seen = {k: v for k, v in got.headers.items() if k not in ("date", "server")}
                    assert seen == dict(want.headers.items()), (method, path)
                    # Answered by the front: the node's server (Hypercorn) names itself.
                    assert "server" not in got.headers
            shares = json.loads((await client.get(f"{base}/shares")).content)
            assert sum(line["contributions"] for line in shares) == len(records) - 1


async def test_other_requests_pass_through_on_the_same_connection(tmp_path: Path) -> None:
    """On one keep-alive connection: a view, a write (a record posted with the token), the
    view again showing the write, then the status: each answered in order. Pipelined
    requests sent in one piece are answered in order too; a write without the token is the
    node's 401, as before."""
    f = RecordFactory()
    p, records = _project(f)
    later = f.contribution("dave", p, minutes=5, title="late work")
    async with running(tmp_path, records) as node:
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
        # The first answers came from the front, the write's and the status's from the node.
        assert "server" not in answers[0][1]
        assert "server" in answers[1][1]

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


async def test_the_node_serves_the_api_once_the_front_is_gone(tmp_path: Path) -> None:
    """A front that dies is logged and the node serves the address itself: the views and
    everything else keep answering. A node that stops takes its front with it."""
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
    async with running(tmp_path, []) as node:
        front = _front_pid(node)
    with pytest.raises(ProcessLookupError):
        os.kill(front, 0)


async def test_without_the_front_the_node_serves_its_address(tmp_path: Path) -> None:
    """``api_front=False``: no child process, the node's server answers everything."""
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records, api_front=False) as node:
        assert node.front is None
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
                done = trio.CancelScope()

                async def run() -> None:
                    with done:
                        await _control(views, done, b"forget\nfor", fd=read)  # type: ignore[arg-type]
                    assert done.cancel_called

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

    def failing(module: str, *args: str) -> list[str]:
        return [sys.executable, "-c", "import sys; sys.exit(3)"]

    monkeypatch.setattr(front, "helper_command", failing)
    f = RecordFactory()
    p, records = _project(f)
    async with running(tmp_path, records) as node:
        assert node.front is None
        async with httpx.AsyncClient(base_url=node.api_url) as client:
            answer = await client.get(f"/api/v1/projects/{p.id.hex()}/ledger")
        assert answer.status_code == 200
        assert answer.headers["server"] == "hypercorn-h11"
    assert "the API's front process did not start (exited with 3)" in caplog.text
