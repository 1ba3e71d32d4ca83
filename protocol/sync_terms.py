"""The terms of a ``/commons/sync/1`` session: its limits, its states and their transitions,
and the events it gives its shell to answer.

:mod:`protocol.sync_session` holds the sessions themselves and re-exports every public name
here, so either module may be imported; a shell usually needs only the session module.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias

from protocol import negentropy
from protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocol.sync import MAX_FRAME, MAX_RECORDS_PER_FRAME, MAX_WANT

__all__ = [
    "CLIENT_TRANSITIONS",
    "DEFAULT_LIMITS",
    "FIRST_WANT",
    "INITIATE_KEY",
    "INNOCENT_CODES",
    "MAX_ROUNDS",
    "NEED_FRAME",
    "NEG_FRAME_BUDGET",
    "NEG_FRAME_LIMIT",
    "NEG_ITEM_OVERHEAD",
    "NEG_MAX_SCOPES",
    "NOTHING_DIFFERS",
    "SERVER_TRANSITIONS",
    "SILENT_CODES",
    "TOLERATED_REFUSALS",
    "Done",
    "Event",
    "ItemsReleased",
    "Memo",
    "NeedItems",
    "NeedRecords",
    "NegLimits",
    "Reconciled",
    "RecordsReceived",
    "State",
    "Wait",
    "hard_refusals",
    "is_misbehaviour",
    "reply_limit",
]

# --- Constants -------------------------------------------------------------------------------

#: Room kept in a neg frame for the map keys and headers.
NEG_FRAME_BUDGET: Final = MAX_FRAME - 16 * 1024
#: Bytes a scope's entry in a ``neg`` frame costs beside its message (pair, index, bin head).
NEG_ITEM_OVERHEAD: Final = 16
#: The largest negentropy message of one scope (the spec's frameSizeLimit): a whole frame.
NEG_FRAME_LIMIT: Final = NEG_FRAME_BUDGET - NEG_ITEM_OVERHEAD
#: The most scopes one ``neg`` frame asks about: each reply may then still be 4 KiB (the
#: smallest frameSizeLimit negentropy allows) and all of them fit one frame.
NEG_MAX_SCOPES: Final = NEG_FRAME_BUDGET // (negentropy.MIN_FRAME_SIZE_LIMIT + NEG_ITEM_OVERHEAD)
#: Ids asked for by a session's first ``want`` (later ones ask for about what the last frame
#: held, see :func:`next_want`): the client validates one frame while the next is on its way,
#: so a small first one starts that sooner.
FIRST_WANT: Final = 512
#: A responder serves at most this many negentropy rounds per session.
MAX_ROUNDS: Final = 64
#: Refusals of a synced record that do not end the session: a record more than ten minutes
#: ahead of our clock may have an author whose clock is wrong while the peer is honest, and
#: may be accepted later; and text characters the format did not always refuse (nodes that
#: accepted such records before the character rule still hold and offer them, honestly).
TOLERATED_REFUSALS: Final = (
    "future-timestamp",
    "control-char:",
    "line-break:",
    "bidi-control:",
    # The receiver's own policy (a blocked project or author, a full store): the record is
    # valid and the peer, holding it under its own policy, honest.
    "blocked:",
    "over-quota:",
)
#: Error codes that end a session without blaming the peer for misbehaving.
INNOCENT_CODES: Final = frozenset({"timeout", "closed", "peer-error"})
#: Error codes the peer is not told about: it closed the stream, or it reported the error.
SILENT_CODES: Final = frozenset({"closed", "peer-error"})
#: The reply of a responder that holds exactly the initiator's items: the version byte alone.
NOTHING_DIFFERS: Final = bytes((negentropy.PROTOCOL_VERSION,))
#: The memo key of an initiator's first message (a responder's keys are 32-byte digests).
INITIATE_KEY: Final = b""


@dataclass(frozen=True, kw_only=True, slots=True)
class NegLimits:
    """How much of a ``neg`` frame the negentropy messages may fill (both roles must agree on
    nothing here: these bound what this side sends). The defaults fill a 1 MiB frame; a shell
    may shrink them (a test does, so that small sets already need shared frames)."""

    frame_budget: int = NEG_FRAME_BUDGET
    frame_limit: int = NEG_FRAME_LIMIT
    max_scopes: int = NEG_MAX_SCOPES

    def __post_init__(self) -> None:
        floor = negentropy.MIN_FRAME_SIZE_LIMIT
        if not (
            0 < self.frame_budget <= MAX_FRAME
            and floor <= self.frame_limit <= self.frame_budget - NEG_ITEM_OVERHEAD
            and self.max_scopes > 0
            and self.frame_budget // self.max_scopes - NEG_ITEM_OVERHEAD >= floor
        ):
            raise LocalProtocolError("bad-limits", f"inconsistent neg frame limits: {self}")


#: The limits of a session that is given none.
DEFAULT_LIMITS: Final = NegLimits()


def reply_limit(scopes: int, limits: NegLimits = DEFAULT_LIMITS) -> int:
    """The frameSizeLimit of each reply in a ``neg`` answer to ``scopes`` scopes.

    The replies share one frame: with one scope the reply may fill it (an empty node then
    receives 100,000 ids in 4 rounds rather than 13 of 256 KiB), with many each gets its
    share. ``max_scopes`` keeps every share at least negentropy's minimum.
    """
    share = limits.frame_budget // max(1, scopes) - NEG_ITEM_OVERHEAD
    return max(negentropy.MIN_FRAME_SIZE_LIMIT, min(limits.frame_limit, share))


def hard_refusals(reasons: Iterable[str]) -> list[str]:
    """The refusals among ``reasons`` (each ``"<code>: <message>"``) that end a session."""
    return [reason for reason in reasons if not reason.startswith(TOLERATED_REFUSALS)]


def is_misbehaviour(error: ProtocolError) -> bool:
    """Whether ``error`` shows the peer broke the protocol (not that it timed out or left)."""
    return isinstance(error, RemoteProtocolError) and error.code not in INNOCENT_CODES


class Memo(Protocol):
    """Negentropy messages the shell remembers for a scope while its items do not change: a
    responder's reply is a function of its items, the message and the limit (keyed by their
    digest), an initiator's first message of its items alone (``INITIATE_KEY``)."""

    def get(self, scope: str, key: bytes) -> bytes | None: ...

    def put(self, scope: str, key: bytes, message: bytes) -> None: ...


# --- States and transitions ------------------------------------------------------------------


class State(enum.Enum):
    HELLO = "hello"  # waiting for the peer's hello
    ITEMS = "items"  # waiting for the item lists asked for with NeedItems
    NEG = "neg"  # client: a neg frame is out, waiting for the reply
    FETCH = "fetch"  # client: a want is out, waiting for recs
    INGEST = "ingest"  # waiting for records_ingested() about RecordsReceived
    RECORDS = "records"  # waiting for the records asked for with NeedRecords
    PUSH = "push"  # client: a push is out, waiting for ack
    READY = "ready"  # server: waiting for the client's next request
    DONE = "done"  # bye sent (client) or received (server)
    ERROR = "error"  # final: something failed


HELLO, ITEMS, NEG, FETCH, INGEST, RECORDS, PUSH, READY, DONE, ERROR = State

# Every transition, as {state: {input: states it may lead to}}. Inputs are the peer's frames
# (named as on the wire) and the shell's answers (named by their method). The rules:
#
# 1. Lock-step: the client sends one frame, the server answers it with exactly one, so a
#    session waits either for one frame from the peer (HELLO, NEG, FETCH, PUSH, READY) or for
#    one answer from the shell (ITEMS, RECORDS, INGEST), never both.
# 2. A frame the table does not list for the state it arrives in is the peer's error:
#    ``error`` there ends the session as ``peer-error``, anything else as ``unexpected-frame``.
#    A frame fed while the session waits for an answer, or an answer it did not ask for, is
#    the shell's error (LocalProtocolError).
# 3. An input's handler decides among the listed next states (e.g. the client's neg reply
#    leads to another round, to item lists for a scope, or to the transfer); anything it
#    raises puts the session in ERROR, which no input leaves.
# 4. Item lists are held only while reconciling: the client lets them go at the end of its
#    rounds (Reconciled), the server at the first request that is not ``neg``.
CLIENT_TRANSITIONS: Final[Mapping[State, Mapping[str, tuple[State, ...]]]] = {
    HELLO: {"hello": (ITEMS, NEG)},
    ITEMS: {"give_items": (ITEMS, NEG, FETCH, RECORDS, DONE)},
    NEG: {"neg": (ITEMS, NEG, FETCH, RECORDS, DONE)},
    FETCH: {"recs": (INGEST,)},
    INGEST: {"records_ingested": (FETCH, RECORDS, DONE)},
    RECORDS: {"give_records": (PUSH, RECORDS, DONE)},
    PUSH: {"ack": (PUSH, RECORDS, DONE)},
    DONE: {},
}
SERVER_TRANSITIONS: Final[Mapping[State, Mapping[str, tuple[State, ...]]]] = {
    HELLO: {"hello": (READY,)},
    READY: {"neg": (ITEMS, READY), "want": (RECORDS,), "push": (INGEST,), "bye": (DONE,)},
    ITEMS: {"give_items": (ITEMS, READY)},
    RECORDS: {"give_records": (READY,)},
    INGEST: {"records_ingested": (READY,)},
    DONE: {},
}
# --- Events ----------------------------------------------------------------------------------


class Wait(enum.Enum):
    """The type of :data:`NEED_FRAME`."""

    FRAME = "frame"


#: ``next_event()`` returns this when the session waits for the peer's next frame.
NEED_FRAME: Final = Wait.FRAME


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise LocalProtocolError("bad-event", what)


@dataclass(frozen=True, kw_only=True, slots=True)
class NeedItems:
    """Answer with ``give_items(scope, storage)``: the scope's (timestamp, id) items."""

    scope: str

    def __post_init__(self) -> None:
        _check(isinstance(self.scope, str) and self.scope != "", "a scope is a name")


@dataclass(frozen=True, kw_only=True, slots=True)
class NeedRecords:
    """Answer with ``give_records(raws)``: the held records among ``ids``, in their order."""

    ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check(len(self.ids) <= MAX_WANT, f"at most {MAX_WANT} ids are asked at once")


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordsReceived:
    """Answer with ``records_ingested(new=, refused=)``. ``more``: another ``recs`` frame is
    already asked for (client only)."""

    records: tuple[bytes, ...]
    more: bool = False

    def __post_init__(self) -> None:
        _check(len(self.records) <= MAX_RECORDS_PER_FRAME, "too many records for one frame")


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconciled:
    """The client's rounds are over and its item lists released: it will fetch ``need``
    records (distinct ids), then push ``have``."""

    have: int
    need: int

    def __post_init__(self) -> None:
        _check(self.have >= 0 and self.need >= 0, "counts are not negative")


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemsReleased:
    """The server no longer uses the item lists it was given."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    """The session ended well: the client sent ``bye``, or the server received it."""


Event: TypeAlias = NeedItems | NeedRecords | RecordsReceived | Reconciled | ItemsReleased | Done
