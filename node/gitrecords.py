"""Making the records of an import's commits, in worker processes where cores allow.

:mod:`node.gitlog` reads the history and maps each commit to its attested contribution;
this module makes those records in bulk for ``commons import-git``. The importing process
only reads ``git log`` (:func:`node.gitlog.log_pieces`) and stores: each piece of git's
output, whole commits a few hundred KiB at a time, crosses to a worker process as the bytes
git printed, and the worker does the rest (:class:`RecordMaker`): it parses the commits, reads
their signatures through a ``git cat-file`` of its own, resolves co-authors through the
mailmap, drafts, signs and finishes every record, and sends back rows ready for
:meth:`node.store.sqlite.Store.add_attested`. :class:`BatchSigner` keeps a few pieces in
flight and hands their results back in order.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.util import Finalize
from typing import Final, NamedTuple

from node.gitlog import Signatures, commit_fields, map_coauthors, parse_piece
from protocol.drafts import Drafts
from protocol.errors import InvalidRecord
from protocol.signing import SigningKey

__all__ = ["BatchSigner", "Made", "RecordMaker", "Source"]

#: Pieces of history a worker process may have waiting, so that it keeps working while this
#: process stores.
IN_FLIGHT: Final = 4

#: How much nicer than the importing process its worker processes (and their ``git
#: cat-file``) run: the workers take what CPU is left, and the importing process, whose
#: writer thread stores every record in turn, and the user's other programs come first.
#: Measured at 1,019,999 commits on two cores: 21,181 commits/s against 20,693 at the same
#: niceness (three runs each), within the runs' spread.
WORKER_NICENESS: Final = 5

#: A record made, as :class:`node.store.bulk.Attested`'s fields: a plain tuple crosses between
#: processes in a fraction of the time a named one does.
Row = tuple[bytes, bytes, int, str, tuple[str, ...]]


class Made(NamedTuple):
    """What a piece of history made: the records (:data:`Row`), the commits skipped (each
    hash and why), and the authors' addresses, trimmed and ASCII-lowered, once each."""

    rows: list[Row]
    skipped: list[tuple[str, str]]
    authors: set[bytes]


class Source(NamedTuple):
    """Where an import reads its history: the repository, and the mailmap file given with
    ``--mailmap`` (None: the repository's own)."""

    repo: str
    mailmap: str | None = None


class RecordMaker:
    """Makes the signed records of pieces of ``git log`` output (in a worker process, or in
    the importing one): each commit parsed (:func:`node.gitlog.parse_piece`), its signature
    read (:class:`node.gitlog.Signatures`, started at the first piece), its co-authors
    resolved by the mailmap (each address asked of git once), then drafted, signed and
    finished (:func:`node.gitlog.commit_fields`, :meth:`protocol.drafts.Drafts.record`) into a
    row for :meth:`node.store.sqlite.Store.add_attested`, or skipped with a reason: an author time
    outside ``0..latest_ms`` (before 1970, or later than a node would accept), or a broken
    record rule. Raises :class:`node.gitlog.GitError` when git fails."""

    def __init__(self, seed: bytes, project: bytes, url: str, source: Source) -> None:
        self.key = SigningKey(seed)
        self.drafts = Drafts(self.key.public_key, project, url)
        self.source = source
        self.coauthors: dict[bytes, bytes] = {}
        self._signatures: Signatures | None = None

    def make(self, piece: bytes, latest_ms: int) -> Made:
        commits = parse_piece(piece)
        if self._signatures is None:
            self._signatures = Signatures(self.source.repo)
        self._signatures.read(commits)
        mapped = self.coauthors
        wanted = [e for c in commits for e in c.coauthor_emails if e not in mapped]
        if wanted:
            mapped.update(map_coauthors(self.source.repo, wanted, self.source.mailmap))
        made = Made([], [], {c.email.strip().lower() for c in commits})
        rows, skipped = made.rows, made.skipped
        sign, record, fields_of = self.key.sign, self.drafts.record, commit_fields
        for commit in commits:
            if not 0 <= commit.author_time * 1000 <= latest_ms:
                skipped.append((commit.hash, "its author time is not usable"))
                continue
            fields = fields_of(commit, mapped)
            try:
                raw, record_id = record(*fields, sign)
            except InvalidRecord as exc:
                skipped.append((commit.hash, f"{exc.code}: {exc.message}"))
                continue
            rows.append((record_id, raw, fields[4], fields[0], fields[3]))
        return made

    def close(self) -> None:
        """Stop the ``git cat-file`` this maker started, if any."""
        if self._signatures is not None:
            self._signatures.close()
            self._signatures = None


#: The maker of a worker process, set once when the process starts.
_worker_maker: RecordMaker | None = None


def _start_worker(seed: bytes, project: bytes, url: str, source: Source) -> None:
    # Ctrl-C reaches the whole process group: the importing process alone answers it (one
    # line, then it shuts the pool down), so a worker neither dies mid-piece nor prints a
    # traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker's objects are freed as they go (a piece's commits, drafts and rows refer to
    # nothing that refers back): the collector would only walk them.
    gc.disable()
    # Below the importing process, which stores: with every core busy, its writer thread
    # gets its share at once instead of waiting its turn behind the workers.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    global _worker_maker
    _worker_maker = RecordMaker(seed, project, url, source)
    # The worker's git cat-file stops with it (multiprocessing runs this as the worker ends).
    Finalize(_worker_maker, _worker_maker.close, exitpriority=0)


def _worker_make(piece: bytes, latest_ms: int) -> Made:
    assert _worker_maker is not None, "the pool's initializer sets the maker"
    return _worker_maker.make(piece, latest_ms)


class BatchSigner:
    """Makes the signed records of pieces of history (:class:`RecordMaker`), in ``workers``
    processes beside this one when ``workers`` is at least 1, so that parsing, drafting and
    signing (most of an import's work) run in parallel with reading git and storing; with 0,
    here, in order.

    Only bytes and plain tuples cross between processes: git's output one way, rows ready
    for the store the other. :meth:`submit` hands a piece over; :meth:`done` gives back what
    each piece made (:class:`Made`), in the order submitted, waiting only while more than
    ``IN_FLIGHT`` a worker are in flight (or for all of them with ``wait_all``), so memory
    stays bounded by a few pieces.
    """

    def __init__(
        self, key: SigningKey, project: bytes, url: str, source: Source, *, workers: int = 0
    ) -> None:
        self._maker = RecordMaker(key.seed, project, url, source)
        self._init = (key.seed, project, url, source)
        self._pending: deque[Future[Made]] = deque()
        self._ready: deque[Made] = deque()
        self._workers = 0
        self._pool: ProcessPoolExecutor | None = None
        self.start_workers(workers)

    @property
    def workers(self) -> int:
        """The worker processes running (0: pieces are made here)."""
        return self._workers

    def start_workers(self, workers: int) -> None:
        """Make the pieces submitted from now on in ``workers`` processes (when none run
        yet and ``workers`` is at least 1); those made before stay first in :meth:`done`."""
        if self._pool is not None or workers < 1:
            return
        # From now on nothing is made here: this process's git cat-file stops, before the
        # workers are forked, so that they do not hold its pipes.
        self._maker.close()
        methods = multiprocessing.get_all_start_methods()
        # fork starts a worker without importing anything again; spawn is the fallback.
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=self._init
        )
        self._workers = workers

    def submit(self, piece: bytes, latest_ms: int) -> None:
        if self._pool is None:
            self._ready.append(self._maker.make(piece, latest_ms))
            return
        self._pending.append(self._pool.submit(_worker_make, piece, latest_ms))

    def done(self, *, wait_all: bool = False) -> Iterator[Made]:
        while self._ready:
            yield self._ready.popleft()
        limit = 0 if wait_all else IN_FLIGHT * self._workers
        while self._pending and (len(self._pending) > limit or self._pending[0].done()):
            yield self._pending.popleft().result()

    def close(self) -> None:
        """Stop the workers and this process's own ``git cat-file``; pieces not yet started
        are dropped (an error or Ctrl-C)."""
        self._maker.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
