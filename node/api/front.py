"""The API's front process: ``ledger`` and ``shares`` answered beside a busy node.

While a node catches up, its interpreter runs the sync's threads (validation, tallying, the
store's writer) and its event loop waits for the interpreter's lock at every turn: measured
over a catch-up of a million records, the loop stalled for more than 100 ms every second or
so, and a view call spans several turns (BENCHMARKS.md, "The API's front process"). No
amount of care inside that process removes the wait; another process does.

So a running node serves its API address through a child process, the **front**, which owns
the listening socket:

* ``GET`` (and ``HEAD``) of ``/api/v1/projects/{pid}/ledger`` and ``/shares`` it answers
  itself, from views of its own (:class:`~node.views.cache.ViewCache` over two connections of
  its own to the node's store, with a views' process of its own for a big project's answers,
  :mod:`node.views.maker`), built by the same code as the node's (:mod:`node.api.viewcalls`):
  the same status, headers and bytes. Its views are made again as the store changes (it
  watches the store's version every ``views_interval``), as the node's are.
* Every other request, and everything after it on the same connection, is passed through
  byte for byte to the node's own API, which listens on a loopback port of its own: writes,
  the dashboard, its event streams, errors of every kind, keep their behaviour and their
  limits. A connection is spliced from its first such request on (the request's bytes
  already read are sent first), so no request body is ever parsed or held here.

Reads see what writes did: a write is answered only after its commit, and the front's views
read the store after it (an answer is made of one state of the store, at least as new as the
last state the views' refresh saw; a big project's answers may be up to one background
rebuild old, as the node's are).

The node starts the front with the node's own code (``helper_command``, as the signature
helper) first thing as it starts, so that the front's imports overlap the node's start-up;
once its store is open it gives the front its settings as one JSON line on its standard
input, and before it reports its API address it waits for ``ready`` on its standard
output. Then the standard input carries ``forget`` (records were purged: drop every answer
held) and its end stops the front (the front ignores SIGINT and SIGTERM: the node closes the
pipe as it stops, and a node that is gone closed it already).
A front that does not start, or stops, is logged, and the node serves the address itself.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import h11
import trio

from node.api.viewcalls import JSON_TYPE, view_answer
from node.memory import freeze_heap
from node.store.sqlite import Store, StoreError
from node.sync.verifier import helper_command
from node.textout import terminal_safe
from node.views.cache import STALE_SECONDS, ViewCache
from node.views.follow import Follow
from node.views.maker import AnswerMaker

__all__ = ["MAX_CONNECTIONS", "Front", "spawn_front"]

log = logging.getLogger(__name__)

#: The paths the front answers itself (Starlette's ``{pid}`` is one path segment).
_VIEW_PATH: Final = re.compile(r"/api/v1/projects/([^/]+)/(ledger|shares)")
#: The longest request head read before a request is passed to the node (which then says
#: what it thinks of it).
MAX_HEAD: Final = 16 * 1024
#: Bytes read from a socket at a time.
RECEIVE: Final = 64 * 1024
#: Connections served at once; more are accepted and wait for a turn (the node's own server
#: sets no bound either).
MAX_CONNECTIONS: Final = 1000
#: Seconds a connection may stay idle between two requests (the node's API: 5 s).
KEEP_ALIVE: Final = 5.0
#: Seconds the node waits for the front to say it is ready.
START_SECONDS: Final = 30.0
#: Seconds the front waits, at start, for the first answers of the followed projects.
WARM_WAIT: Final = 3.0
#: The longest settings line.
MAX_SETTINGS: Final = 1 << 20


# --------------------------------------------------------------------------------------------
# The node's side


class Front:
    """The node's handle on its front process, from its start (:func:`spawn_front`)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._closed = False

    @property
    def pid(self) -> int:
        return self.process.pid

    async def started(self) -> bool:
        """Whether the front said it is ready (within ``START_SECONDS`` of its start); if not,
        it is logged and stopped."""
        assert self.process.stdout is not None
        said = b""
        with trio.move_on_after(START_SECONDS):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while b"\n" not in said and len(said) < 64:
                    piece = await self.process.stdout.receive_some(64)
                    if not piece:
                        break
                    said += piece
        if said.startswith(b"ready\n"):
            log.debug("the API's front process %d is ready", self.process.pid)
            return True
        with trio.move_on_after(1):  # its output ended: it is leaving, say how
            await self.process.wait()
        code = self.process.returncode
        log.warning(
            "the API's front process did not start (%s): the node serves the API itself",
            f"exited with {code}" if code is not None else "no answer",
        )
        await self.close()
        return False

    async def configure(
        self,
        upstream: tuple[str, int],
        store_path: Path,
        *,
        follow: Sequence[bytes] = (),
        views_interval: float = 2.0,
        budget: int = 60_000,
    ) -> None:
        """Give the front its settings: where the node's own app listens (``upstream``, which
        may start listening later: connections wait in its backlog), the store (opened by the
        node already, so never migrated by two processes at once), the followed projects and
        the views' timing. The front then opens the store, makes its first answers and says
        it is ready."""
        root = logging.getLogger()
        settings = {
            "upstream": list(upstream),
            "store": str(store_path),
            "follow": [pid.hex() for pid in follow],
            "views_interval": views_interval,
            "budget": budget,
            "log_level": logging.getLogger("node").getEffectiveLevel(),
            "log_json": any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers),
        }
        assert self.process.stdin is not None
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            # A pipe's worth at most (a long follow list): the front reads it once imported.
            await self.process.stdin.send_all(json.dumps(settings).encode() + b"\n")

    async def forget(self) -> None:
        """Tell the front that records were purged: its answers held are stale."""
        assert self.process.stdin is not None
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.process.stdin.send_all(b"forget\n")

    async def wait(self) -> int:
        """The front's exit status, once it has stopped."""
        return await self.process.wait()

    async def close(self) -> None:
        """Stop the front (once): close its pipe, then kill it if it has not left in 5 s."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.process.stdin.aclose()
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            if self.process.stdout is not None:
                await self.process.stdout.aclose()


async def spawn_front(listener: socket.socket, *, command: list[str] | None = None) -> Front | None:
    """Start the front's process for ``listener`` (left open here), to be given its settings
    by :meth:`Front.configure`; None (logged) when it cannot be started. The node starts it
    first thing, so that the front's imports run while the node opens its store and starts
    its transport; whether it became ready is :meth:`Front.started`'s to say."""
    try:
        process = await trio.lowlevel.open_process(
            command or helper_command(__name__, str(listener.fileno())),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(listener.fileno(),),
        )
    except OSError as exc:
        log.warning("could not start the API's front process (%s): the node serves it", exc)
        return None
    return Front(process)


# --------------------------------------------------------------------------------------------
# The front's side


class _Served:
    """The front's state: its views, and where the node's own API listens."""

    def __init__(self, views: ViewCache, upstream: tuple[str, int]) -> None:
        self.views = views
        self.upstream = upstream
        self.connections = trio.CapacityLimiter(MAX_CONNECTIONS)


def _view_of(request: h11.Request) -> tuple[str, str, str, bytes] | None:
    """``(view, pid, path, query)`` when ``request`` is one the front answers itself."""
    if request.method not in (b"GET", b"HEAD"):
        return None
    for name, value in request.headers:
        # A body, or a change of protocol, is the node's to handle.
        if name == b"transfer-encoding" or name == b"upgrade":
            return None
        if name == b"content-length" and value != b"0":
            return None
    raw_path, _, query = request.target.partition(b"?")
    try:
        path = unquote(raw_path.decode("ascii"))
    except UnicodeDecodeError:
        return None
    found = _VIEW_PATH.fullmatch(path)
    if found is None:
        return None
    return found.group(2), found.group(1), path, query


async def _answer(
    served: _Served,
    stream: trio.SocketStream,
    conn: h11.Connection,
    request: h11.Request,
    asked: tuple[str, str, str, bytes],
) -> bool:
    """Answer a view request (``asked``: what :func:`_view_of` read in it); False when the
    connection must close after it."""
    view, pid, path, query = asked
    started = time.monotonic()
    answer = await view_answer(served.views, view, pid, path, query)
    body = b"" if request.method == b"HEAD" else answer.body
    headers = [(k.lower(), v) for k, v in answer.headers.items()]
    headers += [
        ("content-length", str(len(answer.body))),
        ("content-type", JSON_TYPE),
        ("date", email.utils.formatdate(usegmt=True)),
    ]
    head = conn.send(h11.Response(status_code=answer.status, headers=headers)) or b""
    # The body as it is (the shares are megabytes): not joined into another copy.
    chunks: list[bytes] = []
    if body:
        chunks = conn.send_with_data_passthrough(h11.Data(data=body)) or []
    end = conn.send(h11.EndOfMessage()) or b""
    for piece in (head, *chunks, end):
        if piece:
            await stream.send_all(piece)
    if log.isEnabledFor(logging.DEBUG):  # as the node's API logs its calls
        took = (time.monotonic() - started) * 1000
        shown = terminal_safe(path)
        log.debug("%s %s -> %d in %.1f ms", request.method.decode(), shown, answer.status, took)
    return conn.our_state is not h11.MUST_CLOSE


_STREAM_ERRORS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


async def _pump(
    source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope, last: bool
) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then end ``sink``'s sending side;
    ``last`` (the node's side) or a broken stream ends the whole splice (``done``)."""
    try:
        while data := await source.receive_some(RECEIVE):
            await sink.send_all(data)
        await sink.send_eof()
    except _STREAM_ERRORS:
        last = True
    if last:
        done.cancel()


async def _splice(served: _Served, client: trio.SocketStream, received: bytes) -> None:
    """Pass the connection to the node's own API: ``received`` first, then both ways until
    the node's side ends."""
    host, port = served.upstream
    try:
        upstream = await trio.open_tcp_stream(host, port)
    except OSError:
        body = b'{"error":"the node is not answering (it may be stopping)"}'
        await client.send_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        return
    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    async with upstream:
        if received:
            await upstream.send_all(received)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream, nursery.cancel_scope, False)
            nursery.start_soon(_pump, upstream, client, nursery.cancel_scope, True)


async def _converse(served: _Served, stream: trio.SocketStream) -> None:
    """One client connection: view requests answered here, until one is not."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    # Every byte received since the current request began: what the node is given if the
    # request turns out to be its to answer.
    received = bytearray()
    request: h11.Request | None = None
    asked: tuple[str, str, str, bytes] | None = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            await _splice(served, stream, bytes(received))
            return
        if event is h11.NEED_DATA:
            data = b""
            with trio.move_on_after(KEEP_ALIVE):
                data = await stream.receive_some(RECEIVE)
            if not data:
                return  # the client left, or stayed idle too long
            received += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request, asked = event, _view_of(event)
            if asked is None:
                await _splice(served, stream, bytes(received))
                return
            continue  # its end (a request without a body) comes next
        if isinstance(event, h11.EndOfMessage):
            if request is None or asked is None:
                return
            if not await _answer(served, stream, conn, request, asked):
                return
            conn.start_next_cycle()
            received = bytearray(conn.trailing_data[0])
            continue
        return  # ConnectionClosed, or anything a request without a body does not bring


async def _connection(served: _Served, stream: trio.SocketStream) -> None:
    async with served.connections:
        try:
            await _converse(served, stream)
        except _STREAM_ERRORS:
            pass  # the client went away
        except Exception:  # one connection's trouble never stops the front
            log.exception("the API's front failed on a connection")
        finally:
            with contextlib.suppress(*_STREAM_ERRORS):
                await stream.aclose()


async def _refresh(views: ViewCache, interval: float, budget: int, warmed: trio.Event) -> None:
    """Make the views' answers again when the store changed, as the node does
    (``ViewCache.refresh_changed``): at first every followed project's within ``budget``,
    then those made before."""
    first = True
    while True:
        step = partial(views.refresh_changed, views.follow.follows, budget, first=first)
        try:
            await trio.to_thread.run_sync(step)
        except StoreError as exc:
            log.warning("the API's front could not make its views again: %s", exc)
        first = False
        warmed.set()
        await trio.sleep(interval)


async def _control(
    views: ViewCache, done: trio.CancelScope, pending: bytes = b"", fd: int = 0
) -> None:
    """Read the node's lines on ``fd`` (``forget``) until it closes the pipe: then the front
    stops. ``pending``: what was read after the settings' line."""
    stream = trio.lowlevel.FdStream(os.dup(fd))
    async with stream:
        while True:
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line == b"forget":
                    views.forget()
            pending = pending[-64:]
            data = await stream.receive_some(4096)
            if not data:
                break
            pending += data
    done.cancel()


async def _front(settings: dict[str, Any], pending: bytes) -> None:
    path = settings["store"]
    store = Store.open(path)
    reader = Store.open(path)
    maker = AnswerMaker(path)
    try:
        views = ViewCache(
            store,
            follow=Follow(bytes.fromhex(p) for p in settings["follow"]),
            stale_seconds=STALE_SECONDS,
            reader=reader,
            maker=maker,
        )
        served = _Served(views, (settings["upstream"][0], int(settings["upstream"][1])))
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=int(sys.argv[-1])))
        listener = trio.SocketListener(sock)
        warmed = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_control, views, nursery.cancel_scope, pending)
            nursery.start_soon(
                _refresh, views, settings["views_interval"], settings["budget"], warmed
            )
            with trio.move_on_after(WARM_WAIT):
                await warmed.wait()
            # What the imports made: a full collection walked it for 30 ms, stopping every call
            # (frozen before any connection, so none is left in it uncollected).
            freeze_heap()
            await nursery.start(trio.serve_listeners, partial(_connection, served), [listener])
            os.write(_READY_FD, b"ready\n")
    finally:
        maker.close()
        reader.close()
        store.close()


#: Where ``ready`` is written (the standard output, kept apart from ``sys.stdout``).
_READY_FD = 1


def main() -> None:
    """The front process: its last argument is the listening socket's descriptor, its
    settings the first line of its standard input."""
    global _READY_FD
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _READY_FD = os.dup(sys.stdout.fileno())
    sys.stdout = sys.stderr  # nothing else may write to the node's pipe
    received = b""
    while b"\n" not in received and len(received) <= MAX_SETTINGS:
        data = os.read(0, 65536)
        if not data:
            return  # the node went away before saying anything
        received += data
    line, _, pending = received.partition(b"\n")
    settings = json.loads(line)
    from node.logformat import log_handler

    root = logging.getLogger()
    root.handlers[:] = [log_handler(bool(settings["log_json"]))]
    root.setLevel(logging.WARNING)
    logging.getLogger("node").setLevel(int(settings["log_level"]))
    trio.run(_front, settings, pending)
