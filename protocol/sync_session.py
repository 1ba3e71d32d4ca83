"""A ``/commons/sync/1`` session as a state machine, sans-IO: frames in, frames and events out.

:mod:`protocol.sync` defines the frames, :mod:`protocol.negentropy` the set reconciliation;
this module decides what a session does with them, for either role, with no I/O and no clock.
A shell (``node.sync.syncer``) moves frames between a stream and a session and answers the
session's questions from its store, the way h11 is driven::

    session = ClientSession(hello)               # or ServerSession(hello)
    while True:
        for frame in session.frames_to_send():  # encode_frame() and write each
            ...
        event = session.next_event()
        if event is NEED_FRAME:                  # read the peer's next frame
            session.receive_frame(frame)
        elif isinstance(event, NeedItems):       # the scope's negentropy.Storage
            session.give_items(event.scope, storage)
        elif isinstance(event, NeedRecords):     # the held records among event.ids
            session.give_records(raws)
        elif isinstance(event, RecordsReceived):  # validate and store them
            session.records_ingested(new=..., refused=[...])
        elif isinstance(event, Done):
            break

``Reconciled`` (client) and ``ItemsReleased`` (server) need no answer: the item lists the
session was given are no longer used. A client's ``RecordsReceived`` with ``more`` set comes
after the next ``want`` was queued, so the shell may read the next ``recs`` while it validates
these records; its answer may report the refusals of any records finished meanwhile (a
pipeline), and must report all of them when ``more`` is false. The item lists stay the
shell's, to cache between sessions, as may be a ``memo`` of negentropy messages (:class:`Memo`).

Errors, as in h11: a frame that breaks the protocol raises :class:`~protocol.sync.SyncError`
or :class:`~protocol.errors.NegentropyError` (both ``RemoteProtocolError``); the shell calling
a method out of turn raises ``LocalProtocolError``. Either way the session is then in
``State.ERROR`` for good, and ``frames_to_send()`` holds the ``error`` frame for the peer, if
it should get one. The shell reports failures it found itself (a timeout, a closed or broken
stream, a frame that would not decode) with :meth:`abort` or :meth:`send_failed`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from protocol import negentropy
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.sync import (
    MAX_WANT,
    Ack,
    Bye,
    ErrorFrame,
    Frame,
    Hello,
    Neg,
    Push,
    Recs,
    SyncError,
    Want,
    pack_records,
    shared_scopes,
)
from protocol.sync_terms import (
    CLIENT_TRANSITIONS,
    DEFAULT_LIMITS,
    FIRST_WANT,
    INITIATE_KEY,
    INNOCENT_CODES,
    MAX_ROUNDS,
    NEED_FRAME,
    NEG_FRAME_BUDGET,
    NEG_FRAME_LIMIT,
    NEG_ITEM_OVERHEAD,
    NEG_MAX_SCOPES,
    NOTHING_DIFFERS,
    SERVER_TRANSITIONS,
    SILENT_CODES,
    TOLERATED_REFUSALS,
    Done,
    Event,
    ItemsReleased,
    Memo,
    NeedItems,
    NeedRecords,
    NegLimits,
    Reconciled,
    RecordsReceived,
    State,
    Wait,
    hard_refusals,
    is_misbehaviour,
    reply_limit,
)
from protocol.validation import META_SCOPE

HELLO, ITEMS, NEG, FETCH, INGEST, RECORDS, PUSH, READY, DONE, ERROR = State

__all__ = [
    "CLIENT_TRANSITIONS",
    "DEFAULT_LIMITS",
    "FIRST_WANT",
    "INNOCENT_CODES",
    "MAX_ROUNDS",
    "NEED_FRAME",
    "NEG_FRAME_BUDGET",
    "NEG_FRAME_LIMIT",
    "NEG_ITEM_OVERHEAD",
    "NEG_MAX_SCOPES",
    "NOTHING_DIFFERS",
    "SERVER_TRANSITIONS",
    "TOLERATED_REFUSALS",
    "ClientSession",
    "Done",
    "Event",
    "ItemsReleased",
    "Memo",
    "NeedItems",
    "NeedRecords",
    "NegLimits",
    "Reconciled",
    "RecordsReceived",
    "ServerSession",
    "State",
    "fetch_order",
    "hard_refusals",
    "is_misbehaviour",
    "next_want",
    "reply_limit",
]

_AWAITING_FRAME: Final = frozenset({HELLO, NEG, FETCH, PUSH, READY})
_KINDS: Final[Mapping[type, str]] = {
    Hello: "hello",
    Neg: "neg",
    Want: "want",
    Recs: "recs",
    Push: "push",
    Ack: "ack",
    Bye: "bye",
    ErrorFrame: "error",
}


_DONE: Final = Done()


# --- The sessions ----------------------------------------------------------------------------


class _Session:
    """What both roles share: the table check, the outbox, the event queue, the error state."""

    _table: Mapping[State, Mapping[str, tuple[State, ...]]]
    # Each role's handlers, called only for inputs its table allows in the current state;
    # each returns the state the input leads to.
    _on_frame: Callable[[Frame], State]
    _on_items: Callable[[str, negentropy.Storage], State]
    _on_records: Callable[[list[bytes]], State]
    _on_ingested: Callable[[int, Sequence[str]], State]
    _unexpected: Callable[[Frame], str]  # why a frame the table does not list is wrong

    def __init__(self, hello: Hello, limits: NegLimits, memo: Memo | None) -> None:
        if not isinstance(hello, Hello) or not isinstance(limits, NegLimits):
            raise LocalProtocolError("bad-argument", "a session needs our Hello and NegLimits")
        self.state = HELLO
        self.error: ProtocolError | None = None
        self.limits = limits
        #: Shared scopes, negentropy rounds, and bytes of negentropy messages both ways.
        self.scopes = 0
        self.rounds = 0
        self.neg_bytes = 0
        self._ours = hello
        self._memo = memo
        self._outbox: list[Frame] = []
        self._events: deque[Event] = deque()
        self._sessions: dict[str, negentropy.Negentropy] = {}
        self._wanted: set[str] = set()  # scopes whose items were asked for, not yet given

    # -- what the shell reads --

    def frames_to_send(self) -> list[Frame]:
        """The frames to write to the peer, in order (each to be encoded by the shell)."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | Wait:
        """The next event, ``NEED_FRAME`` when the session waits for the peer, or ``Done()``
        for as long as it has ended well."""
        if self._events:
            return self._events.popleft()
        if self.state is ERROR:
            raise self._errored()
        if self.state in _AWAITING_FRAME:
            return NEED_FRAME
        if self.state is DONE:
            return _DONE
        raise self._fail(
            LocalProtocolError("awaiting-answer", f"the session waits for an answer ({self.state})")
        )

    # -- what the shell feeds --

    def receive_frame(self, frame: Frame) -> None:
        """Take the peer's next frame. Raises the remote error if it breaks the protocol."""
        kind = _KINDS.get(type(frame))
        if self.state is ERROR:
            raise self._errored()
        if kind is None:
            raise self._fail(LocalProtocolError("bad-argument", f"not a frame: {frame!r:.80}"))
        if self.state not in _AWAITING_FRAME:
            raise self._fail(
                LocalProtocolError("not-waiting", f"a {kind} frame fed in state {self.state}")
            )
        if isinstance(frame, ErrorFrame):
            raise self._fail(
                SyncError("peer-error", f"peer reported {frame.code}: {frame.message}")
            )
        if kind not in self._table[self.state]:
            raise self._fail(SyncError("unexpected-frame", self._unexpected(frame)))
        self._step(kind, lambda: self._on_frame(frame))

    def give_items(self, scope: str, storage: negentropy.Storage) -> None:
        """Answer ``NeedItems(scope)`` with the scope's items."""
        self._answer("give_items", lambda: self._on_items(scope, storage))

    def give_records(self, raws: Sequence[bytes]) -> None:
        """Answer ``NeedRecords`` with the held records among its ids (unknown ones left out)."""
        self._answer("give_records", lambda: self._on_records(list(raws)))

    def records_ingested(self, *, new: int, refused: Sequence[str] = ()) -> None:
        """Answer ``RecordsReceived``: how many records were new, and the refusal reasons
        (``"<code>: <message>"``). Raises ``SyncError("invalid-record")`` if any of those
        ends the session (all but ``TOLERATED_REFUSALS``)."""
        self._answer("records_ingested", lambda: self._on_ingested(new, refused))

    def abort(self, error: ProtocolError) -> None:
        """End the session for a failure the shell found (the peer's silence or closing, a
        frame that would not decode or encode). ``frames_to_send()`` then holds the error
        frame for the peer, if it should get one. Nothing happens to an errored session."""
        if self.state is not ERROR:
            self._fail(error)

    def send_failed(self) -> None:
        """The shell could not write: the session ends with nothing more to send."""
        if self.state is not ERROR:
            self._fail(SyncError("closed", "the sync stream broke while writing"))
        self._outbox.clear()

    # -- machinery --

    def _answer(self, kind: str, run: Callable[[], State]) -> None:
        if self.state is ERROR:
            raise self._errored()
        if kind not in self._table[self.state]:
            raise self._fail(LocalProtocolError("not-asked", f"{kind} in state {self.state}"))
        self._step(kind, run)

    def _step(self, kind: str, run: Callable[[], State]) -> None:
        allowed = self._table[self.state][kind]
        try:
            new = run()
        except ProtocolError as exc:
            self._fail(exc)
            raise
        assert new in allowed, (self.state, kind, new)
        self.state = new

    def _fail(self, error: ProtocolError) -> ProtocolError:
        """Enter ERROR for good; queue the error frame the peer should get. Returns ``error``
        for the caller to raise."""
        self.state = ERROR
        self.error = error
        self._outbox.clear()
        self._events.clear()
        self._sessions.clear()
        if isinstance(error, RemoteProtocolError) and error.code not in SILENT_CODES:
            self._outbox.append(ErrorFrame(code=error.code, message=error.message))
        return error

    def _errored(self) -> LocalProtocolError:
        assert self.error is not None
        return LocalProtocolError("errored", f"the session failed earlier ({self.error.code})")

    def _release(self) -> None:
        """Drop the negentropy sessions, and with them the item lists they read."""
        self._sessions.clear()

    def _negentropy(self, scope: str, storage: negentropy.Storage, limit: int) -> None:
        if scope not in self._wanted:
            raise LocalProtocolError("not-asked", f"items of {scope!r:.80} were not asked for")
        self._wanted.discard(scope)
        self._sessions[scope] = negentropy.Negentropy(storage, frame_size_limit=limit)

    def _want_items(self, scope: str) -> None:
        self._wanted.add(scope)
        self._events.append(NeedItems(scope=scope))

    def _check_refusals(self, new: int, refused: Sequence[str], most: int | None) -> None:
        if type(new) is not int or new < 0 or (most is not None and new > most):
            raise LocalProtocolError("bad-argument", f"{new!r} new records of {most}")
        hard = hard_refusals(refused)
        if hard:
            raise SyncError("invalid-record", f"peer sent invalid records: {hard[0]}")


def fetch_order(needs: Mapping[str, Sequence[bytes]]) -> list[bytes]:
    """The ids a client fetches, in order, each once, from the ids each scope's
    reconciliation found the peer holds and it lacks.

    The ``meta`` scope's come first: projects, their updates and identity records give the
    rest their meaning, and a catching-up node's views can show a project while it is small
    rather than meet it big (an imported history's contributions are older than its project,
    so by time they would come first). Then each scope's, in scope order.

    A negentropy session reports an id once, so only an id two scopes list (a peer listing
    one id in both) can repeat. The ids of every scope but the biggest project's are
    gathered in a set and the biggest is read against it: at a million ids a set or dict of
    them all would cost more memory than the ids themselves, at the peak of the session.
    """
    scopes = sorted(needs, key=lambda scope: (scope != META_SCOPE, scope))
    if len(scopes) == 1:
        only = needs[scopes[0]]
        return only if isinstance(only, list) else list(only)
    projects = [scope for scope in scopes if scope != META_SCOPE]  # meta's all come first
    biggest = max(projects, key=lambda scope: len(needs[scope]), default=None)
    others = {i for scope in scopes if scope != biggest for i in needs[scope]}
    queue: list[bytes] = []
    listed: set[bytes] = set()  # of ``others``: those already in the queue
    for scope in scopes:
        if scope == biggest:
            queue += [i for i in needs[scope] if i not in others]
            continue
        for i in needs[scope]:
            if i not in listed:
                listed.add(i)
                queue.append(i)
    return queue


def next_want(asked: int, returned: int) -> int:
    """How many ids to ask for after a ``want`` of ``asked`` ids brought ``returned`` records.

    A server reads every record a ``want`` names and sends those that fit one frame: asked
    for 4096 records of 443 bytes, it read 4096 to send about 2,360, and read the other 1,736
    again for the next ``want``, so a catch-up cost it 1.7 reads a record. A frame that came
    back short of the ask was full (or the peer withheld some), so the next ask is what it
    held and an eighth more, for records of other sizes; a frame that brought everything
    asked lets the next ask ``MAX_WANT``. Never fewer than ``FIRST_WANT``: a peer withholding
    records cannot make the transfer crawl.
    """
    if returned >= asked or returned == 0:
        return MAX_WANT
    return max(FIRST_WANT, min(MAX_WANT, returned + returned // 8))


class ClientSession(_Session):
    """The initiator: hello, negentropy rounds over every shared scope at once (as many scopes
    a ``neg`` frame as fit), ``want`` for what it lacks, ``push`` for what the peer lacks,
    ``bye``. Counts what it moved: ``received`` (new records stored, as the shell reports
    them) and ``pushed`` (records the peer acknowledged)."""

    _table = CLIENT_TRANSITIONS
    _EXPECTED: Final = {HELLO: "Hello", NEG: "Neg", FETCH: "Recs", PUSH: "Ack"}

    def __init__(
        self, hello: Hello, *, limits: NegLimits = DEFAULT_LIMITS, memo: Memo | None = None
    ) -> None:
        super().__init__(hello, limits, memo)
        self.received = 0
        self.pushed = 0
        self._scope_list: list[str] = []
        self._index: dict[str, int] = {}
        self._pending: dict[str, bytes] = {}  # the next message of each unfinished scope
        self._asked: list[str] = []  # the scopes of the neg frame in flight
        self._stash: Neg | None = None  # a reply waiting for item lists
        self._have: list[bytes] = []
        self._needs: dict[str, list[bytes]] = {}  # by scope: what the peer holds and we lack
        self._queue: list[bytes] = []  # ids still to fetch; the ones asked for first
        self._ask = 0  # how many ids the want in flight asked for
        self._more = False  # whether that want was sent after the last recs
        self._next_push = 0  # the first id of ``_have`` not yet asked of the shell
        self._raws: list[bytes] = []  # records to push, not yet sent
        self._in_flight = 0  # records in the push awaiting its ack
        self._outbox.append(hello)

    @property
    def needed(self) -> int:
        """Records the peer holds and this side lacks, as far as the rounds so far tell (a
        lower bound until :class:`Reconciled`, the ids still to fetch after it): a shell
        may prepare for a big fetch before the last round."""
        return sum(map(len, self._needs.values())) + len(self._queue)

    def _unexpected(self, frame: Frame) -> str:
        return f"expected {self._EXPECTED.get(self.state)}, got {frame!r:.300}"

    def _on_frame(self, frame: Frame) -> State:
        if isinstance(frame, Hello):
            return self._on_hello(frame)
        if isinstance(frame, Neg):
            return self._on_neg(frame)
        if isinstance(frame, Recs):
            return self._on_recs(frame)
        return self._on_ack()

    def _on_hello(self, theirs: Hello) -> State:
        self._scope_list = shared_scopes(self._ours, theirs)
        self._index = {scope: number for number, scope in enumerate(self._scope_list)}
        self.scopes = len(self._scope_list)
        for scope in self._scope_list:
            # An unchanged scope's first message is remembered: no item list is needed
            # unless the peer's reply shows a difference.
            first = self._memo.get(scope, INITIATE_KEY) if self._memo is not None else None
            if first is None:
                self._want_items(scope)
                first = b""  # filled in by give_items, in this position
            self._pending[scope] = first
        return ITEMS if self._wanted else self._send_round()

    def _on_items(self, scope: str, storage: negentropy.Storage) -> State:
        self._negentropy(scope, storage, self.limits.frame_limit)
        first = self._sessions[scope].initiate()
        if self._memo is not None:
            self._memo.put(scope, INITIATE_KEY, first)
        if self._stash is None:
            self._pending[scope] = first
        if self._wanted:
            return ITEMS
        if self._stash is None:
            return self._send_round()
        reply, self._stash = self._stash, None
        return self._absorb(reply)

    def _send_round(self) -> State:
        """Send as many pending messages as fit one neg frame, in order."""
        limits = self.limits
        batch: dict[int, bytes] = {}
        asked: list[str] = []
        size = 0
        for scope in list(self._pending):
            message = self._pending[scope]
            if batch and (
                size + len(message) + NEG_ITEM_OVERHEAD > limits.frame_budget
                or len(batch) >= limits.max_scopes
            ):
                break
            del self._pending[scope]
            batch[self._index[scope]] = message
            asked.append(scope)
            size += len(message) + NEG_ITEM_OVERHEAD
            self.neg_bytes += len(message)
        self._asked = asked
        self._outbox.append(Neg(messages=batch))
        return NEG

    def _on_neg(self, reply: Neg) -> State:
        self.rounds += 1
        if set(reply.messages) != {self._index[scope] for scope in self._asked}:
            raise SyncError("bad-frame", "the neg reply does not answer the scopes asked")
        for number, message in reply.messages.items():
            self.neg_bytes += len(message)
            scope = self._scope_list[number]
            if scope not in self._sessions and message != NOTHING_DIFFERS:
                self._want_items(scope)  # its first message came from the memo
        if self._wanted:
            self._stash = reply
            return ITEMS
        return self._absorb(reply)

    def _absorb(self, reply: Neg) -> State:
        """Feed each scope's reply to its session; then the next round, or the transfer."""
        self._reconcile(reply)
        if self._pending:
            return self._send_round()
        self._release()
        needs, self._needs = self._needs, {}
        self._queue = fetch_order(needs)
        del needs
        self._events.append(Reconciled(have=len(self._have), need=len(self._queue)))
        if self._queue:
            return self._send_want(FIRST_WANT)
        return self._push_next()

    def _reconcile(self, reply: Neg) -> None:
        """Feed each scope's reply to its session, gathering have and need (a method of its
        own so that no session outlives it in a local variable once released)."""
        for number, message in reply.messages.items():
            scope = self._scope_list[number]
            session = self._sessions.get(scope)
            if session is None:
                continue  # NOTHING_DIFFERS: the peer holds exactly what we hold
            next_message = session.reconcile(message)
            have, need = session.drain()
            self._have += have
            if need:
                self._needs.setdefault(scope, []).extend(need)
            if next_message is not None:
                self._pending[scope] = next_message

    def _send_want(self, count: int) -> State:
        ask = self._queue[:count]
        self._ask = len(ask)
        self._outbox.append(Want(ids=tuple(ask)))
        return FETCH

    def _on_recs(self, reply: Recs) -> State:
        asked = self._queue[: self._ask]
        if not reply.records:
            # The peer has none of what it advertised: drop these ids, go on.
            del self._queue[: self._ask]
        else:
            returned = {hashlib.sha256(raw).digest() for raw in reply.records}
            if not returned <= set(asked):
                raise SyncError("bad-frame", "the peer answered want with records not asked for")
            # Asked but not sent (the frame was full): asked again first.
            self._queue[: self._ask] = [i for i in asked if i not in returned]
        self._more = bool(self._queue)
        if self._more:
            self._send_want(next_want(self._ask, len(reply.records)))
        self._events.append(RecordsReceived(records=reply.records, more=self._more))
        return INGEST

    def _on_ingested(self, new: int, refused: Sequence[str]) -> State:
        # A pipelining shell may report on records of earlier frames too: no upper bound.
        self._check_refusals(new, refused, None)
        self.received += new
        return FETCH if self._more else self._push_next()

    def _push_next(self) -> State:
        """Ask the shell for the next ``MAX_WANT`` records the peer lacks; ``bye`` after the
        last."""
        start = self._next_push
        if start >= len(self._have):
            self._have = []
            self._outbox.append(Bye())
            return DONE
        self._next_push = start + MAX_WANT
        self._events.append(NeedRecords(ids=tuple(self._have[start : self._next_push])))
        return RECORDS

    def _on_records(self, raws: list[bytes]) -> State:
        self._raws = raws
        return self._send_push()

    def _send_push(self) -> State:
        if not self._raws:
            return self._push_next()
        taken, self._in_flight = pack_records(self._raws)
        del self._raws[: self._in_flight]
        self._outbox.append(Push(records=tuple(taken)))
        return PUSH

    def _on_ack(self) -> State:
        self.pushed += self._in_flight
        return self._send_push()


class ServerSession(_Session):
    """The responder: answers hello, each ``neg`` from its item lists (at most ``MAX_ROUNDS``
    of them, of at most ``max_scopes`` scopes each), ``want`` with records, ``push`` with
    ``ack`` once the shell stored what validated; ends at ``bye``."""

    _table = SERVER_TRANSITIONS

    def __init__(
        self, hello: Hello, *, limits: NegLimits = DEFAULT_LIMITS, memo: Memo | None = None
    ) -> None:
        super().__init__(hello, limits, memo)
        self._allowed: list[str] = []
        self._asked: Neg | None = None  # the neg frame being answered
        self._limit = 0
        self._replies: dict[int, bytes] = {}
        self._keys: dict[int, bytes] = {}
        self._pushed = 0  # records in the push being ingested

    def _unexpected(self, frame: Frame) -> str:
        if self.state is HELLO:
            return f"expected Hello, got {frame!r:.300}"
        return f"{type(frame).__name__} from a client"

    def _on_frame(self, frame: Frame) -> State:
        if isinstance(frame, Hello):
            self._allowed = shared_scopes(self._ours, frame)
            self.scopes = len(self._allowed)
            self._outbox.append(self._ours)
            return READY
        if not isinstance(frame, Neg) and self._sessions:
            # Reconciliation is over (want and push come after it): the item lists are not
            # kept through the transfer.
            self._release()
            self._events.append(ItemsReleased())
        if isinstance(frame, Neg):
            return self._on_neg(frame)
        if isinstance(frame, Want):
            self._events.append(NeedRecords(ids=frame.ids))
            return RECORDS
        if isinstance(frame, Push):
            self._pushed = len(frame.records)
            self._events.append(RecordsReceived(records=frame.records))
            return INGEST
        return DONE  # bye

    def _on_neg(self, frame: Neg) -> State:
        self.rounds += 1
        if self.rounds > MAX_ROUNDS:
            raise SyncError("too-many", f"more than {MAX_ROUNDS} negentropy rounds")
        if len(frame.messages) > self.limits.max_scopes:
            raise SyncError(
                "too-many",
                f"{len(frame.messages)} scopes in a neg frame (at most "
                f"{self.limits.max_scopes}, so that the replies fit one frame)",
            )
        for number in frame.messages:
            if number >= len(self._allowed):
                raise SyncError("bad-scope", f"no shared scope number {number}")
        limit = reply_limit(len(frame.messages), self.limits)
        self._asked, self._limit, self._replies, self._keys = frame, limit, {}, {}
        memo = self._memo
        for number, message in frame.messages.items():
            self.neg_bytes += len(message)
            scope = self._allowed[number]
            if memo is not None:
                # A reply depends only on our items, the message and the limit: an unchanged
                # scope answers a message it has answered before from memory.
                key = hashlib.sha256(message + limit.to_bytes(4, "big")).digest()
                reply = memo.get(scope, key)
                if reply is not None:
                    self._replies[number] = reply
                    continue
                self._keys[number] = key
            if scope not in self._sessions and scope not in self._wanted:
                self._want_items(scope)
        return ITEMS if self._wanted else self._answer_neg()

    def _on_items(self, scope: str, storage: negentropy.Storage) -> State:
        self._negentropy(scope, storage, self._limit)
        return ITEMS if self._wanted else self._answer_neg()

    def _answer_neg(self) -> State:
        frame, replies = self._asked, self._replies
        assert frame is not None
        for number, message in frame.messages.items():
            if number in replies:
                continue
            scope = self._allowed[number]
            session = self._sessions[scope]
            session.frame_size_limit = self._limit
            reply = session.reconcile(message) or b""
            if self._memo is not None:
                self._memo.put(scope, self._keys[number], reply)
            replies[number] = reply
        self.neg_bytes += sum(map(len, replies.values()))
        self._outbox.append(Neg(messages={number: replies[number] for number in frame.messages}))
        self._asked, self._replies, self._keys = None, {}, {}
        return READY

    def _on_records(self, raws: list[bytes]) -> State:
        taken, _ = pack_records(raws) if raws else ([], 0)
        self._outbox.append(Recs(records=tuple(taken)))
        return READY

    def _on_ingested(self, new: int, refused: Sequence[str]) -> State:
        self._check_refusals(new, refused, self._pushed)
        self._outbox.append(Ack(new=new))
        return READY
