"""The API's gate: the small process that holds a node's API address.

A node whose API has a front (``node.api_front``, the default) does not accept at its API
address itself: this process does, for the node's whole life, and passes each connection to
one of two servers on loopback, byte for byte both ways:

* the node's own API (its app on a loopback port of its own), always, but for
* connections whose first request is a ``GET`` or ``HEAD`` of a project's ``ledger`` or
  ``shares`` (no body, no upgrade) while the node is busy: those go to the API's front
  process (:mod:`node.api.front`), which the node starts only then and which answers them
  from the store while the node's own interpreter is taken by a catch-up.

The node tells the gate where views go with one line on its standard input: ``views HOST
PORT`` (the front is ready) or ``node`` (the front is leaving); the gate applies it to the
connections it routes from then on and answers ``ok`` on its standard output, so that the
node knows no new connection goes to a front it is about to stop. A connection stays with the
server it was given to until either side ends it: the gate never cuts one when the route
changes, and never closes a kept-alive connection between two requests. (The node's answers
to the two views say ``Connection: close`` while the front serves, and the front's always do,
so a client asking for them often moves to the front and back by itself.)

Why a process of its own: the address must never change hands while clients keep
connections alive (a server that gives it up closes the connections idle between two
requests, and a client that sends a request at that moment loses it), and the node must not
pay for a second interpreter of its full size while idle. This module imports nothing but the
standard library (about 11 MB resident, no CPU while nothing comes); it reads at most
``MAX_HEAD`` bytes of a connection's first request to route it and holds at most one
``RECEIVE`` of data in each direction of a connection (it stops reading a side while the
other has not taken what was read). A connection whose first request does not come within
``HEAD_SECONDS`` goes to the node as it is (which answers or times it out); one that sent
nothing is closed, as the node's server closes idle ones. At most ``MAX_CONNECTIONS`` are
passed at once; more wait in the listening socket's backlog.

The node starts it with the node's loopback address, the log's form and its listening
socket's descriptor as arguments; it says ``ready`` once it accepts. It stops when its
standard input ends (the node closes the pipe as it stops; a node that is gone closed it
already), and ignores SIGINT and SIGTERM, which reach the whole process group.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import selectors
import signal
import socket
import sys
import time

__all__ = [
    "HEAD_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_HEAD",
    "RECEIVE",
    "UNAVAILABLE",
    "Gate",
    "is_view_path",
    "main",
]

# What this module needs while the node is calm is imported with it, and nothing more:
# ``typing`` (for ``Final``), ``re`` and ``urllib.parse`` (for the views' paths, needed only
# while views are routed to a front) would be 2 MB of the process's 12.

#: The paths the front answers (Starlette's ``{pid}`` is one path segment).
VIEW_PATH = r"/api/v1/projects/([^/]+)/(ledger|shares)"
#: The longest first request head read to route a connection.
MAX_HEAD = 16 * 1024
#: Bytes read from a socket at a time, and held for a side at most.
RECEIVE = 64 * 1024
#: Connections passed at once; more wait in the backlog.
MAX_CONNECTIONS = 1000
#: Seconds a connection's first request head may take (the node's keep-alive timeout).
HEAD_SECONDS = 5.0
#: Connections accepted at one wake-up, so that a flood of new ones does not starve the rest.
ACCEPT_BATCH = 64
#: The longest control line.
MAX_LINE = 1 << 16

#: The answer to a connection the node does not take (the front gives it too).
NOT_ANSWERING = b'{"error":"the node is not answering (it may be stopping)"}'
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(NOT_ANSWERING), NOT_ANSWERING)
)


#: Whether the process's log lines are JSON (``--log-json``); set by :func:`main`.
_log_json = False


def _warn(message: str, *args: object) -> None:
    """Log a warning as the node's other processes do. ``logging`` (nearly 3 MB with what it
    imports) is loaded only for the first one: most gates never write a line."""
    import logging

    root = logging.getLogger()
    if not root.handlers:
        from node.logformat import log_handler

        root.addHandler(log_handler(_log_json))
        root.setLevel(logging.WARNING)
    logging.getLogger("node.api.gate").warning(message, *args)


def is_view_path(raw_path: bytes) -> tuple[str, str, str] | None:
    """``(view, pid, path)`` when ``raw_path`` (a request target without its query) is a
    project's ``ledger`` or ``shares``, percent-decoded as the node's router decodes it."""
    import re
    from urllib.parse import unquote

    try:
        path = unquote(raw_path.decode("ascii"))
    except UnicodeDecodeError:
        return None
    found = re.fullmatch(VIEW_PATH, path)  # compiled once, in re's cache
    if found is None:
        return None
    return found.group(2), found.group(1), path


def _is_view_request(head: bytes) -> bool:
    """Whether ``head`` (a whole request head, its blank line included) asks for a view the
    front answers: ``GET`` or ``HEAD`` of ``ledger`` or ``shares``, with no body and no
    upgrade. Anything unusual is the node's to judge."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD") or parts[2] != b"HTTP/1.1":
        return False
    if is_view_path(parts[1].partition(b"?")[0]) is None:
        return False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            if line:
                return False  # not a header line: the node says what it thinks of it
            continue
        name = name.strip().lower()
        if name in (b"transfer-encoding", b"upgrade"):
            return False
        if name == b"content-length" and value.strip() != b"0":
            return False
    return True


# The states of a connection.
_HEAD, _CONNECTING, _PUMPING, _REFUSING = range(4)


class _Connection:
    """One client connection, and the server it was passed to."""

    __slots__ = (
        "client",
        "client_done",
        "head",
        "masks",
        "state",
        "target",
        "to_client",
        "to_upstream",
        "upstream",
        "upstream_done",
    )

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.state = _HEAD
        self.head = bytearray()
        self.to_client = bytearray()
        self.to_upstream = bytearray()
        #: The client sent its end (its half of the connection is closed).
        self.client_done = False
        #: The server ended its side: once the client has it all, the connection closes.
        self.upstream_done = False
        #: Where it goes: ``"views"`` or ``"node"``.
        self.target = "node"
        #: What each socket is registered for now (0: not registered).
        self.masks = {client.fileno(): 0}


class Gate:
    """The gate's loop: ``listener`` (non-blocking) accepted from, connections passed to
    ``node`` or, while set, views to ``views``; ``control`` (a descriptor) carries the node's
    lines, ``answers`` (a descriptor) the gate's ``ok``."""

    def __init__(
        self,
        listener: socket.socket,
        node: tuple[str, int],
        *,
        control: int,
        answers: int,
    ) -> None:
        self.listener = listener
        self.node = node
        self.views: tuple[str, int] | None = None
        self.control = control
        self.answers = answers
        self._pending = b""
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}  # by the client's descriptor
        self._deadlines: list[tuple[float, int, _Connection]] = []
        self._order = itertools.count()
        self._accepting = False
        self._stopped = False

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """Pass connections until the control pipe ends."""
        self.listener.setblocking(False)
        self._selector.register(self.control, selectors.EVENT_READ, "control")
        self._accept_again()
        try:
            while not self._stopped:
                for key, events in self._selector.select(self._timeout()):
                    if key.data == "control":
                        self._read_control()
                    elif key.data == "listener":
                        self._accept()
                    else:
                        # The connection registered then: one closed earlier in this batch
                        # is skipped, even if a new one has its descriptor now.
                        self._step(key.data, key.fd, events)
                self._expire()
        finally:
            for connection in list(self._connections.values()):
                self._close(connection)
            self._selector.close()

    def _timeout(self) -> float | None:
        while self._deadlines and self._deadlines[0][2].state != _HEAD:
            heapq.heappop(self._deadlines)
        if not self._deadlines:
            return None
        return max(0.0, self._deadlines[0][0] - time.monotonic())

    def _expire(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, connection = heapq.heappop(self._deadlines)
            if connection.state != _HEAD or connection.client.fileno() < 0:
                continue
            if not connection.head:
                self._close(connection)  # idle from the start, as the node's server closes it
                continue
            try:
                self._route(connection)  # the node says what it thinks of a slow request
            except OSError:  # no socket to be had (out of descriptors)
                self._close(connection)
                continue
            self._watch(connection)

    # -- the node's lines --------------------------------------------------------------------

    def _read_control(self) -> None:
        try:
            data = os.read(self.control, 4096)
        except OSError:
            data = b""
        if not data:
            self._stopped = True
            return
        self._lines(data)

    def _lines(self, data: bytes) -> None:
        self._pending += data
        *lines, rest = self._pending.split(b"\n")
        self._pending = rest[-MAX_LINE:]
        for line in lines:
            words = line.split()
            if words[:1] == [b"views"] and len(words) == 3 and words[2].isdigit():
                self.views = (words[1].decode("ascii", "replace"), int(words[2]))
            elif words == [b"node"]:
                self.views = None
            else:
                _warn("the API's gate ignored a line it does not know: %r", line[:80])
                continue
            try:
                os.write(self.answers, b"ok\n")
            except OSError:
                self._stopped = True

    # -- connections -------------------------------------------------------------------------

    def _accept_again(self) -> None:
        if not self._accepting and len(self._connections) < MAX_CONNECTIONS:
            self._selector.register(self.listener, selectors.EVENT_READ, "listener")
            self._accepting = True

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self._connections) >= MAX_CONNECTIONS:
                self._selector.unregister(self.listener)
                self._accepting = False
                return
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, a connection reset while queued
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _warn("the API's gate cannot accept a connection now: %s", exc)
                return
            client.setblocking(False)
            connection = _Connection(client)
            self._connections[client.fileno()] = connection
            deadline = time.monotonic() + HEAD_SECONDS
            heapq.heappush(self._deadlines, (deadline, next(self._order), connection))
            self._watch(connection)

    def _step(self, connection: _Connection, fd: int, events: int) -> None:
        if connection.client.fileno() < 0:
            return
        try:
            if connection.state == _CONNECTING:
                self._connected(connection)
            elif fd == connection.client.fileno():
                if events & selectors.EVENT_WRITE:
                    self._flush(connection, to_client=True)
                if events & selectors.EVENT_READ and connection.client.fileno() >= 0:
                    self._from_client(connection)
            elif connection.upstream is not None:
                if events & selectors.EVENT_WRITE:
                    self._flush(connection, to_client=False)
                if events & selectors.EVENT_READ and connection.client.fileno() >= 0:
                    self._from_upstream(connection)
        except (BlockingIOError, InterruptedError):
            pass  # not ready after all: the selector says when it is
        except OSError:  # a reset, a broken pipe: the connection is over
            self._close(connection)
            return
        if connection.client.fileno() >= 0:
            self._watch(connection)

    def _from_client(self, connection: _Connection) -> None:
        data = connection.client.recv(RECEIVE)
        if connection.state == _HEAD:
            if not data:
                if connection.head:
                    connection.client_done = True
                    self._route(connection)
                else:
                    self._close(connection)
                return
            connection.head += data
            if b"\r\n\r\n" in connection.head or len(connection.head) >= MAX_HEAD:
                self._route(connection)
            return
        if not data:
            connection.client_done = True
            if not connection.to_upstream and connection.upstream is not None:
                connection.upstream.shutdown(socket.SHUT_WR)
            return
        connection.to_upstream += data

    def _from_upstream(self, connection: _Connection) -> None:
        assert connection.upstream is not None
        data = connection.upstream.recv(RECEIVE)
        if not data:
            connection.upstream_done = True
            if not connection.to_client:
                self._close(connection)
            return
        connection.to_client += data

    def _flush(self, connection: _Connection, *, to_client: bool) -> None:
        if to_client:
            sent = connection.client.send(connection.to_client)
            del connection.to_client[:sent]
            if not connection.to_client and connection.upstream_done:
                self._close(connection)
            return
        assert connection.upstream is not None
        sent = connection.upstream.send(connection.to_upstream)
        del connection.to_upstream[:sent]
        if not connection.to_upstream and connection.client_done:
            connection.upstream.shutdown(socket.SHUT_WR)

    def _route(self, connection: _Connection) -> None:
        """Pass the connection on: views to the front while one serves, the rest to the node."""
        end = connection.head.find(b"\r\n\r\n")
        view = (
            self.views is not None
            and end >= 0
            and _is_view_request(bytes(connection.head[: end + 4]))
        )
        connection.target = "views" if view else "node"
        connection.to_upstream = connection.head
        connection.head = bytearray()
        self._connect(connection)

    def _connect(self, connection: _Connection) -> None:
        address = self.views if connection.target == "views" else self.node
        assert address is not None
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.upstream = upstream
        connection.masks[upstream.fileno()] = 0
        connection.state = _CONNECTING
        code = upstream.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._unreachable(connection)

    def _connected(self, connection: _Connection) -> None:
        assert connection.upstream is not None
        if connection.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            self._unreachable(connection)
            return
        connection.state = _PUMPING
        if connection.client_done and not connection.to_upstream:
            connection.upstream.shutdown(socket.SHUT_WR)

    def _unreachable(self, connection: _Connection) -> None:
        """The server chosen does not answer: a front that left meanwhile gives way to the
        node; a node that does not answer is said so, and the connection closed."""
        self._drop_upstream(connection)
        if connection.target == "views":
            connection.target = "node"
            self._connect(connection)
            return
        _warn("the API's gate could not reach the node at %s:%d", *self.node)
        connection.state = _REFUSING
        connection.to_client = bytearray(UNAVAILABLE)
        connection.upstream_done = True

    def _drop_upstream(self, connection: _Connection) -> None:
        upstream = connection.upstream
        if upstream is None:
            return
        fd = upstream.fileno()
        if connection.masks.pop(fd, 0):
            self._selector.unregister(upstream)
        upstream.close()
        connection.upstream = None

    def _watch(self, connection: _Connection) -> None:
        """Register each socket of ``connection`` for what it waits for now."""
        client_mask = 0
        upstream_mask = 0
        if connection.to_client:
            client_mask |= selectors.EVENT_WRITE
        if connection.state == _HEAD:
            client_mask |= selectors.EVENT_READ
        elif connection.state == _CONNECTING:
            upstream_mask |= selectors.EVENT_WRITE
        elif connection.state == _PUMPING:
            if not connection.client_done and not connection.to_upstream:
                client_mask |= selectors.EVENT_READ
            if connection.to_upstream:
                upstream_mask |= selectors.EVENT_WRITE
            if not connection.upstream_done and not connection.to_client:
                upstream_mask |= selectors.EVENT_READ
        self._register(connection, connection.client, client_mask)
        if connection.upstream is not None:
            self._register(connection, connection.upstream, upstream_mask)

    def _register(self, connection: _Connection, sock: socket.socket, mask: int) -> None:
        fd = sock.fileno()
        before = connection.masks.get(fd, 0)
        if mask == before:
            return
        if not before:
            self._selector.register(sock, mask, connection)
        elif not mask:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, mask, connection)
        connection.masks[fd] = mask

    def _close(self, connection: _Connection) -> None:
        client = connection.client
        fd = client.fileno()
        if fd < 0:
            return
        self._drop_upstream(connection)
        if connection.masks.pop(fd, 0):
            self._selector.unregister(client)
        self._connections.pop(fd, None)
        client.close()
        self._accept_again()


def main() -> None:
    """The gate process: its arguments are the node's loopback host and port, the log's form
    (``json`` or ``text``) and the listening socket's descriptor."""
    global _log_json
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.dup(sys.stdout.fileno())
    sys.stdout = sys.stderr  # nothing else may write to the node's pipe
    host, port, form, descriptor = sys.argv[-4:]
    _log_json = form == "json"
    listener = socket.socket(fileno=int(descriptor))
    gate = Gate(listener, (host, int(port)), control=0, answers=answers)
    os.write(answers, b"ready\n")
    gate.run()
