"""A big project's answers made in a process of their own, beside a running node.

While a node catches up, its one interpreter runs the sync, the validation threads and the
views' background rebuilds, and a view call waits its turn for the interpreter's lock: a
rebuild of a project of 20,000 participants costs about 0.15 s alone and held the lock for
0.4-0.8 s during a sync, which was the slowest calls' main cause (BENCHMARKS.md, "Views
during a sync"). :class:`AnswerMaker` makes those answers (the summary, the shares and the
first ledger page, :class:`node.views.tallied.Prepared`) in a child process that opens the
store a second time and reads one state of it, so the node's own interpreter only folds the
project's few special records and takes the results (a few milliseconds).

The child runs this module's :func:`main` with the node's own code (``helper_command``, as the
signature helper does), given the store's path: requests and replies cross its standard
input and output as length-prefixed pickles (the pipe is private to the two processes). It is
started at the first request, stopped after ``IDLE_SECONDS`` without one (an idle node keeps
no second process), and left for ``FAILURE_PAUSE`` seconds after it failed; a request it does
not answer gets None, and the caller makes the answers itself as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

from node.store.sqlite import ProjectKey, Store, StoreError
from node.sync.verifier import helper_command
from node.views.tallied import Prepared, Tallied, combine_keys
from protocol.identity import People
from protocol.identity_records import IDENTITY_KINDS

__all__ = ["AnswerMaker", "Made", "make"]

log = logging.getLogger(__name__)

#: Seconds without a request after which the child is stopped.
IDLE_SECONDS: Final = 60.0
#: Seconds a request waits for the child's answer at most (the child is then stopped).
ANSWER_SECONDS: Final = 120.0
#: Seconds the maker is left unused after the child failed (the caller makes the answers).
FAILURE_PAUSE: Final = 60.0
#: The largest message either side accepts (a project's shares are about 250 bytes a line).
MAX_MESSAGE: Final = 1 << 30

_LENGTH = struct.Struct(">Q")

#: The key of the state the answers were made of, and the answers.
Made = tuple[ProjectKey, Prepared]


def make(store: Store, pid: bytes, people_key: ProjectKey, limit: int) -> Made | None:
    """Prepare project ``pid``'s answers from the tallies in one read of ``store``, with a
    first ledger page of query limit ``limit``: None when the project is not held, or the
    identity records' key is not ``people_key`` or makes keys other than their own persons
    (the caller's fold then differs from this one)."""
    with store.reading():
        found = store.project_key(pid)
        identity = store.kinds_key(IDENTITY_KINDS)
        if found is None or identity != people_key:
            return None
        people = People.fold(store.of_kinds(IDENTITY_KINDS))
        if not people.trivial:
            return None
        answers = Tallied.build(store, pid, people)
        if answers is None:
            return None
        answers.prepare(limit)
    return combine_keys(found, identity), answers.prepared()


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_exactly(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def _receive(stream: IO[bytes]) -> Any:
    """The next message, or raises EOFError when the other side closed the pipe."""
    head = _read_exactly(stream, _LENGTH.size)
    if head is None:
        raise EOFError("the pipe closed")
    (length,) = _LENGTH.unpack(head)
    if length > MAX_MESSAGE:
        raise EOFError(f"a message of {length} bytes")
    data = _read_exactly(stream, length)
    if data is None:
        raise EOFError("the pipe closed inside a message")
    return pickle.loads(data)


class AnswerMaker:
    """Makes big projects' prepared answers in a child process (see the module).

    Thread-safe: one request at a time crosses to the child; others wait their turn."""

    def __init__(
        self,
        store_path: str | Path,
        *,
        idle_seconds: float = IDLE_SECONDS,
        answer_seconds: float = ANSWER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        command: list[str] | None = None,
    ) -> None:
        self.store_path = Path(store_path)
        #: The child's command line (tests give others).
        self._command = command or helper_command(__name__, str(self.store_path))
        self._idle_seconds = idle_seconds
        self._answer_seconds = answer_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._used = 0.0
        self._paused_until = 0.0
        self._closed = False
        #: Requests answered by the child, and children started (for tests and logs).
        self.answered = 0
        self.started = 0

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        child = self._child
        return None if child is None else child.pid

    def make(self, pid: bytes, people_key: ProjectKey, limit: int) -> Made | None:
        """:func:`make` in the child; None when it cannot answer (the caller makes them)."""
        with self._lock:
            now = self._clock()
            if self._closed or now < self._paused_until:
                return None
            self._used = now
            late = threading.Event()
            try:
                child = self._child or self._start()
                assert child.stdin is not None
                assert child.stdout is not None
                _send(child.stdin, (pid, people_key, limit))

                # A child that does not answer in time is stopped: the read then ends.
                def expire() -> None:
                    late.set()
                    child.kill()

                watchdog = threading.Timer(self._answer_seconds, expire)
                watchdog.start()
                try:
                    status, value = _receive(child.stdout)
                finally:
                    watchdog.cancel()
            except (OSError, EOFError, pickle.PickleError) as exc:
                why = f"gave no answer in {self._answer_seconds:g} s" if late.is_set() else exc
                self._fail(f"the views' process failed ({why}); the node makes the answers itself")
                return None
            self._used = self._clock()
            if status != "made":
                self._fail(f"the views' process could not make answers: {value}")
                return None
            self.answered += 1
            made: Made | None = value
            return made

    def idle(self) -> None:
        """Stop the child when no request came for ``idle_seconds``."""
        with self._lock:
            if self._child is not None and self._clock() - self._used >= self._idle_seconds:
                log.debug("stopping the idle views' process %d", self._child.pid)
                self._stop()

    def close(self) -> None:
        """Stop the child; later requests answer None."""
        with self._lock:
            self._closed = True
            self._stop()

    def _start(self) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        self._child = child
        self.started += 1
        log.debug("started the views' process %d", child.pid)
        return child

    def _fail(self, message: str) -> None:
        log.warning("%s", message)
        self._stop()
        self._paused_until = self._clock() + FAILURE_PAUSE

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            child.wait(timeout=5)  # its input closed: it leaves at once
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(path: str, requests: IO[bytes], replies: IO[bytes]) -> None:
    """The child's loop: answer each request until the node closes the pipe."""
    store: Store | None = None
    try:
        while True:
            try:
                pid, people_key, limit = _receive(requests)
            except EOFError:
                return
            try:
                if store is None:
                    store = Store.open(path)
                reply: tuple[str, Any] = ("made", make(store, pid, people_key, limit))
            except StoreError as exc:
                reply = ("error", str(exc))
            except Exception as exc:  # said to the node, which makes them itself
                reply = ("error", f"{type(exc).__name__}: {exc}")
            _send(replies, reply)
    finally:
        if store is not None:
            store.close()


def main() -> None:
    """The child process: its last argument is the store's path."""
    # The node's Ctrl-C, or a service manager's SIGTERM, reaches its whole process group:
    # the node closes the pipe as it stops (and a node that is gone closed it already).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Nothing else may write to the pipe the replies cross.
    sys.stdout = sys.stderr
    with contextlib.suppress(BrokenPipeError):  # the node went away
        _serve(sys.argv[-1], sys.stdin.buffer, replies)
