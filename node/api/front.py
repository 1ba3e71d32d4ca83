"""The API's front process: ``ledger`` and ``shares`` answered beside a busy node.

While a node catches up, its interpreter runs the sync's threads (validation, tallying, the
store's writer) and its event loop waits for the interpreter's lock at every turn: measured
over a catch-up of a million records, the loop stalled for more than 100 ms every second or
so, and a view call spans several turns (BENCHMARKS.md, "The API's front process"). No
amount of care inside that process removes the wait; another process does.

So while a node is busy (a catch-up, a big import: records expected or received by the
thousand, :class:`Demand`), a child process, the **front**, answers ``GET`` and ``HEAD`` of
``/api/v1/projects/{pid}/ledger`` and ``/shares`` from views of its own
(:class:`~node.views.cache.ViewCache` over two connections of its own to the node's store,
with a views' process of its own for a big project's answers, :mod:`node.views.maker`),
built by the same code as the node's (:mod:`node.api.viewcalls`): the same status, headers
and bytes. Its views are made again as the store changes (it watches the store's version
every ``views_interval``), as the node's are. Once the node has been calm for
``CALM_SECONDS`` the front leaves, so an idle node runs no second interpreter of this size.

The API address itself is held by the API's gate (:mod:`node.api.gate`, a small process for
the node's whole life), which passes each connection to the node's own app or, while a front
serves, those whose first request is a view to the front (:class:`Fronts`): the front
listens on a loopback port of its own, answers one request a connection and says
``Connection: close`` (so a client's next request goes through the gate again, to whoever
answers the views then), and passes a request that is not a view, read whole, to the node
with the rest of its connection (the gate routes on a quick look at the request's head).
While a front serves, the node's own answers to the two views say ``Connection: close`` too,
so that clients which kept a connection to the node move to the front.

Reads see what writes did: a write is answered only after its commit, and the front's views
read the store after it (an answer is made of one state of the store, at least as new as the
last state the views' refresh saw; a big project's answers may be up to one background
rebuild old, as the node's are).

The node starts the front with the node's own code (``helper_command``, as the signature
helper), gives it its settings as one JSON line on its standard input and waits for
``ready`` on its standard output; then it has the gate route the views to it. To stop it,
the node first has the gate route them back (and waits for the gate's word that it does),
then closes the front's pipe: the front takes the connections still queued, answers them
within ``DRAIN_SECONDS``, and leaves (it ignores SIGINT and SIGTERM; a node that is gone
closed the pipe already). Meanwhile the pipe carries ``forget`` (records were purged: drop
every answer held). A front that does not start, or stops, is logged and the node answers
the views itself; another is tried no sooner than ``RETRY_SECONDS`` later. A gate that does
not start, or stops, is logged and the node serves the address itself.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final

import h11
import trio

from node.api.gate import MAX_HEAD, RECEIVE, UNAVAILABLE, is_view_path
from node.api.viewcalls import JSON_TYPE, view_answer
from node.memory import freeze_heap
from node.store.sqlite import Store, StoreError
from node.sync.verifier import helper_command
from node.textout import terminal_safe
from node.views.cache import STALE_SECONDS, ViewCache
from node.views.follow import Follow
from node.views.maker import AnswerMaker

__all__ = [
    "FRONT_RECORDS",
    "MAX_CONNECTIONS",
    "Demand",
    "Front",
    "Fronts",
    "GateProcess",
    "spawn_front",
    "spawn_gate",
]

log = logging.getLogger(__name__)

# MAX_HEAD (the longest request head read before a request is passed to the node) and
# RECEIVE (bytes read from a socket at a time) are the gate's, which reads the same heads.
#: Connections served at once; more are accepted and wait for a turn.
MAX_CONNECTIONS: Final = 1000
#: Seconds a connection's request may take to arrive (the node's API: 5 s of idle).
KEEP_ALIVE: Final = 5.0
#: Seconds the node waits for the gate or a front to say it is ready.
START_SECONDS: Final = 30.0
#: Seconds the node waits for the gate to say it routes as told.
ROUTE_SECONDS: Final = 5.0
#: Records expected (a fetch's need) or received in one batch, or within ``LOAD_WINDOW``
#: seconds, that make the node busy enough to want its front: a catch-up, a big import.
FRONT_RECORDS: Final = 4096
LOAD_WINDOW: Final = 10.0
#: Seconds without such load after which the front leaves and the node answers the views.
CALM_SECONDS: Final = 30.0
#: Seconds after a front that failed to start before another is tried.
RETRY_SECONDS: Final = 60.0
#: Seconds a leaving front keeps taking connections the gate sent before it was told.
QUEUED_SECONDS: Final = 0.2
#: Seconds a leaving front gives the connections it still serves.
DRAIN_SECONDS: Final = 5.0
#: Seconds the node gives a leaving front before it kills it.
LEAVE_SECONDS: Final = DRAIN_SECONDS + 25.0
#: Seconds the front waits, at start, for the first answers of the followed projects.
WARM_WAIT: Final = 3.0
#: The longest settings line.
MAX_SETTINGS: Final = 1 << 20


# --------------------------------------------------------------------------------------------
# The node's side


class _Child:
    """The node's handle on one of its API's processes, started with pipes to its standard
    input and output: it says ``ready`` on its output once it serves."""

    #: What the process is called in the log.
    name = "the API's process"

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._closed = False
        self._said = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _line(self, within: float) -> bytes | None:
        """The process's next line (without its end), or None if none came ``within`` that
        many seconds or its output ended."""
        assert self.process.stdout is not None
        with trio.move_on_after(within):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                while b"\n" not in self._said and len(self._said) < 64:
                    piece = await self.process.stdout.receive_some(64)
                    if not piece:
                        break
                    self._said += piece
        line, newline, self._said = self._said.partition(b"\n")
        if not newline:
            self._said = line
            return None
        return line

    async def started(self) -> bool:
        """Whether the process said it is ready (within ``START_SECONDS`` of its start); if
        not, it is logged and stopped."""
        if await self._line(START_SECONDS) == b"ready":
            log.debug("%s %d is ready", self.name, self.process.pid)
            return True
        with trio.move_on_after(1):  # its output ended: it is leaving, say how
            await self.process.wait()
        code = self.process.returncode
        log.warning(
            "%s did not start (%s): the node serves the API itself",
            self.name,
            f"exited with {code}" if code is not None else "no answer",
        )
        await self.close()
        return False

    async def _send(self, line: bytes) -> bool:
        """Write ``line`` on the process's input; False if its pipe is closed."""
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def wait(self) -> int:
        """The process's exit status, once it has stopped."""
        return await self.process.wait()

    #: Seconds the node gives the process to leave once its pipe is closed.
    leave_seconds = 5.0

    async def close(self) -> None:
        """Stop the process (once): close its pipe, then kill it if it has not left within
        ``leave_seconds``."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.process.stdin.aclose()
            with trio.move_on_after(self.leave_seconds):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            if self.process.stdout is not None:
                await self.process.stdout.aclose()


async def _spawn(
    module: str, listener: socket.socket, what: str, *args: str, site: bool = True
) -> trio.Process | None:
    """Start ``module``'s process of the node's code with ``args`` and ``listener`` (passed as
    its last argument; left open here); None (logged) when it cannot be started."""
    try:
        return await trio.lowlevel.open_process(
            helper_command(module, *args, str(listener.fileno()), site=site),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(listener.fileno(),),
        )
    except OSError as exc:
        log.warning("could not start %s (%s): the node serves the API itself", what, exc)
        return None


def _log_settings() -> dict[str, Any]:
    root = logging.getLogger()
    return {
        "log_level": logging.getLogger("node").getEffectiveLevel(),
        "log_json": any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers),
    }


class GateProcess(_Child):
    """The node's handle on its API's gate (:mod:`node.api.gate`), from its start
    (:func:`spawn_gate`): it holds the API address for the node's whole life."""

    name = "the API's gate process"

    def __init__(self, process: trio.Process) -> None:
        super().__init__(process)
        self._lock = trio.Lock()

    async def route(self, views: tuple[str, int] | None) -> bool:
        """Send the connections that ask for views to ``views`` (a front's address) from
        now on, or all to the node (None); True once the gate has said it does (within
        ``ROUTE_SECONDS``)."""
        line = b"node\n" if views is None else f"views {views[0]} {views[1]}\n".encode()
        async with self._lock:
            if not await self._send(line):
                return False
            return await self._line(ROUTE_SECONDS) == b"ok"


async def spawn_gate(listener: socket.socket, node: tuple[str, int]) -> GateProcess | None:
    """Start the API's gate for ``listener`` (the API address), passing connections to
    ``node`` (the node's own app on loopback, which may start listening later: connections
    wait in its backlog); None (logged) when it cannot be started. The node starts it first
    thing; whether it became ready is :meth:`GateProcess.started`'s to say."""
    form = "json" if _log_settings()["log_json"] else "text"
    # The standard library alone: not even site-packages' start-up hooks.
    what = "the API's gate process"
    process = await _spawn("node.api.gate", listener, what, node[0], str(node[1]), form, site=False)
    return None if process is None else GateProcess(process)


class Front(_Child):
    """The node's handle on a front process, from its start (:func:`spawn_front`):
    ``address`` is where it listens."""

    name = "the API's front process"
    #: Its connections have ``DRAIN_SECONDS``; the rest is its own shutdown, which a loaded
    #: machine can make slow.
    leave_seconds = LEAVE_SECONDS

    def __init__(self, process: trio.Process, address: tuple[str, int]) -> None:
        super().__init__(process)
        self.address = address

    async def configure(
        self,
        upstream: tuple[str, int],
        store_path: Path,
        *,
        follow: Sequence[bytes] = (),
        views_interval: float = 2.0,
        budget: int = 60_000,
    ) -> None:
        """Give the front its settings: where the node's own app listens (``upstream``), the
        store, the followed projects and the views' timing. The front then opens the store,
        makes its first answers and says it is ready."""
        settings = {
            "upstream": list(upstream),
            "store": str(store_path),
            "follow": [pid.hex() for pid in follow],
            "views_interval": views_interval,
            "budget": budget,
            **_log_settings(),
        }
        # A pipe's worth at most (a long follow list): the front reads it once imported.
        await self._send(json.dumps(settings).encode() + b"\n")

    async def forget(self) -> None:
        """Tell the front that records were purged: its answers held are stale."""
        await self._send(b"forget\n")


async def spawn_front() -> Front | None:
    """Start a front process on a loopback port of its own, to be given its settings by
    :meth:`Front.configure`; None (logged) when it cannot be started. Whether it became
    ready is :meth:`Front.started`'s to say."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = listener.getsockname()[:2]
        process = await _spawn(__name__, listener, "the API's front process")
    finally:
        listener.close()  # the front holds its own copy
    return None if process is None else Front(process, address)


class Demand:
    """Whether the node is busy enough to want its front: :meth:`note` is told of records
    expected (a fetch's need) and received in batches; ``FRONT_RECORDS`` of them at once, or
    within ``LOAD_WINDOW`` seconds, make it busy until ``CALM_SECONDS`` after the last such
    note. Called from the node's trio thread; a note costs a comparison or two."""

    def __init__(
        self,
        *,
        records: int = FRONT_RECORDS,
        window: float = LOAD_WINDOW,
        calm: float = CALM_SECONDS,
    ) -> None:
        self.records = records
        self.window = window
        self.calm_seconds = calm
        #: Set while the node is busy (cleared by :meth:`clear` once it is calm).
        self.wanted = trio.Event()
        self._since = -math.inf
        self._count = 0
        self._until = -math.inf

    def note(self, records: int) -> None:
        """``records`` are about to arrive, or have arrived together."""
        now = trio.current_time()
        if now - self._since > self.window:
            self._since, self._count = now, 0
        self._count += records
        if self._count >= self.records:
            self._until = now + self.calm_seconds
            self.wanted.set()

    async def calm(self) -> None:
        """Return once no load has been noted for ``calm_seconds``."""
        while trio.current_time() < self._until:  # noqa: ASYNC110 - a note moves it
            await trio.sleep_until(self._until)

    def clear(self) -> None:
        """Forget a want that is over (the node is calm again)."""
        if self.wanted.is_set() and trio.current_time() >= self._until:
            self.wanted = trio.Event()


class Fronts:
    """A front process while the node is busy (:class:`Demand`), the views routed to it by
    the gate; none while it is calm. :meth:`run` is a task of the node's API.

    ``configure`` gives a started front its settings (:meth:`Front.configure`); ``serving``
    is told of the front that answers the views, and of None once it no longer does;
    ``prepare`` makes the node's own views ready to answer again before the gate sends
    them back to the node."""

    def __init__(
        self,
        gate: GateProcess,
        demand: Demand,
        configure: Callable[[Front], Awaitable[None]],
        serving: Callable[[Front | None], None],
        prepare: Callable[[], Awaitable[None]],
        *,
        retry: float = RETRY_SECONDS,
    ) -> None:
        self.gate = gate
        self.demand = demand
        self.configure = configure
        self.serving = serving
        self.prepare = prepare
        self.retry = retry

    async def run(self) -> None:
        while True:
            await self.demand.wanted.wait()
            try:
                await self._serve_while_busy()
            except Exception:  # the views are the node's again: it keeps going
                log.exception("the API's front process failed: the node answers the views")
                await trio.sleep(self.retry)
            self.demand.clear()

    async def _serve_while_busy(self) -> None:
        """Start a front and have the views routed to it until the node is calm (or the
        front stops); then route them back to the node and stop the front."""
        front = await self._start()
        if front is None:
            await trio.sleep(self.retry)
            return
        died = False
        try:
            self.serving(front)
            if not await self.gate.route(front.address):
                raise RuntimeError("the API's gate did not take the front's address")
            log.info("the node is busy: its API's front process %d answers the views", front.pid)
            died = await self._until_calm(front)
            try:
                await self.prepare()
            except Exception:  # the node's views answer when asked, as at a failed start
                log.exception("could not prepare the node's views to answer again")
        finally:
            with trio.CancelScope(shield=True):
                # No connection goes to the front once the gate said so; those it has are
                # answered before it leaves.
                with trio.move_on_after(ROUTE_SECONDS):
                    await self.gate.route(None)
                self.serving(None)
                await front.close()
        if died:
            log.warning(
                "the API's front process stopped (exit status %s): the node answers the views",
                front.process.returncode,
            )
            await trio.sleep(self.retry)
        else:
            log.info("the node is calm: it answers the views itself again")

    async def _until_calm(self, front: Front) -> bool:
        """Wait until the node is calm, or ``front`` stops (then True)."""
        died = False
        async with trio.open_nursery() as watch:

            async def watch_exit() -> None:
                nonlocal died
                await front.wait()
                died = True
                watch.cancel_scope.cancel()

            watch.start_soon(watch_exit)
            await self.demand.calm()
            watch.cancel_scope.cancel()
        return died

    async def _start(self) -> Front | None:
        front = await spawn_front()
        if front is None:
            return None
        try:
            await self.configure(front)
            if await front.started():
                return front
        except BaseException:  # the node stops meanwhile
            await front.close()
            raise
        return None


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
    found = is_view_path(raw_path)
    if found is None:
        return None
    view, pid, path = found
    return view, pid, path, query


async def _answer(
    served: _Served,
    stream: trio.SocketStream,
    conn: h11.Connection,
    request: h11.Request,
    asked: tuple[str, str, str, bytes],
) -> None:
    """Answer a view request (``asked``: what :func:`_view_of` read in it), and say that the
    connection closes after it: a client's next request comes through the gate again, which
    sends it to whoever answers the views by then."""
    view, pid, path, query = asked
    started = time.monotonic()
    answer = await view_answer(served.views, view, pid, path, query)
    body = b"" if request.method == b"HEAD" else answer.body
    headers = [(k.lower(), v) for k, v in answer.headers.items()]
    headers += [
        ("connection", "close"),
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
    the node's side ends. (The gate sends the front only what looks like a view request;
    this is for one that, read whole, is not.)"""
    host, port = served.upstream
    try:
        upstream = await trio.open_tcp_stream(host, port)
    except OSError:
        await client.send_all(UNAVAILABLE)
        return
    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    async with upstream:
        if received:
            await upstream.send_all(received)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, client, upstream, nursery.cancel_scope, False)
            nursery.start_soon(_pump, upstream, client, nursery.cancel_scope, True)


async def _converse(served: _Served, stream: trio.SocketStream) -> None:
    """One client connection: its first request answered here if it is a view (then the
    connection closes), passed to the node with the rest of the connection if not."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    # Every byte received: what the node is given if the request turns out to be its own.
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
                return  # the client left, or sent nothing in time
            received += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request, asked = event, _view_of(event)
            if asked is None:
                await _splice(served, stream, bytes(received))
                return
            continue  # its end (a request without a body) comes next
        if isinstance(event, h11.EndOfMessage) and request is not None and asked is not None:
            await _answer(served, stream, conn, request, asked)
        return  # answered; or ConnectionClosed, or what a request without a body never brings


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
    views: ViewCache, stopping: trio.Event, pending: bytes = b"", fd: int = 0
) -> None:
    """Read the node's lines on ``fd`` (``forget``) until it closes the pipe: then the front
    stops (``stopping``). ``pending``: what was read after the settings' line."""
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
    stopping.set()


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
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_control, views, stopping, pending)
            nursery.start_soon(
                _refresh, views, settings["views_interval"], settings["budget"], warmed
            )
            with trio.move_on_after(WARM_WAIT):
                await warmed.wait()
            # What the imports made: a full collection walked it for 30 ms, stopping every call
            # (frozen before any connection, so none is left in it uncollected).
            freeze_heap()
            async with trio.open_nursery() as handlers:
                async with trio.open_nursery() as accepting:
                    serving = partial(_connection, served)
                    await accepting.start(
                        partial(trio.serve_listeners, serving, [listener], handler_nursery=handlers)
                    )
                    os.write(_READY_FD, b"ready\n")
                    await stopping.wait()
                    # The gate sends nothing more (the node closes the pipe once it said so):
                    # the connections it sent just before are taken from the queue.
                    await trio.sleep(QUEUED_SECONDS)
                    accepting.cancel_scope.cancel()
                await listener.aclose()
                handlers.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
            nursery.cancel_scope.cancel()
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
