"""The API's gate (node.api.gate): each connection passed whole to the node or, while told, a
view's connection to the front.

The gate's loop runs in a thread here, with two plain loopback servers standing for the node
and the front: each answers every request it reads with its own name and what it received, so
a test sees where each connection went and that its bytes arrived unchanged, both ways.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from node.api import gate as gate_module
from node.api.gate import MAX_HEAD, Gate, is_view_path

LEDGER = b"GET /api/v1/projects/abcd/ledger?limit=3 HTTP/1.1\r\nHost: x\r\n\r\n"
STATUS = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Upstream:
    """A loopback server that answers ``NAME LENGTH\\n`` and echoes, per connection, all it
    reads until the client ends its side; it counts its connections."""

    name: bytes
    sock: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    accepted: int = 0

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            received = bytearray()
            while data := conn.recv(65536):
                received += data
            conn.sendall(self.name + b" %d\n" % len(received) + received)


@dataclass
class Running:
    gate: Gate
    node: Upstream
    views: Upstream
    address: tuple[str, int]
    control: int

    def tell(self, line: bytes, answers: int) -> None:
        os.write(self.control, line)
        assert os.read(answers, 3) == b"ok\n"


def _closed_port() -> tuple[str, int]:
    """A loopback address nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as gone:
        return "127.0.0.1", gone.getsockname()[1]


@contextmanager
def running_gate(*, node_answers: bool = True) -> Iterator[tuple[Running, int]]:
    node, views = Upstream(b"node"), Upstream(b"views")
    for upstream in (node, views):
        threading.Thread(target=upstream.serve, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    control_read, control_write = os.pipe()
    answers_read, answers_write = os.pipe()
    to = node.address if node_answers else _closed_port()
    gate = Gate(listener, to, control=control_read, answers=answers_write)
    thread = threading.Thread(target=gate.run, daemon=True)
    thread.start()
    try:
        yield Running(gate, node, views, listener.getsockname()[:2], control_write), answers_read
    finally:
        os.close(control_write)  # the pipe's end stops the gate
        thread.join(10)
        assert not thread.is_alive(), "the gate stops when its pipe ends"
        for each in (listener, node.sock, views.sock):
            each.close()
        for fd in (control_read, answers_read, answers_write):
            os.close(fd)


def ask(address: tuple[str, int], data: bytes, *, end: bool = True) -> bytes:
    """Send ``data`` on a new connection, end the sending side, read everything back."""
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(data)
        if end:
            sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while piece := sock.recv(65536):
            received += piece
        return bytes(received)


def test_connections_go_to_the_node_until_views_are_routed_to_the_front() -> None:
    with running_gate() as (run, answers):
        assert ask(run.address, LEDGER) == b"node %d\n" % len(LEDGER) + LEDGER
        run.tell(b"views %s %d\n" % (run.views.address[0].encode(), run.views.address[1]), answers)
        assert ask(run.address, LEDGER).startswith(b"views ")
        head = b"HEAD /api/v1/projects/ab%2Fcd/shares HTTP/1.1\r\nhost: x\r\n\r\n"
        assert ask(run.address, head).startswith(b"node ")  # one segment only, decoded
        assert ask(run.address, head.replace(b"%2F", b"")).startswith(b"views ")
        # What is not a plain view goes to the node: another path, a method, a body, an
        # upgrade, HTTP/1.0, a head cut short.
        for other in (
            STATUS,
            LEDGER.replace(b"GET", b"POST"),
            LEDGER.replace(b"\r\n\r\n", b"\r\nContent-Length: 2\r\n\r\nab"),
            LEDGER.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            LEDGER.replace(b"\r\n\r\n", b"\r\nUpgrade: websocket\r\n\r\n"),
            LEDGER.replace(b"HTTP/1.1", b"HTTP/1.0"),
            LEDGER[:-2],
        ):
            assert ask(run.address, other) == b"node %d\n" % len(other) + other, other
        assert ask(run.address, LEDGER.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"))[
            :6
        ] == (b"views ")
        # The rest of a connection goes where its first request went.
        both = LEDGER + STATUS
        assert ask(run.address, both) == b"views %d\n" % len(both) + both
        run.tell(b"node\n", answers)
        assert ask(run.address, LEDGER).startswith(b"node ")
        assert run.views.accepted == 4


def test_bytes_pass_unchanged_both_ways_and_a_half_close_is_kept() -> None:
    """Megabytes up and back, in both routes; the client ends its side first and still gets
    the whole answer."""
    body = os.urandom(3 << 20)
    request = b"POST /api/v1/bundles HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    with running_gate() as (run, answers):
        assert ask(run.address, request) == b"node %d\n" % len(request) + request
        run.tell(b"views %s %d\n" % (run.views.address[0].encode(), run.views.address[1]), answers)
        view = LEDGER + body
        assert ask(run.address, view) == b"views %d\n" % len(view) + view


def test_a_front_that_is_gone_gives_way_to_the_node_and_a_silent_node_is_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_gate() as (run, answers):
        run.tell(b"views %s %d\n" % (_closed_port()[0].encode(), _closed_port()[1]), answers)
        assert ask(run.address, LEDGER).startswith(b"node ")
    with running_gate(node_answers=False) as (run, _):
        answer = ask(run.address, STATUS)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"connection: close" in answer
        assert answer.endswith(b'{"error":"the node is not answering (it may be stopping)"}')
    assert "the API's gate could not reach the node" in caplog.text


def test_slow_and_silent_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head that does not end in time goes to the node as it is; a connection that sends
    nothing is closed; an endless head goes to the node at ``MAX_HEAD``; other connections
    are served meanwhile."""
    monkeypatch.setattr(gate_module, "HEAD_SECONDS", 0.5)
    with running_gate() as (run, _):
        with (
            socket.create_connection(run.address, timeout=20) as silent,
            socket.create_connection(run.address, timeout=20) as slow,
        ):
            slow.sendall(b"GET /api/v1/sta")
            started = time.monotonic()
            assert ask(run.address, STATUS).startswith(b"node ")
            assert silent.recv(10) == b""  # closed by the gate
            assert time.monotonic() - started < 10
            slow.sendall(b"tus HTTP/1.1\r\n\r\n")
            slow.shutdown(socket.SHUT_WR)
            answer = slow.recv(65536)
            assert answer.startswith(b"node ")
        endless = b"GET /api/v1/projects/x/ledger HTTP/1.1\r\nX: " + b"y" * (2 * MAX_HEAD)
        assert ask(run.address, endless) == b"node %d\n" % len(endless) + endless


def test_unknown_lines_are_ignored_and_the_pipe_end_stops_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_gate() as (run, answers):
        os.write(run.control, b"views nowhere\nsomething\n")
        run.tell(b"node\n", answers)
        assert ask(run.address, LEDGER).startswith(b"node ")
    assert "ignored a line it does not know" in caplog.text


def test_view_paths() -> None:
    assert is_view_path(b"/api/v1/projects/ab/ledger") == (
        "ledger",
        "ab",
        "/api/v1/projects/ab/ledger",
    )
    assert is_view_path(b"/api/v1/projects/%61b/shares") == (
        "shares",
        "ab",
        "/api/v1/projects/ab/shares",
    )
    for other in (
        b"/api/v1/projects/ab/ledger/",
        b"/api/v1/projects//ledger",
        b"/api/v1/projects/a/b/shares",
        b"/api/v1/projects/ab/claims",
        b"/api/v1/projects/\xff/ledger",
    ):
        assert is_view_path(other) is None, other


def test_many_connections_at_once_each_get_their_own_bytes_back() -> None:
    """Hundreds of connections, short and long, views and not, while the route changes back
    and forth: each answer is its own request's bytes, from the server its first request
    chose when it was routed (a connection's descriptor, reused as others close, never
    receives another's events)."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    seeded = random.Random(7)
    requests = []
    for i in range(400):
        first = LEDGER if seeded.random() < 0.5 else STATUS
        requests.append(first + b"%d:" % i + os.urandom(seeded.choice((0, 10, 70_000, 300_000))))
    with running_gate() as (run, answers):
        views_line = b"views %s %d\n" % (run.views.address[0].encode(), run.views.address[1])

        def one(request: bytes) -> tuple[bytes, bytes]:
            return request, ask(run.address, request)

        with ThreadPoolExecutor(32) as pool:
            done = pool.map(one, requests)
            for i, (request, answer) in enumerate(done):
                name, _, echoed = answer.partition(b"\n")
                assert echoed == request, i
                assert name in (b"views %d" % len(request), b"node %d" % len(request))
                if request.startswith(STATUS):
                    assert name.startswith(b"node"), i
                if i % 50 == 0:
                    run.tell(views_line if i % 100 == 0 else b"node\n", answers)
        assert run.views.accepted > 0
