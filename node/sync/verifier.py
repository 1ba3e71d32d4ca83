"""Signature verification in a helper process, for the big batches of a catch-up.

A node catching up validates tens of thousands of records a second. Verification is most of
that work and runs in libsodium without the GIL, but everything around it (parsing, the
transport, the store) is Python under one GIL: two validation threads spend more than half of
their parsing time waiting for each other. So while big batches arrive, the node runs one
helper process (``node.sync._verifier_helper``, which holds the pipe format) and sends it the
signatures, leaving its own threads the Python work. The helper decides with the very
function the node uses (``protocol.signing.verify``), so a record is judged the same either
way.

The helper runs only while there is such work: :meth:`Verifier.run` starts it on the first
request and stops it after ``idle`` seconds without one, so an idle node has no helper.
Whenever the helper is not there (not started yet, failed to start, stopped), :meth:`submit`
and :meth:`verify` answer ``None`` and the caller verifies in its own threads. A helper that
dies, says something it was not asked, or leaves a request unanswered for ``ANSWER_SECONDS``
is stopped (killed if need be); the requests it held are answered ``None``, and the next
helper is started no sooner than ``RETRY_SECONDS`` later.

The helper runs exactly the code the node runs (see :func:`helper_command`): never a ``node``
package that happens to sit in the folder the node was started from.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

import node
from node.metrics import Metrics
from node.sync._verifier_helper import READY, Item, encode_request

__all__ = ["Ticket", "Verifier", "helper_command"]

log = logging.getLogger(__name__)

#: Seconds the helper is kept after its last request.
IDLE_SECONDS = 20.0
#: Seconds a started helper has to say it is ready.
START_SECONDS = 10.0
#: Seconds the helper may take to answer its oldest request (512 signatures take it about
#: 25 ms) before it is taken for hung and killed.
ANSWER_SECONDS = 10.0
#: Seconds to wait, after the helper failed, before starting another.
RETRY_SECONDS = 60.0


#: A helper's start, run with ``python -I -c`` (see :func:`helper_command`); ``argv[1]`` is
#: the folder holding the node's own ``node`` package, ``argv[2]`` the module whose ``main``
#: runs (with the rest of ``argv``).
_BOOTSTRAP = """\
import importlib, sys
if sys.argv[1] not in sys.path:
    sys.path.insert(0, sys.argv[1])
sys.exit(importlib.import_module(sys.argv[2]).main())
"""

#: The signature helper's module.
HELPER_MODULE = "node.sync._verifier_helper"


def helper_command(module: str = HELPER_MODULE, *args: str, site: bool = True) -> list[str]:
    """The command line that starts a helper process of the node: ``module``'s ``main``
    (the signature helper's by default; the views' process is another), given ``args``.

    ``python -m MODULE`` would put the working directory first on
    ``sys.path``: started in a folder holding a ``node`` package, the node would run that
    package's code. Isolated mode (``-I``) puts neither the working directory nor a script's
    folder on the path and ignores ``PYTHON*`` variables and the user's site-packages; the
    one folder added is the one this process loaded ``node`` from (site-packages, or the
    checkout of an editable install), so the helper runs the same code as the node.
    Without ``site`` (``-S``), the interpreter does not even load its site-packages' start-up
    hooks (about 2.5 MB): for a helper that needs the standard library and ``node`` alone.
    """
    root = Path(node.__file__).resolve().parent.parent
    flags = ["-I"] if site else ["-I", "-S"]
    return [sys.executable, *flags, "-c", _BOOTSTRAP, str(root), module, *args]


@dataclass
class Ticket:
    """Items sent to the helper, waiting for its answer."""

    count: int
    done: trio.Event = field(default_factory=trio.Event)
    answer: bytes | None = None


class Verifier:
    """The node's handle on the helper process; :meth:`run` is a task of the node's nursery.

    From the trio thread::

        verdicts = await verifier.verify(items)   # a list of bools, or None: verify yourself
    """

    def __init__(
        self, metrics: Metrics, *, idle: float = IDLE_SECONDS, answer_within: float = ANSWER_SECONDS
    ) -> None:
        self.metrics = metrics
        self.idle = idle
        self.answer_within = answer_within
        self._progress = 0.0  # when the helper last answered, or was given work while idle
        self._wanted = trio.Event()
        self._ready = False
        #: The helper's process id while it runs.
        self.pid: int | None = None
        self._queue_send, self._queue_recv = trio.open_memory_channel[bytes](math.inf)
        self._tickets: deque[Ticket] = deque()
        #: Items sent and not yet answered.
        self.backlog = 0
        self._last_use = -math.inf

    @property
    def ready(self) -> bool:
        """True while a helper is running and taking requests."""
        return self._ready

    def want(self) -> None:
        """Ask for the helper: :meth:`run` starts it, and later requests use it."""
        self._last_use = trio.current_time()
        self._wanted.set()

    def submit(self, items: Sequence[Item]) -> Ticket | None:
        """Send ``items`` (key, message, signature) to the helper; None if it is not running
        (then verify them yourself). Asks for the helper either way."""
        self.want()
        if not self._ready or not items:
            return None
        try:
            request = encode_request(items)
        except ValueError:
            return None
        ticket = Ticket(len(items))
        if not self._tickets:
            self._progress = trio.current_time()
        # The ticket and its request enter their queues in one step, so the answers (read
        # in request order) always meet their tickets.
        self._tickets.append(ticket)
        self._queue_send.send_nowait(request)
        self.backlog += ticket.count
        return ticket

    async def answer(self, ticket: Ticket) -> list[bool] | None:
        """The verdicts on a submitted ticket's items, or None if the helper stopped first."""
        await ticket.done.wait()
        if ticket.answer is None:
            return None
        self.metrics.inc("commons_verifier_records_total", ticket.count)
        return [b == 1 for b in ticket.answer]

    async def verify(self, items: Sequence[Item]) -> list[bool] | None:
        """:meth:`submit` and :meth:`answer` in one."""
        ticket = self.submit(items)
        return None if ticket is None else await self.answer(ticket)

    async def run(self) -> None:
        """Start the helper whenever it is wanted, stop it when idle; runs until cancelled."""
        while True:
            await self._wanted.wait()
            try:
                failed = await self._serve()
            except OSError as exc:
                log.warning("cannot start the signature helper (%s); verifying in threads", exc)
                failed = True
            if failed:
                self.metrics.inc("commons_verifier_failures_total")
                await trio.sleep(RETRY_SECONDS)
            self._wanted = trio.Event()

    async def _serve(self) -> bool:
        """Run one helper until idle; True if it failed."""
        process = await trio.lowlevel.open_process(
            helper_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        self.pid = process.pid
        failed = [False]
        greeting = b""
        try:
            with trio.move_on_after(START_SECONDS):
                greeting = await process.stdout.receive_some(1)
            if greeting != READY:
                log.warning("the signature helper did not start; verifying in threads")
                return True
            self.metrics.inc("commons_verifier_starts_total")
            self._ready = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, process.stdin, nursery.cancel_scope, failed)
                nursery.start_soon(self._reader, process.stdout, nursery.cancel_scope, failed)
                while True:  # until idle
                    now = trio.current_time()
                    if self._tickets and now - self._progress > self.answer_within:
                        log.warning("the signature helper hangs; verifying in threads")
                        failed[0] = True
                        break
                    left = self.idle - (now - self._last_use)
                    if left <= 0 and not self._tickets:
                        break
                    await trio.sleep(min(max(0.1, left), self.answer_within / 2))
                nursery.cancel_scope.cancel()
        finally:
            self._ready = False
            while self._tickets:  # unanswered: their callers verify themselves
                self._tickets.popleft().done.set()
            self.backlog = 0
            while True:  # requests never written belong to those tickets
                try:
                    self._queue_recv.receive_nowait()
                except trio.WouldBlock:
                    break
            with trio.CancelScope(shield=True):
                await process.stdin.aclose()
                with trio.move_on_after(0 if failed[0] else 2):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            self.pid = None
        return failed[0]

    async def _writer(
        self, stream: trio.abc.SendStream, scope: trio.CancelScope, failed: list[bool]
    ) -> None:
        try:
            async for request in self._queue_recv:
                await stream.send_all(request)
        except trio.BrokenResourceError:
            log.warning("the signature helper stopped reading; verifying in threads")
            failed[0] = True
            scope.cancel()

    async def _reader(
        self, stream: trio.abc.ReceiveStream, scope: trio.CancelScope, failed: list[bool]
    ) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                log.warning("the signature helper stopped; verifying in threads")
                failed[0] = True
                scope.cancel()
                return
            buffer += chunk
            while self._tickets and len(buffer) >= self._tickets[0].count:
                ticket = self._tickets.popleft()
                self._progress = trio.current_time()
                self.backlog -= ticket.count
                ticket.answer = bytes(buffer[: ticket.count])
                del buffer[: ticket.count]
                ticket.done.set()
            if buffer and not self._tickets:
                log.warning("the signature helper answered more than it was asked; stopping it")
                failed[0] = True
                scope.cancel()
                return
