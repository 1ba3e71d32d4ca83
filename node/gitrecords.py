"""Making the records of an import's commits, in worker processes where cores allow.

:mod:`node.gitlog` reads the history and maps each commit to its attested contribution;
this module makes those records in bulk for ``commons import-git``: each batch of commits
crosses to a signing process as plain tuples (:func:`commit_fields`), which drafts, signs and
finishes every record there (:class:`RecordMaker`) and sends back rows ready for
:meth:`node.store.sqlite.Store.add_attested`; :class:`BatchSigner` keeps a few batches in
flight and hands their results back in order.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Final

from node.gitlog import Commit, draft_commit
from protocol.drafts import Drafts
from protocol.errors import InvalidRecord
from protocol.signing import SigningKey

__all__ = ["BatchSigner", "CommitFields", "RecordMaker", "commit_fields"]

#: Batches of commits a signing process may have waiting, so that it keeps signing while this
#: process stores a batch.
IN_FLIGHT: Final = 4

#: One commit as it crosses to a signing process: its hash, parents, author time, author
#: email, co-author emails (resolved by the mailmap), subject, paths and SSH key. A plain tuple
#: pickles in a sixth of the time the :class:`Commit` dataclass does.
CommitFields = tuple[str, int, int, bytes, tuple[bytes, ...], str, tuple[str, ...], bytes | None]
#: What a signing process sends back of a batch: the records made, as :class:`Attested`'s
#: fields, and the commits skipped, each with its hash and why.
Made = tuple[list[tuple[bytes, bytes, int, str, tuple[str, ...]]], list[tuple[str, str]]]


def commit_fields(commit: Commit, coauthor_map: dict[bytes, bytes]) -> CommitFields:
    """``commit`` as it crosses to a signing process, its co-authors resolved."""
    coauthors = tuple(coauthor_map.get(e, e) for e in commit.coauthor_emails)
    return (
        commit.hash,
        commit.parents,
        commit.author_time,
        commit.email,
        coauthors,
        commit.subject,
        commit.paths,
        commit.ssh_key,
    )


class RecordMaker:
    """Makes the signed records of commits (in a signing process, or in the importing one):
    each commit drafted (:func:`draft_commit`), signed, and finished into an :class:`Attested`
    row for :meth:`node.store.sqlite.Store.add_attested`, or skipped with a reason: an author
    time outside ``0..latest_ms`` (before 1970, or later than a node would accept), or a
    broken record rule."""

    def __init__(self, seed: bytes, project: bytes, url: str) -> None:
        self.key = SigningKey(seed)
        self.drafts = Drafts(self.key.public_key, project, url)

    def make(self, commits: Sequence[CommitFields], latest_ms: int) -> Made:
        rows: list[tuple[bytes, bytes, int, str, tuple[str, ...]]] = []
        skipped: list[tuple[str, str]] = []
        sign, finish = self.key.sign, self.drafts.finish
        for fields in commits:
            commit = Commit(*fields)
            if not 0 <= commit.author_time * 1000 <= latest_ms:
                skipped.append((commit.hash, "its author time is not usable"))
                continue
            try:
                draft = draft_commit(self.drafts, commit, {})
            except InvalidRecord as exc:
                skipped.append((commit.hash, f"{exc.code}: {exc.message}"))
                continue
            raw, record_id = finish(draft, sign(draft.signing_input))
            rows.append((record_id, raw, draft.ts, draft.type, draft.on_behalf))
        return rows, skipped


#: The maker of a signing process, set once when the process starts.
_worker_maker: RecordMaker | None = None


def _start_worker(seed: bytes, project: bytes, url: str) -> None:
    # Ctrl-C reaches the whole process group: the importing process alone answers it (one
    # line, then it shuts the pool down), so a worker neither dies mid-batch nor prints a
    # traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _worker_maker
    _worker_maker = RecordMaker(seed, project, url)


def _worker_make(commits: list[CommitFields], latest_ms: int) -> Made:
    assert _worker_maker is not None, "the pool's initializer sets the maker"
    return _worker_maker.make(commits, latest_ms)


class BatchSigner:
    """Makes the signed records of batches of commits (:class:`RecordMaker`), in ``workers``
    processes beside this one when ``workers`` is at least 1, so that drafting and signing
    (most of an import's work) run in parallel with reading git and storing; with 0, here,
    in order.

    Only plain tuples of bytes, numbers and text cross between processes: commits one way
    (:func:`commit_fields`), rows ready for the store the other. :meth:`submit` hands a batch
    over; :meth:`done` gives back each batch's rows and skipped commits, in the order
    submitted, waiting only while more than ``IN_FLIGHT`` a worker are in flight (or for all
    of them with ``wait_all``), so memory stays bounded by a few batches.
    """

    def __init__(self, key: SigningKey, project: bytes, url: str, *, workers: int = 0) -> None:
        self._maker = RecordMaker(key.seed, project, url)
        self._init = (key.seed, project, url)
        self._pending: deque[Future[Made]] = deque()
        self._ready: deque[Made] = deque()
        self._workers = 0
        self._pool: ProcessPoolExecutor | None = None
        self.start_workers(workers)

    @property
    def workers(self) -> int:
        """The signing processes running (0: batches are made here)."""
        return self._workers

    def start_workers(self, workers: int) -> None:
        """Make the batches submitted from now on in ``workers`` processes (when none run
        yet and ``workers`` is at least 1); those made before stay first in :meth:`done`."""
        if self._pool is not None or workers < 1:
            return
        methods = multiprocessing.get_all_start_methods()
        # fork starts a worker without importing anything again; spawn is the fallback.
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._pool = ProcessPoolExecutor(
            workers, mp_context=context, initializer=_start_worker, initargs=self._init
        )
        self._workers = workers

    def submit(self, commits: list[CommitFields], latest_ms: int) -> None:
        if self._pool is None:
            self._ready.append(self._maker.make(commits, latest_ms))
            return
        self._pending.append(self._pool.submit(_worker_make, commits, latest_ms))

    def done(self, *, wait_all: bool = False) -> Iterator[Made]:
        while self._ready:
            yield self._ready.popleft()
        limit = 0 if wait_all else IN_FLIGHT * self._workers
        while self._pending and (len(self._pending) > limit or self._pending[0].done()):
            yield self._pending.popleft().result()

    def close(self) -> None:
        """Stop the workers; batches not yet started are dropped (an error or Ctrl-C)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
