"""The JSON views of docs/INTERFACES.md, computed from the store with ``protocol.ledger``.

The CLI and the HTTP API print exactly these values (``--json`` and the API bodies agree by
construction). The store returns a project's records; the fold is ``protocol.ledger``'s, so
there is one implementation of the rules.

A project's answers come, while keys are their own persons, from the tallies the store keeps
as records are stored (:mod:`node.views.tallied`): its sums per participant and a fold of
its few special records. Once identity records are held the views count per person
(docs/IDENTITY.md) and a project's records are decoded and folded (about 10 microseconds a
record), and the fold is kept in memory. ``tallies=False`` folds every record in every case:
the reference the tallies are tested against.

A project's results are labelled with the store's key of its record set (record count and
greatest ``seq``, read off an index without decoding anything) combined with the key of the
identity records (:meth:`ViewCache.people`): any new record of the project, link or
revocation makes them stale. (Earlier versions also stored each fold's results as a
snapshot in a ``view_snapshots`` table; the tallies made them useless, and schema version 5
drops it.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeVar

from node.store.sqlite import ProjectKey, Store, StoreError
from node.views.answers import (
    Answers,
    Fold,
    LedgerPage,
    ViewError,
    json_body,
    made,
    record_json,
)
from node.views.follow import Follow
from node.views.maker import AnswerMaker
from node.views.months import month_counts
from node.views.tallied import Tallied, combine_keys
from protocol.attest import handle_from_text, names_handle
from protocol.errors import ProtocolError
from protocol.identity import People
from protocol.identity_records import IDENTITY_KINDS
from protocol.ledger import ProjectView
from protocol.record import CONTRIBUTION_TYPES, Record
from protocol.signing import public_key_from_peer_id

T = TypeVar("T")

__all__ = [
    "LedgerPage",
    "ViewCache",
    "ViewError",
    "json_body",
    "record_json",
]

log = logging.getLogger(__name__)

#: Projects whose results a running node keeps in memory.
MAX_CACHED_VIEWS = 64
#: The most ledger entries one call returns when no limit is given.
DEFAULT_LEDGER_LIMIT = 1000
MAX_LEDGER_LIMIT = 100_000


#: A running node's view calls answer from the results of an older record set, at most this
#: many seconds old, while the node makes them again in the background (see ``ViewCache``).
STALE_SECONDS: Final = 30.0
#: Results that took less than this many seconds to make are made again by the call that
#: finds them stale (it waits that little, and sees every record stored before it).
WAIT_BELOW: Final = 0.05
#: Or the project held this many records when they were made: a project that a sync brings
#: grows from nothing, and its answers cost seconds to make before the last rebuild did.
BIG_RECORDS: Final = 5000
#: After results were made again in the background, this many times what making them took
#: passes before the background makes them again: a project receiving records all the time
#: (a catch-up) is rebuilt at most a quarter of the time of one thread.
REBUILD_PAUSE: Final = 3.0
#: Seconds one background refresh spends at most before it leaves the rest for the next.
REFRESH_SECONDS: Final = 1.0


#: Set while a call may not read the store or wait (:meth:`ViewCache.at_hand`).
_AT_HAND: ContextVar[bool] = ContextVar("_AT_HAND", default=False)


class _NotAtHand(Exception):
    """The answer needs the store or a wait: :meth:`ViewCache.at_hand` gives up."""


def _store_needed() -> None:
    if _AT_HAND.get():
        raise _NotAtHand


# --------------------------------------------------------------------------------------------
# The cache


class _Begun(NamedTuple):
    """When answers began to be made (the cache's clock) and the cache's ``_generation``."""

    at: float
    generation: int


@dataclass(slots=True)
class _Entry:
    """A project's results held in memory, for the record set named by ``key``."""

    key: ProjectKey
    answers: Fold | Tallied
    #: When these results were made (the cache's clock), and the seconds making them took.
    built: float = 0.0
    cost: float = 0.0
    #: When they last held every record stored (the start of their making, or a later look
    #: at the store's keys that found them current).
    checked: float = 0.0
    #: The project's records the cache had heard of (``note_stored``) when they were kept.
    heard: int = 0


class ViewCache:
    """Answers the view queries from results held in memory, the tallies, or a fold.

    ``cache=False`` (the CLI, which runs once) keeps nothing in memory. ``clock`` (monotonic
    seconds) times how old results are. ``follow`` is the node's follow list:
    a project it does not follow is marked so in the list, and its ledger and shares are
    refused (the records held of it may be any part of it, so its numbers would mislead).
    ``tallies=False`` folds every record even while keys are their own persons: the
    reference the tallies are tested against.

    ``stale_seconds`` (a running node: ``STALE_SECONDS``; 0: never) lets a call about a big
    project (results that took ``WAIT_BELOW`` seconds or more to make, about 0.3 s for
    20,000 participants, or of a project of ``BIG_RECORDS`` records or more: those they were
    made of, and those :meth:`note_stored` heard of since, or as many as the store counts
    when a call reads its key) answer from the results held in memory without reading the
    store at all (or after reading only that key), while they held every record stored at
    most ``stale_seconds`` ago and they hold the answer asked for already made (the summary,
    the shares, the ledger pages made before): a call then neither waits for a rebuild nor
    for the store's lock, which a sync holds for a whole transaction. An answer is never put
    together from two record sets. The node's background :meth:`refresh` makes the results
    again as records arrive, so what a reader sees lags the store by one background rebuild
    (a few seconds: the node's ``views_interval``, the pause ``REBUILD_PAUSE`` and the
    rebuild itself), and never by more than ``stale_seconds``: past that, or for any other
    answer, the call reads the store as before (and makes the results if they are stale).

    ``maker`` (a running node, with a ``reader``) makes a big project's answers again in
    the background in a process of its own (:mod:`node.views.maker`) while calls answer from
    the recent ones: this process then only folds the project's special records, and its
    calls do not wait for the interpreter's lock while the rest is made.
    """

    def __init__(
        self,
        store: Store,
        *,
        cache: bool = True,
        clock: Callable[[], float] = time.monotonic,
        follow: Follow | None = None,
        tallies: bool = True,
        stale_seconds: float = 0.0,
        reader: Store | None = None,
        maker: AnswerMaker | None = None,
    ) -> None:
        self.store = store
        self.maker = maker
        self._stale_seconds = stale_seconds
        self._reader = reader
        #: Held while answers are made from the ``reader`` (one read transaction at a time).
        self._reading = threading.Lock()
        self._tallies = tallies
        self.follow = follow or Follow()
        self._enabled = cache
        self._clock = clock
        self._lock = threading.Lock()
        self._building: dict[bytes, threading.Lock] = {}
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._people: tuple[ProjectKey, People] | None = None
        #: The projects the last :meth:`refresh` left stale for its pause between rebuilds.
        self.deferred: list[bytes] = []
        #: How many times :meth:`forget` ran: answers begun before a purge are not kept.
        self._generation = 0
        #: Records stored of each project since this cache was made (:meth:`note_stored`).
        self._heard: dict[bytes, int] = {}
        #: The store's version when :meth:`refresh_changed` last refreshed.
        self._refreshed_at: tuple[int, int] | None = None

    def forget(self) -> None:
        """Drop every result held in memory (records were purged: a project's key may come
        back with other records behind it, since SQLite may reuse a deleted seq)."""
        with self._lock:
            self._entries.clear()
            self._people = None  # the identity records' key may come back the same way
            self._generation += 1

    def note_stored(self, records: Sequence[Record]) -> None:
        """Hear of ``records`` just committed (the node's ingest listener): how much each
        project grew, known without reading the store, so that a project that grows big
        while a sync stores it is answered as big from the moment it is (see the class)."""
        counts: dict[bytes, int] = {}
        for record in records:
            if record.project is not None:
                counts[record.project] = counts.get(record.project, 0) + 1
        with self._lock:
            for pid, n in counts.items():
                self._heard[pid] = self._heard.get(pid, 0) + n

    def _begin(self) -> _Begun:
        """When answers begin to be made, and after how many purges (see ``_remember``)."""
        with self._lock:
            return _Begun(self._clock(), self._generation)

    def _resolve(self, text: str, kind: str | None = None) -> bytes:
        if kind == "project" and len(text) == 64:
            # A project's full id whose results are held needs no look-up in the store
            # (whose lock a sync may hold for a whole transaction).
            try:
                pid = bytes.fromhex(text)
            except ValueError:
                pid = b""
            with self._lock:
                if pid in self._entries:
                    return pid
        _store_needed()
        try:
            return self.latest().resolve_prefix(text, kind=kind)
        except ProtocolError as exc:
            status = 400 if exc.code == "bad-id" else 404
            raise ViewError(exc.message, status) from None

    def _project_lock(self, pid: bytes) -> threading.Lock:
        with self._lock:
            lock = self._building.get(pid)
            if lock is None:
                lock = self._building[pid] = threading.Lock()
            return lock

    def people(self) -> People:
        """The person fold of every identity record held (folded again when they change)."""
        return self._people_now()[1]

    def _people_now(self) -> tuple[ProjectKey, People]:
        key = self.latest().kinds_key(IDENTITY_KINDS)
        with self._lock:
            held = self._people
        if held is not None and held[0] == key:
            return held
        records = self.latest().of_kinds(IDENTITY_KINDS)
        people = People.fold(records)
        # Records are only ever added: as many as the key counts means exactly its records.
        if len(records) == key[0]:
            with self._lock:
                self._people = (key, people)
        return key, people

    def _current(self, pid: bytes) -> ProjectKey | None:
        """The key of a project's results now: its records and the identity records."""
        latest = self.latest()
        key = latest.project_key(pid)
        return None if key is None else combine_keys(key, latest.kinds_key(IDENTITY_KINDS))

    def latest(self) -> Store:
        """Where to read what the store holds now (the views, and ``commons status``'s
        counts): the ``reader`` while no answers are made
        through it (its reads then see the last commit, and never wait for the store's lock,
        which a sync holds for a whole transaction), else the store. Answers are made under
        ``_reading`` from its taking to its release, so a read begun while it was free sees
        a state at least as new as the moment it was looked at."""
        reader = self._reader
        if reader is None or self._reading.locked():
            return self.store
        return reader

    def _key(self, pid: bytes) -> ProjectKey:
        key = self._current(pid)
        if key is None:
            raise ViewError(f"no project {pid.hex()}")
        return key

    def _held(self, pid: bytes, key: ProjectKey) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(pid)
            if entry is None or entry.key != key:
                return None
            self._entries.move_to_end(pid)
            return entry

    def _answers(self, pid: bytes, made: Callable[[Answers], bool] | None = None) -> Answers:
        """The project's answers for its current records, or (see the class) recent answers
        for which ``made`` says the answer asked for is made already."""
        asked = self._clock()
        recent = self._recent(pid, asked)
        # Not a fold on the API's event loop: its answers are computed, not looked up.
        if (
            recent is not None
            and made is not None
            and made(recent.answers)
            and (isinstance(recent.answers, Tallied) or not _AT_HAND.get())
        ):
            return recent.answers
        _store_needed()
        key = self._key(pid)
        entry = self._held(pid, key)
        if entry is not None:
            with self._lock:  # current when ``asked``: a later call may answer from it
                entry.checked = max(entry.checked, asked)
            return entry.answers
        if recent is None and made is not None and key[0] >= BIG_RECORDS:
            # Big by the store's own count, though not yet by what ``note_stored`` heard (a
            # commit is read here before the node's listener hears of it): answered as big.
            recent = self._recent(pid, asked, grown_to=key[0])
            if recent is not None and made(recent.answers):
                return recent.answers
        # One thread loads or folds a project at a time: a call that arrives while the
        # background warming (or another call) is at it waits for that result instead of
        # doing the same work beside it.
        with self._project_lock(pid):
            key = self._key(pid)
            entry = self._held(pid, key)
            if entry is None:
                with self._lock:
                    entry = self._entries.get(pid)
                if entry is not None and entry.checked <= asked:
                    entry = None  # else begun after this call: as new as a build now
            if entry is not None:
                return entry.answers
            return self._build(pid, key)

    def _recent(self, pid: bytes, now: float, *, grown_to: int = 0) -> _Entry | None:
        """The results held of a big project that a call may answer from without reading
        the store (the class says when), or None. ``grown_to``: the project's key counts
        this many records now (read off the store)."""
        if self._stale_seconds <= 0:
            return None
        with self._lock:
            entry = self._entries.get(pid)
        if entry is None or now - entry.checked > self._stale_seconds:
            return None
        with self._lock:
            grown = self._heard.get(pid, 0) - entry.heard
        size = max(entry.key[0] + grown, grown_to)
        if entry.cost < WAIT_BELOW and size < BIG_RECORDS:
            return None
        return entry

    def _remade(self, pid: bytes, key: ProjectKey) -> bool:
        """Whether a project's answers are made again while calls answer from its recent
        ones (held, and big: they took ``WAIT_BELOW`` seconds or more to make, or the
        project holds ``BIG_RECORDS`` records); the ``maker`` makes those."""
        with self._lock:
            entry = self._entries.get(pid)
        return entry is not None and (key[0] >= BIG_RECORDS or entry.cost >= WAIT_BELOW)

    def _build(
        self, pid: bytes, key: ProjectKey, *, prepare: bool = False, apart: bool = False
    ) -> Answers:
        """Answers for ``key`` from the tallies while keys are their own persons, else from a
        fold (under the project's lock). ``prepare``: make what is
        asked first (the default ledger page, the shares, the summary) before they are
        shown; ``apart``: by the ``maker`` when there is one."""
        begun = self._begin()
        people_key, people = self._people_now()
        if people.trivial and self._tallies:
            persons = (people_key, people)
            if prepare and apart and self.maker is not None and self._reader is not None:
                made = self._made_apart(pid, key, persons, begun, self._reader, self.maker)
                if made is not None:
                    return made
            return self._tallied(pid, key, persons, begun, prepare=prepare)
        return self._fold(pid, key, begun)

    def _made_apart(
        self,
        pid: bytes,
        key: ProjectKey,
        persons: tuple[ProjectKey, People],
        begun: _Begun,
        reader: Store,
        maker: AnswerMaker,
    ) -> Tallied | None:
        """Answers whose prepared part the ``maker`` made (None when it could not): the
        special records are folded here first, then the maker reads a state at least as new,
        and the answers are labelled with the key read here. A call answers from the
        maker's part alone until the store holds more (recent answers answer only what is
        made), and from both only while that key is current, when both read one state."""
        people_key, people = persons
        started = time.monotonic()
        with self._reading, reader.reading():
            found = reader.project_key(pid)
            identity = reader.kinds_key(IDENTITY_KINDS)
            if found is None or identity != people_key:
                return None
            key = combine_keys(found, identity)
            answers = Tallied.build(reader, pid, people)
        if answers is None:
            return None
        made = maker.make(pid, people_key, DEFAULT_LEDGER_LIMIT + 1)
        if made is None or made[0][1] < key[1]:  # not made, or of an older state: not here
            return None
        answers.adopt(made[1])
        cost = time.monotonic() - started
        log.debug("made project %s apart in %.3f s", pid.hex(), cost)
        self._remember(pid, key, answers, cost=cost, checked=begun)
        return answers

    def _tallied(
        self,
        pid: bytes,
        key: ProjectKey,
        persons: tuple[ProjectKey, People],
        begun: _Begun,
        *,
        prepare: bool,
    ) -> Tallied:
        people_key, people = persons
        reader = self._reader
        if reader is None:
            started = time.monotonic()
            answers = Tallied.build(self.store, pid, people)
            if answers is not None and prepare:
                answers.prepare(DEFAULT_LEDGER_LIMIT + 1)
        else:
            # Every read of one making in one state of the store, labelled with that state's
            # key, and what is answered first made in it: those answers are the fold of one
            # record set however many records a sync stores meanwhile.
            with self._reading, reader.reading():
                started = time.monotonic()
                found = reader.project_key(pid)
                identity = reader.kinds_key(IDENTITY_KINDS)
                if found is not None and identity == people_key:
                    key = combine_keys(found, identity)
                answers = Tallied.build(reader, pid, people)
                if answers is not None:
                    answers.prepare(DEFAULT_LEDGER_LIMIT + 1)
        if answers is None:
            raise ViewError(f"no project {pid.hex()}")
        cost = time.monotonic() - started
        log.debug("tallied project %s in %.3f s", pid.hex(), cost)
        # Kept for ``key``, read before: records that arrived while it was read may be in it
        # too, and a newer key makes it stale (made again, or answered from as recent ones).
        self._remember(pid, key, answers, cost=cost, checked=begun)
        return answers

    def _fold(self, pid: bytes, key: ProjectKey, begun: _Begun) -> Fold:
        """Decode and fold the project (``key`` read before its records, under its lock)."""
        started = time.monotonic()
        people_key, people = self._people_now()
        genesis, records = self.store.project_records(pid)
        if genesis is None:
            raise ViewError(f"no project {pid.hex()}")
        fold = Fold(ProjectView.build(genesis, records, people))
        log.debug(
            "folded project %s: %d records in %.3f s",
            pid.hex(),
            len(records) + 1,
            time.monotonic() - started,
        )
        # Records are only ever added, so the records read are those of ``key`` or more, and
        # a count equal to a key's means exactly that key's records. A fold whose records no
        # key names (records arrived while they were read) is answered but not kept.
        held = len(records) + 1 + people_key[0]
        label: ProjectKey | None = key
        if held != key[0]:
            label = self._current(pid)
            if label is not None and held != label[0]:
                label = None
        if label is not None:
            cost = time.monotonic() - started
            self._remember(pid, label, fold, cost=cost, checked=begun)
        return fold

    def _remember(
        self,
        pid: bytes,
        key: ProjectKey,
        answers: Fold | Tallied,
        *,
        cost: float,
        checked: _Begun,
    ) -> None:
        if not self._enabled:
            return
        now = self._clock()
        with self._lock:
            if checked.generation != self._generation:
                return  # begun before records were purged: it may show them
            old = self._entries.get(pid)
            if old is not None and old.key[1] > key[1]:
                return  # a result for more records is held already
            heard = self._heard.get(pid, 0)
            self._entries[pid] = _Entry(key, answers, now, cost, checked.at, heard)
            self._entries.move_to_end(pid)
            while len(self._entries) > MAX_CACHED_VIEWS:
                self._entries.popitem(last=False)

    # ---------------------------------------------------------------------------- warming

    def warm(self, pid: bytes) -> bool:
        """Make a project's answers now (from a worker thread) unless its results for its
        current records are held in memory; True when it made them."""
        key = self._current(pid)
        if key is None or self._held(pid, key) is not None:
            return False
        with self._project_lock(pid):
            key = self._current(pid)
            if key is None or self._held(pid, key) is not None:
                return False
            started = time.monotonic()
            self._build(pid, key, prepare=True, apart=self._remade(pid, key))
            log.debug("warmed project %s in %.3f s", pid.hex(), time.monotonic() - started)
            return True

    def refresh(
        self,
        follows: Callable[[bytes], bool],
        budget: int,
        *,
        shown_only: bool = False,
        held_only: bool = False,
    ) -> list[bytes]:
        """Fold the followed projects whose results are held nowhere for their current
        records, smallest first while their records add up to at most ``budget`` (answers
        from the tallies are made whatever their records).

        For the node's background task: after a start (every followed project), and again
        after records arrived with ``shown_only``: then only the folds of projects whose
        (now stale) results are held in memory, so that a node catching up on
        projects nobody has looked at does not decode them as they grow. Answers from the
        tallies are made for every followed project (the first call about a project that
        arrives by a sync finds them made), again once ``REBUILD_PAUSE`` times what they
        took last has passed since: one project's rebuilds take at most a quarter of one
        thread, however fast records arrive; and no rebuild starts once a call has spent
        ``REFRESH_SECONDS``. Those left for later are in ``deferred``. With ``held_only``,
        only the projects whose results are held in memory are made again, from the tallies
        or not (a node whose front process answers the API's ``ledger`` and ``shares``: its own
        views are asked by the dashboard and the other calls alone). Returns the ids of the
        projects folded.
        """
        now = self._clock()  # before the keys are read: what is current holds all before it
        folded: list[bytes] = []
        identity = self.store.kinds_key(IDENTITY_KINDS)
        keys = {pid: combine_keys(key, identity) for pid, key in self.store.project_keys().items()}
        # Answers from the tallies cost per participant, not per record (0.2-0.3 s for
        # 20,000 participants): no budget for them, but a pause between two rebuilds.
        tallied = self._tallies and self.people().trivial
        self.deferred = deferred = []
        for pid, key in sorted(keys.items(), key=lambda i: (i[1], i[0])):
            if key[0] > budget and not tallied:
                break
            if not follows(pid):
                continue
            with self._lock:
                entry = self._entries.get(pid)
                if entry is not None and entry.key == key:
                    entry.checked = max(entry.checked, now)
            if entry is not None and entry.key == key:
                continue
            if entry is None and (held_only or (shown_only and not tallied)):
                continue
            resting = entry is not None and now - entry.built < REBUILD_PAUSE * entry.cost
            if tallied and (resting or self._clock() - now > REFRESH_SECONDS):
                deferred.append(pid)
                continue
            budget -= 0 if tallied else key[0]
            try:
                if self.warm(pid):
                    folded.append(pid)
            except (ViewError, StoreError) as exc:  # a call will say so when asked
                log.info("cannot fold project %s now: %s", pid.hex(), exc)
        return folded

    def refresh_changed(
        self,
        follows: Callable[[bytes], bool],
        budget: int,
        *,
        first: bool = False,
        held_only: bool = False,
    ) -> bool:
        """A running process's background step (the node's ``StoreWork``, the API's front
        process): :meth:`refresh` when records were stored since the last step, or the last
        left projects for later (its pause between two rebuilds of one), or ``first`` (every
        followed project within ``budget``; after it, those shown); then stop the views'
        process if it has idled. True when it refreshed. Raises ``StoreError``."""
        try:
            version = self.store.version()
            if not (first or version != self._refreshed_at or self.deferred):
                return False
            self._refreshed_at = version
            self.refresh(follows, budget, shown_only=not first, held_only=held_only)
            return True
        finally:
            if self.maker is not None:
                self.maker.idle()  # an idle process keeps no second one

    # ---------------------------------------------------------------------------- views

    def project_view(self, project_text: str) -> ProjectView:
        """The full fold of a project: its records decoded and folded by ``protocol.ledger``
        (never the tallies; for callers that need more than the views below)."""
        pid = self._resolve(project_text, kind="project")
        with self._project_lock(pid):
            key = self._key(pid)
            entry = self._held(pid, key)
            if entry is not None and isinstance(entry.answers, Fold):
                return entry.answers.view
            return self._fold(pid, key, self._begin()).view

    def project_list(self) -> list[dict[str, Any]]:
        _store_needed()
        out = []
        for pid in self.store.project_ids():
            item = dict(self._answers(pid, made()).list_item())
            item["followed"] = self.follow.follows(pid)
            out.append(item)
        out.sort(key=lambda p: (str(p["name"]).lower(), str(p["id"])))
        return out

    def project_show(self, project_text: str) -> dict[str, Any]:
        pid = self._resolve(project_text, kind="project")
        shown = dict(self._answers(pid, made()).show())
        shown["followed"] = self.follow.follows(pid)
        return shown

    def at_hand(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args, **kwargs)`` (a view call of this cache) if it can answer from what is
        held in memory, without reading the store or waiting for a rebuild; else None.

        For the API's event loop, which then answers a big project's summary, shares and
        prepared ledger pages without a worker thread: while a sync keeps the process busy,
        each hand-over between threads waits for the interpreter's lock."""
        token = _AT_HAND.set(True)
        try:
            return fn(*args, **kwargs)
        except _NotAtHand:
            return None
        finally:
            _AT_HAND.reset(token)

    def _followed(self, project_text: str) -> bytes:
        """The project's id; ``ViewError`` (404) when it is not held or not followed."""
        pid = self._resolve(project_text, kind="project")
        refusal = self.follow.refusal(pid)
        if refusal is not None:
            raise ViewError(refusal)
        return pid

    def ledger(
        self,
        project_text: str,
        *,
        author: str | None = None,
        type: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The first page of :meth:`ledger_page`, alone."""
        return self.ledger_page(project_text, author=author, type=type, limit=limit).entries

    def ledger_page(
        self,
        project_text: str,
        *,
        author: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> LedgerPage:
        """Live contributions newest first, ``limit`` at a time (default 1000).

        ``author`` is a peer id (the contributions its person took part in) or a handle (the
        contributions recorded on its behalf, claimed or not; ``email:ADDRESS`` is hashed as
        :func:`protocol.attest.handle_from_text` says). ``cursor`` is a previous page's
        ``next_cursor``: the full id of the last entry shown, so the next page starts after
        that entry's place in the ledger order even if it was retracted meanwhile.
        """
        pid = self._followed(project_text)
        author_key: bytes | str | None = None
        if author:
            try:
                if names_handle(author):  # the work recorded on its behalf
                    author_key = handle_from_text(author)
                else:
                    author_key = public_key_from_peer_id(author)
            except ProtocolError as exc:
                raise ViewError(exc.message, 400) from None
        if type is not None and type not in CONTRIBUTION_TYPES:
            known = ", ".join(sorted(CONTRIBUTION_TYPES))
            raise ViewError(f"type {type[:40]!r} is not one of {known}", 400)
        if limit is None:
            limit = DEFAULT_LEDGER_LIMIT
        if not 1 <= limit <= MAX_LEDGER_LIMIT:
            raise ViewError(f"limit must be 1..{MAX_LEDGER_LIMIT}", 400)
        after = None if cursor is None else self._cursor(pid, cursor)
        # One entry more than the page tells whether there is a next page.
        query = (author_key, type, limit + 1, after)
        answers = self._answers(pid, made(query))
        entries, total = answers.ledger(author_key, type, limit + 1, after)
        cursor_next = None
        if len(entries) > limit:
            del entries[limit:]
            cursor_next = entries[-1]["id"]
        body = None
        if isinstance(answers, Tallied):  # encoded once per page for these answers
            body = answers.encoded(query, lambda: json_body(entries))
        return LedgerPage(entries, total, cursor_next, body)

    def _cursor(self, pid: bytes, cursor: str) -> tuple[int, bytes]:
        """The ``(ts, id)`` a cursor stands for: a held contribution of this project."""
        _store_needed()
        try:
            rid = bytes.fromhex(cursor)
        except ValueError:
            rid = b""
        record = self.store.get(rid) if len(rid) == 32 else None
        if record is None or record.project != pid or record.kind != "contribution":
            raise ViewError(f"cursor {cursor[:70]!r} is not a contribution of this project", 400)
        return (record.ts, record.id)

    def shares(self, project_text: str) -> list[dict[str, Any]]:
        return self._answers(self._followed(project_text), made()).shares()

    def shares_body(self, project_text: str) -> bytes:
        """:meth:`shares` as the API sends it (:func:`json_body`); encoded once per record set
        when the answers come from the tallies."""
        answers = self._answers(self._followed(project_text), made())
        if isinstance(answers, Tallied):
            return answers.shares_body()
        return json_body(answers.shares())

    def claims(self, project_text: str) -> list[dict[str, Any]]:
        """The project's claims with their status (``commons claims``). Claims are few and
        settled by the full fold, so this reads the fold, never the tallies; a project without
        any claim (most of them) answers at once, without folding."""
        pid = self._followed(project_text)
        _store_needed()
        if not self.store.latest(("claim",), project=pid, limit=1):
            return []
        return self.project_view(pid.hex()).claim_listing()

    def contribution_months(
        self, project_text: str, month_start: Callable[[int], tuple[str, int]], most: int
    ) -> list[tuple[str, int]]:
        """Live contributions per month of the last ``most`` months that have any, oldest
        first (:func:`node.views.months.month_counts`): the dashboard's contributions chart.
        From the tallies this counts off the store's index by time, reading no record."""
        answers = self._answers(self._followed(project_text), made())
        return month_counts(answers.times(), month_start, most)

    def record(self, record_text: str) -> Record:
        _store_needed()
        rid = self._resolve(record_text)
        record = self.store.get(rid)
        if record is None:  # pragma: no cover - resolve found it
            raise ViewError(f"no record {record_text}")
        return record
