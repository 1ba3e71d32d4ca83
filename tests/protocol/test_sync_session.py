"""The sans-IO sync session: two sessions back to back in memory, frames carried as bytes.

Each side's shell is a dict of records (a record's id is its SHA-256, as on the wire; its first
byte names its scope and the next eight its timestamp). The tests check that any two sets
converge with exactly the set differences moved, whatever the bytes' split; that a hostile
peer's frames either progress or raise the remote error and nothing else; that every transition
of both tables is taken; and that the limits on rounds, scopes and wants hold.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import negentropy
from protocol.errors import LocalProtocolError, NegentropyError, RemoteProtocolError
from protocol.sync import (
    MAX_WANT,
    Ack,
    Bye,
    ErrorFrame,
    Frame,
    FrameReader,
    Hello,
    Neg,
    Push,
    Recs,
    SyncError,
    Want,
    encode_frame,
    shared_scopes,
)
from protocol.sync_session import (
    CLIENT_TRANSITIONS,
    DEFAULT_LIMITS,
    FIRST_WANT,
    MAX_ROUNDS,
    NEED_FRAME,
    NEG_MAX_SCOPES,
    NOTHING_DIFFERS,
    SERVER_TRANSITIONS,
    ClientSession,
    Done,
    ItemsReleased,
    NeedItems,
    NeedRecords,
    NegLimits,
    Reconciled,
    RecordsReceived,
    ServerSession,
    State,
    fetch_order,
    hard_refusals,
    is_misbehaviour,
    next_want,
    reply_limit,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCOPES = ("meta", "11" * 32, "22" * 32, "33" * 32, "44" * 32)
#: Frames of 16 KiB: a few hundred items a scope already need several rounds and shared frames.
SMALL = NegLimits(frame_budget=16 * 1024, frame_limit=16 * 1024 - 16, max_scopes=3)
Session = ClientSession | ServerSession
Trace = set[tuple[str, State, str, State]]


def record(scope: int, ts: int, n: int = 0, size: int = 40) -> bytes:
    head = bytes([scope]) + ts.to_bytes(8, "big") + n.to_bytes(4, "big")
    return head + bytes(max(0, size - len(head)))


def rid(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def scope_of(raw: bytes) -> str:
    """A record's scope: its first byte, or (for the refused kinds) the first project."""
    return SCOPES[raw[0]] if raw[0] < len(SCOPES) else SCOPES[1]


def many(scope: int, count: int, *, start: int = 1000, size: int = 40) -> list[bytes]:
    return [record(scope, start + i, i, size) for i in range(count)]


class Holder:
    """A shell's store: records by id. Ingesting refuses records whose first byte names no
    scope as invalid, and of those 0xFF as from the future."""

    def __init__(self, raws: Iterable[bytes] = (), *, follow: Iterable[str] | None = None) -> None:
        self.records: dict[bytes, bytes] = {rid(raw): raw for raw in raws}
        self.follow = None if follow is None else set(follow)
        self.version = 0

    def hello(self) -> Hello:
        if self.follow is None:
            scopes = {scope_of(raw) for raw in self.records.values()}
        else:
            scopes = set(self.follow)
        scopes.add("meta")
        return Hello(follow_all=self.follow is None, scopes=tuple(sorted(scopes)))

    def items(self, scope: str) -> negentropy.Storage:
        return negentropy.Storage(
            (int.from_bytes(raw[1:9], "big"), i)
            for i, raw in self.records.items()
            if scope_of(raw) == scope
        )

    def raw_many(self, ids: Iterable[bytes]) -> list[bytes]:
        return [self.records[i] for i in dict.fromkeys(ids) if i in self.records]

    def ingest(self, raws: Iterable[bytes]) -> tuple[int, list[str]]:
        new, refused = 0, []
        for raw in raws:
            if len(raw) < 9 or len(SCOPES) <= raw[0] < 0xEE:
                refused.append("bad-record: not a record")
            elif raw[0] == 0xEE:
                refused.append("bad-signature: the signature does not verify")
            elif raw[0] == 0xFF:
                refused.append("future-timestamp: 2 hours ahead of our clock")
            elif rid(raw) not in self.records:
                self.records[rid(raw)] = raw
                self.version += 1
                new += 1
        return new, refused


class DictMemo:
    """The shell's memo: messages by scope, store version and key."""

    def __init__(self, holder: Holder) -> None:
        self.holder = holder
        self.messages: dict[tuple[str, int, bytes], bytes] = {}

    def get(self, scope: str, key: bytes) -> bytes | None:
        return self.messages.get((scope, self.holder.version, key))

    def put(self, scope: str, key: bytes, message: bytes) -> None:
        self.messages[(scope, self.holder.version, key)] = message


@dataclass
class Shell:
    """Answers a session's events from a Holder, recording every transition taken."""

    session: Session
    holder: Holder
    trace: Trace = field(default_factory=set)
    received: list[bytes] = field(default_factory=list)  # records fetched or pushed to us
    asked: list[bytes] = field(default_factory=list)  # ids we were asked for
    events: list[object] = field(default_factory=list)
    give: Callable[[list[bytes]], list[bytes]] = lambda raws: raws

    @property
    def role(self) -> str:
        return "client" if isinstance(self.session, ClientSession) else "server"

    def _call(self, kind: str, run: Callable[[], None]) -> None:
        before = self.session.state
        try:
            run()
        finally:
            self.trace.add((self.role, before, kind, self.session.state))

    def feed(self, frame: Frame) -> None:
        kind = type(frame).__name__.lower().replace("errorframe", "error")
        self._call(kind, lambda: self.session.receive_frame(frame))

    def answer(self) -> bool:
        """Handle events until the session waits for a frame; True once it is done."""
        session = self.session
        while True:
            event = session.next_event()
            self.events.append(event)
            if event is NEED_FRAME:
                return False
            if isinstance(event, Done):
                return True
            if isinstance(event, NeedItems):
                storage = self.holder.items(event.scope)
                self._call("give_items", partial(session.give_items, event.scope, storage))
            elif isinstance(event, NeedRecords):
                self.asked += event.ids
                raws = self.give(self.holder.raw_many(event.ids))
                self._call("give_records", partial(session.give_records, raws))
            elif isinstance(event, RecordsReceived):
                self.received += event.records
                new, refused = self.holder.ingest(event.records)
                call = partial(session.records_ingested, new=new, refused=refused)
                self._call("records_ingested", call)
            else:
                assert isinstance(event, Reconciled | ItemsReleased)


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def watching(kind: type, seen: list[Frame]) -> Callable[[bytes], Iterator[bytes]]:
    """A ``split`` that passes the bytes whole and keeps the frames of ``kind`` among them."""

    def split(blob: bytes) -> Iterator[bytes]:
        reader = FrameReader()
        reader.feed(blob)
        while (frame := reader.next_frame()) is not None:
            if isinstance(frame, kind):
                seen.append(frame)
        yield blob

    return split


def deliver(
    source: Shell, target: Shell, reader: FrameReader, split: Callable[[bytes], Iterable[bytes]]
) -> int:
    """Carry ``source``'s queued frames to ``target`` as bytes, cut by ``split``."""
    frames = source.session.frames_to_send()
    for piece in split(b"".join(encode_frame(frame) for frame in frames)):
        reader.feed(piece)
        while (frame := reader.next_frame()) is not None:
            target.feed(frame)
            target.answer()
    assert reader.buffered == 0
    return len(frames)


def converse(
    client: Shell, server: Shell, split: Callable[[bytes], Iterable[bytes]] = whole
) -> None:
    """Run both sessions to their end."""
    to_server, to_client = FrameReader(), FrameReader()
    client.answer()
    while client.session.state is not State.DONE or server.session.state is not State.DONE:
        moved = deliver(client, server, to_server, split)
        moved += deliver(server, client, to_client, split)
        assert moved, (client.session.state, server.session.state)


def pair(
    ours: Holder,
    theirs: Holder,
    limits: NegLimits = DEFAULT_LIMITS,
    memos: tuple[DictMemo | None, DictMemo | None] = (None, None),
) -> tuple[Shell, Shell]:
    client = ClientSession(ours.hello(), limits=limits, memo=memos[0])
    server = ServerSession(theirs.hello(), limits=limits, memo=memos[1])
    return Shell(client, ours), Shell(server, theirs)


def converge(
    a: Holder,
    b: Holder,
    limits: NegLimits = DEFAULT_LIMITS,
    split: Callable[[bytes], Iterable[bytes]] = whole,
) -> tuple[Shell, Shell]:
    """Sync ``a`` (the client) with ``b``; check that exactly the differences moved."""
    scopes = set(shared_scopes(a.hello(), b.hello()))
    before_a, before_b = set(a.records), set(b.records)
    c, s = pair(a, b, limits)
    converse(c, s, split)
    union = {i for i, raw in {**a.records, **b.records}.items() if scope_of(raw) in scopes}
    assert {rid(raw) for raw in c.received} == union - before_a
    assert {rid(raw) for raw in s.received} == union - before_b
    assert isinstance(c.session, ClientSession)
    assert (c.session.received, c.session.pushed) == (len(union - before_a), len(union - before_b))
    assert union <= set(a.records)
    assert union <= set(b.records)
    return c, s


# --- Convergence -----------------------------------------------------------------------------


def test_two_sets_converge_with_exactly_their_differences() -> None:
    common = many(0, 300) + many(1, 200)
    ours = Holder(common + many(1, 50, start=5000) + many(2, 40))
    theirs = Holder(common + many(0, 70, start=9000) + many(3, 10))
    c, _ = converge(ours, theirs)
    assert c.session.scopes == 4
    assert 1 <= c.session.rounds <= 3


records_strategy = st.lists(
    st.tuples(st.integers(0, len(SCOPES) - 1), st.integers(0, 2**40), st.integers(0, 3)),
    max_size=120,
    unique=True,
).map(lambda keys: [record(scope, ts, n) for scope, ts, n in keys])
follow_strategy = st.none() | st.sets(st.sampled_from(SCOPES[1:]), max_size=3)


@FUZZ
@given(
    common=records_strategy,
    ours=records_strategy,
    theirs=records_strategy,
    our_follow=follow_strategy,
    their_follow=follow_strategy,
    small=st.booleans(),
)
def test_random_sets_converge(
    common: list[bytes],
    ours: list[bytes],
    theirs: list[bytes],
    our_follow: set[str] | None,
    their_follow: set[str] | None,
    small: bool,
) -> None:
    a = Holder(common + ours, follow=our_follow)
    b = Holder(common + theirs, follow=their_follow)
    converge(a, b, SMALL if small else DEFAULT_LIMITS)


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=40), data=st.data())
def test_frames_cut_anywhere_give_the_same_session(sizes: list[int], data: st.DataObject) -> None:
    ours = Holder(many(0, 20) + many(1, 60, start=3000))
    theirs = Holder(many(0, 25) + many(2, 30))
    rest = data.draw(st.integers(1, 50))

    def split(blob: bytes) -> Iterator[bytes]:
        pos = 0
        for size in [*sizes, *([rest] * len(blob))]:
            if pos >= len(blob):
                return
            yield blob[pos : pos + size]
            pos += size

    converge(ours, theirs, SMALL, split)


def test_frames_fed_byte_by_byte() -> None:
    ours = Holder(many(0, 10) + many(1, 40))
    theirs = Holder(many(0, 12) + many(1, 35, start=2000))
    converge(ours, theirs, split=byte_by_byte)


def test_big_differences_fill_frames_and_take_many_rounds() -> None:
    """A thousand items in each of five scopes, many lacking each side, 16 KiB frames: the
    client sends at most ``max_scopes`` scopes a frame, replies share the frame, and the
    sets still converge."""
    ours = Holder([r for s in range(5) for r in many(s, 1000)][::2])
    theirs = Holder([r for s in range(5) for r in many(s, 1000)][1::3])
    negs: list[Frame] = []
    c, _ = converge(ours, theirs, SMALL, watching(Neg, negs))
    assert c.session.rounds > 3
    assert max(len(neg.messages) for neg in negs if isinstance(neg, Neg)) == SMALL.max_scopes
    sizes = [len(encode_frame(neg)) for neg in negs]
    assert max(sizes) <= SMALL.frame_budget + 64
    assert max(sizes) > SMALL.frame_budget // 2


def test_wants_ask_first_few_then_many_and_again_what_was_not_sent() -> None:
    """5,000 records of 300 bytes: the first want asks for FIRST_WANT ids, the next for
    MAX_WANT, whose answer fills a frame before all are sent; the rest are asked again."""
    frames: list[Frame] = []
    converge(Holder(), Holder(many(1, 5000, size=300)), split=watching(Want, frames))
    wants = [len(want.ids) for want in frames if isinstance(want, Want)]
    assert wants[:2] == [FIRST_WANT, MAX_WANT]
    assert len(wants) == 3
    assert sum(wants) > 5000  # some ids were asked twice


def test_wants_after_a_full_frame_ask_about_what_it_held() -> None:
    """20,000 records of 300 bytes, about 3,400 a frame: after the first full frame each want
    asks for what the last frame held and an eighth more, so the server reads each record
    about once (1.2 times at most) instead of reading MAX_WANT to send a frame's worth."""
    frames: list[Frame] = []
    recs: list[Frame] = []
    c, s = pair(Holder(), Holder(many(1, 20_000, size=300)))

    def split(blob: bytes) -> Iterator[bytes]:
        yield from watching(Want, frames)(blob)
        list(watching(Recs, recs)(blob))

    converse(c, s, split)
    assert len(c.holder.records) == 20_000
    wants = [len(want.ids) for want in frames if isinstance(want, Want)]
    sent = [len(r.records) for r in recs if isinstance(r, Recs)]
    assert wants[:2] == [FIRST_WANT, MAX_WANT]
    assert sent[1] < MAX_WANT  # the frame was full
    for asked, got, following in zip(wants[1:], sent[1:], wants[2:], strict=False):
        if got < asked:
            assert following <= got + got // 8
    assert len(s.asked) <= 1.2 * 20_000


def test_a_withholding_peer_shrinks_wants_to_first_want_and_no_further() -> None:
    """A peer that sends 10 of the records asked each time (each reply looks like a full
    frame): each want asks FIRST_WANT ids (or all those left), never fewer, and the fetch
    still ends."""
    theirs = Holder(many(1, 3000))
    c, s = pair(Holder(), theirs)
    frames: list[Frame] = []
    s.give = lambda raws: raws[:10]
    converse(c, s, watching(Want, frames))
    wants = [len(want.ids) for want in frames if isinstance(want, Want)]
    assert wants == [min(FIRST_WANT, 3000 - 10 * k) for k in range(300)]
    assert len(c.holder.records) == 3000


@given(st.integers(1, MAX_WANT), st.integers(0, MAX_WANT))
def test_next_want_is_between_first_want_and_max_want(asked: int, returned: int) -> None:
    n = next_want(asked, min(asked, returned))
    assert FIRST_WANT <= n <= MAX_WANT
    if 0 < returned < asked:
        assert n >= min(returned, MAX_WANT)


class ListsTwice(Holder):
    """A peer that lists its scope-0 records in scope 1's item list as well."""

    def items(self, scope: str) -> negentropy.Storage:
        extra = list(super().items(SCOPES[0])) if scope == SCOPES[1] else []
        return negentropy.Storage([*super().items(scope), *extra])


def test_the_meta_scopes_records_are_asked_for_first() -> None:
    """A catching-up client asks for the meta scope's records (projects, their updates,
    identities) before any project's, though here they are the newest and their scope sorts
    last: an imported history's contributions predate the project that records them."""
    frames: list[Frame] = []
    meta = many(0, 30, start=10**9)
    theirs = Holder(many(1, 2000) + many(2, 2000) + meta)
    c, _ = converge(Holder(), theirs, SMALL, watching(Want, frames))
    assert c.session.rounds > 1
    asked = [i for want in frames if isinstance(want, Want) for i in want.ids]
    assert set(asked[:30]) == {rid(raw) for raw in meta}
    assert len(asked) == len(set(asked))


@given(
    st.dictionaries(
        st.sampled_from(SCOPES),
        st.lists(st.binary(min_size=1, max_size=2), max_size=30, unique=True),
        max_size=4,
    )
)
def test_fetch_order_lists_every_id_once_the_meta_scopes_first(
    needs: dict[str, list[bytes]],
) -> None:
    """Each scope lists an id once (as a negentropy session reports it); two scopes may list
    the same id. Every id comes once, the meta scope's first, each scope's in its order."""
    queue = fetch_order(needs)
    union = {i for ids in needs.values() for i in ids}
    assert len(queue) == len(set(queue)) == len(union)
    meta = needs.get("meta", [])
    assert queue[: len(meta)] == meta
    position = {i: n for n, i in enumerate(queue)}
    for ids in needs.values():
        alone = [i for i in ids if sum(i in other for other in needs.values()) == 1]
        assert sorted(alone, key=position.__getitem__) == alone


def test_fetch_order_keeps_one_big_scope_as_it_is() -> None:
    big = [bytes([n % 256, n // 256]) for n in range(5000)]
    assert fetch_order({SCOPES[1]: big}) is big  # no copy of a million ids
    assert fetch_order({}) == []
    shared = big[10]
    assert fetch_order({SCOPES[1]: big, "meta": [b"m", shared]}) == [
        b"m",
        shared,
        *big[:10],
        *big[11:],
    ]


def test_an_id_listed_in_two_scopes_is_asked_for_once() -> None:
    """Each negentropy session reports an id once, so only an id two scopes both list can
    repeat: it is fetched once all the same."""
    frames: list[Frame] = []
    c, _ = converge(Holder(), ListsTwice(many(0, 20) + many(1, 20)), split=watching(Want, frames))
    asked = [i for want in frames if isinstance(want, Want) for i in want.ids]
    assert len(asked) == len(set(asked)) == 40
    assert len(c.holder.records) == 40


def test_ids_the_peer_does_not_send_are_dropped() -> None:
    """A peer that advertised records it then cannot give: an empty answer drops those ids."""
    theirs = Holder(many(1, 30))
    c, s = pair(Holder(), theirs)
    s.give = lambda raws: []
    converse(c, s)
    assert isinstance(c.session, ClientSession)
    assert c.session.received == 0
    assert c.holder.records == {}


# --- The memo --------------------------------------------------------------------------------


def test_unchanged_sets_need_no_item_lists_the_second_time() -> None:
    a, b = Holder(many(0, 50) + many(1, 80)), Holder(many(0, 50) + many(1, 80))
    memos = DictMemo(a), DictMemo(b)
    c, s = pair(a, b, memos=memos)
    converse(c, s)
    assert any(isinstance(e, NeedItems) for e in c.events + s.events)
    c, s = pair(a, b, memos=memos)
    converse(c, s)
    assert not any(isinstance(e, NeedItems) for e in c.events + s.events)
    assert c.session.rounds == 1


def test_a_remembered_first_message_gets_items_when_the_peer_differs() -> None:
    a = Holder(many(0, 50) + many(1, 80))
    memo = DictMemo(a)
    c, s = pair(a, Holder(a.records.values()), memos=(memo, None))
    converse(c, s)
    # The peer gained records: the reply differs, so the client builds the list after all.
    gained = Holder([*a.records.values(), *many(1, 5, start=9000)])
    c, s = pair(a, gained, memos=(memo, None))
    converse(c, s)
    assert (State.ITEMS, "give_items", State.FETCH) in {t[1:] for t in c.trace}
    assert len(a.records) == len(gained.records)


# --- Transitions -----------------------------------------------------------------------------


def client_at(state: State, ours: Holder, theirs: Holder, **kw: object) -> tuple[Shell, Shell]:
    """A client and an honest server, run until the client reaches ``state``."""
    c, s = pair(ours, theirs, **kw)  # type: ignore[arg-type]
    to_server, to_client = FrameReader(), FrameReader()
    c.answer()
    while c.session.state is not state:
        deliver(c, s, to_server, whole)
        deliver(s, c, to_client, whole)
    return c, s


def scenarios() -> Iterator[Shell]:
    """Sessions between honest peers that between them take every transition."""
    common = many(0, 40)
    a, b = Holder(common + many(1, 600) + many(2, 10)), Holder(common + many(3, 700))
    memos = DictMemo(a), DictMemo(b)
    # Both lack something, in more scopes than a frame takes: every item list is built.
    # Then again, equal now: the lists are built and the messages remembered; and once
    # more: nothing is built at all, hello leads straight to neg.
    for _ in range(3):
        c, s = pair(a, b, SMALL, memos)
        converse(c, s)
        yield from (c, s)
    # Remembered first messages whose replies differ: items after all, then a push, or (a
    # reply that says nothing) the end, or a fetch. A scope of fewer than 32 items is sent
    # as an id list and answered with one, so it takes one round.
    small_scope = many(2, 10)
    c, _ = pair(
        a, Holder(r for r in a.records.values() if r not in small_scope[:3]), memos=(memos[0], None)
    )
    converse(c, _)
    yield c
    c, _ = client_at(State.NEG, a, Holder(), memos=(memos[0], None))
    says_nothing = b"\x61\x00\x00\x00"  # skip everything up to infinity
    c.feed(Neg(messages={0: says_nothing, **dict.fromkeys((1, 2, 3), NOTHING_DIFFERS)}))
    c.answer()
    assert c.session.state is State.DONE
    yield c
    c, _ = pair(a, Holder([*a.records.values(), *many(2, 13)]), memos=(memos[0], None))
    converse(c, _)
    yield c
    # Only a fetch, of more than one want; only a push, bigger than a frame and than a want.
    yield converge(Holder(), Holder(many(1, 700)))[0]
    yield converge(Holder(many(1, MAX_WANT + 5, size=300)), Holder())[0]
    # A push of records that vanished from the store meanwhile.
    c, s = pair(Holder(many(1, MAX_WANT + 5)), Holder())
    c.give = lambda raws: []
    converse(c, s)
    yield c


def test_every_transition_of_both_tables_is_taken() -> None:
    taken: Trace = set()
    for shell in scenarios():
        taken |= shell.trace
    for role, table in (("client", CLIENT_TRANSITIONS), ("server", SERVER_TRANSITIONS)):
        listed = {
            (role, state, kind, target)
            for state, inputs in table.items()
            for kind, targets in inputs.items()
            for target in targets
        }
        assert listed - taken == set(), role
        assert {t for t in taken if t[0] == role} <= listed


# --- Limits and refusals ---------------------------------------------------------------------


def server_ready(holder: Holder | None = None, *, scopes: tuple[str, ...] = SCOPES) -> Shell:
    holder = holder or Holder(many(1, 40))
    s = Shell(ServerSession(holder.hello()), holder)
    s.feed(Hello(follow_all=True, scopes=scopes))
    s.answer()
    assert s.session.frames_to_send() == [holder.hello()]
    return s


def test_the_server_serves_at_most_max_rounds() -> None:
    s = server_ready()
    first = negentropy.Negentropy(Holder().items("meta")).initiate()
    for _ in range(MAX_ROUNDS):
        s.feed(Neg(messages={0: first}))
        s.answer()
        (reply,) = s.session.frames_to_send()
        assert isinstance(reply, Neg)
    with pytest.raises(SyncError) as info:
        s.feed(Neg(messages={0: first}))
    assert info.value.code == "too-many"
    assert s.session.frames_to_send() == [ErrorFrame(code="too-many", message=info.value.message)]


def test_the_server_refuses_too_many_scopes_and_unknown_ones() -> None:
    s = server_ready()
    with pytest.raises(SyncError, match="too-many"):
        s.feed(Neg(messages={i: b"\x61" for i in range(NEG_MAX_SCOPES + 1)}))
    s = server_ready(scopes=())
    with pytest.raises(SyncError, match="bad-scope"):
        s.feed(Neg(messages={0: b"\x61", 5: b"\x61"}))


def test_reply_limits_share_the_frame() -> None:
    assert reply_limit(1) == DEFAULT_LIMITS.frame_limit
    assert reply_limit(NEG_MAX_SCOPES) >= negentropy.MIN_FRAME_SIZE_LIMIT
    assert reply_limit(10_000) == negentropy.MIN_FRAME_SIZE_LIMIT
    assert reply_limit(2, SMALL) == SMALL.frame_budget // 2 - 16
    with pytest.raises(LocalProtocolError, match="bad-limits"):
        NegLimits(frame_budget=8192, frame_limit=8000, max_scopes=3)


def test_invalid_records_end_the_session_and_future_ones_are_skipped() -> None:
    bad, ahead = record(0xEE, 5), record(0xFF, 6)
    s = server_ready()
    s.feed(Push(records=(ahead, *many(1, 3, start=7000))))
    s.answer()
    assert s.session.frames_to_send() == [Ack(new=3)]
    s.feed(Push(records=(bad,)))
    with pytest.raises(SyncError) as info:
        s.answer()
    assert str(info.value).startswith("invalid-record: peer sent invalid records: bad-signature")
    assert s.session.state is State.ERROR
    assert hard_refusals(["future-timestamp: x", "bad-sig: y"]) == ["bad-sig: y"]


def test_the_client_refuses_records_not_asked_for_and_wrong_replies() -> None:
    c, _ = client_at(State.FETCH, Holder(), Holder(many(1, 5)))
    with pytest.raises(SyncError, match="records not asked for"):
        c.feed(Recs(records=(record(1, 1, 99),)))
    c, _ = client_at(State.NEG, Holder(), Holder())
    with pytest.raises(SyncError, match="does not answer the scopes asked"):
        c.feed(Neg(messages={7: NOTHING_DIFFERS}))
    c, _ = client_at(State.NEG, Holder(), Holder())
    with pytest.raises(NegentropyError):
        c.feed(Neg(messages={0: b"\x62"}))
    assert c.session.frames_to_send()[0].code == "unsupported-version"  # type: ignore[union-attr]


# --- Errors ----------------------------------------------------------------------------------


def test_an_error_frame_ends_the_session_without_an_answer() -> None:
    c, _ = client_at(State.NEG, Holder(), Holder())
    with pytest.raises(SyncError) as info:
        c.feed(ErrorFrame(code="too-many", message="slow down"))
    assert (info.value.code, info.value.message) == (
        "peer-error",
        "peer reported too-many: slow down",
    )
    assert not is_misbehaviour(info.value)
    assert c.session.frames_to_send() == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (Recs(records=()), "Recs from a client"),
        (Hello(follow_all=True, scopes=()), "Hello from a client"),
        (Ack(new=1), "Ack from a client"),
    ],
)
def test_unexpected_frames_are_the_peers_fault(frame: Frame, message: str) -> None:
    s = server_ready()
    with pytest.raises(SyncError) as info:
        s.feed(frame)
    assert (info.value.code, info.value.message) == ("unexpected-frame", message)
    assert is_misbehaviour(info.value)
    assert s.session.frames_to_send() == [ErrorFrame(code="unexpected-frame", message=message)]
    c = Shell(ClientSession(Hello(follow_all=True, scopes=())), Holder())
    with pytest.raises(SyncError, match="expected Hello, got Bye"):
        c.feed(Bye())
    s = Shell(ServerSession(Hello(follow_all=True, scopes=())), Holder())
    with pytest.raises(SyncError, match="expected Hello, got Bye"):
        s.feed(Bye())


def test_an_errored_session_stays_errored() -> None:
    s = server_ready()
    with pytest.raises(SyncError):
        s.feed(Ack(new=0))
    for call in (
        lambda: s.session.receive_frame(Bye()),
        s.session.next_event,
        lambda: s.session.give_records([]),
    ):
        with pytest.raises(LocalProtocolError, match="errored"):
            call()
    s.session.abort(SyncError("timeout", "later"))  # nothing happens
    assert s.session.error is not None
    assert s.session.error.code == "unexpected-frame"


def test_the_shell_reports_its_own_failures() -> None:
    c, _ = client_at(State.NEG, Holder(), Holder())
    c.session.abort(SyncError("timeout", "no frame from the peer in 30 s"))
    assert c.session.frames_to_send() == [
        ErrorFrame(code="timeout", message="no frame from the peer in 30 s")
    ]
    assert not is_misbehaviour(SyncError("timeout", ""))
    c, _ = client_at(State.NEG, Holder(), Holder())
    c.session.abort(SyncError("closed", "the peer closed the sync stream"))
    assert c.session.frames_to_send() == []
    c = Shell(ClientSession(Hello(follow_all=True, scopes=())), Holder())
    c.session.send_failed()
    assert c.session.state is State.ERROR
    assert c.session.frames_to_send() == []
    c.session.send_failed()


def test_the_shell_breaking_the_rules_is_a_local_error() -> None:
    hello = Hello(follow_all=True, scopes=())
    storage = negentropy.Storage()
    misuses: list[Callable[[Session], object]] = [
        lambda x: x.give_items("meta", storage),
        lambda x: x.records_ingested(new=0),
        lambda x: x.receive_frame("hello"),  # type: ignore[arg-type]
    ]
    for misuse in misuses:
        session = ClientSession(hello)
        with pytest.raises(LocalProtocolError):
            misuse(session)
        assert session.state is State.ERROR
        assert session.frames_to_send() == []
    s = server_ready()
    s.feed(Want(ids=(bytes(32),)))
    with pytest.raises(LocalProtocolError, match="not-waiting"):
        s.session.receive_frame(Bye())
    s = server_ready()
    s.feed(Want(ids=(bytes(32),)))
    s.session.next_event()
    with pytest.raises(LocalProtocolError, match="awaiting-answer"):
        s.session.next_event()
    s = server_ready()
    s.feed(Neg(messages={0: b"\x61"}))
    with pytest.raises(LocalProtocolError, match="not-asked"):
        s.session.give_items("44" * 32, storage)
    s = server_ready()
    s.feed(Push(records=(record(1, 1),)))
    with pytest.raises(LocalProtocolError, match="bad-argument"):
        s.session.records_ingested(new=2)
    with pytest.raises(LocalProtocolError, match="bad-argument"):
        ClientSession("hello")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="bad-event"):
        NeedRecords(ids=(bytes(32),) * (MAX_WANT + 1))
    with pytest.raises(LocalProtocolError, match="bad-event"):
        NeedItems(scope="")
    with pytest.raises(LocalProtocolError, match="bad-event"):
        RecordsReceived(records=(b"x",) * 5000)
    with pytest.raises(LocalProtocolError, match="bad-event"):
        Reconciled(have=-1, need=0)


# --- A hostile peer --------------------------------------------------------------------------

ids32 = st.binary(min_size=32, max_size=32)
neg_message = st.one_of(
    st.binary(max_size=60),
    st.binary(max_size=60).map(lambda b: b"\x61" + b),
    st.sampled_from([NOTHING_DIFFERS, b"\x61\x00\x00\x00", b"\x61\x00\x00\x01" + bytes(16)]),
)
any_frame = st.one_of(
    st.builds(
        Hello,
        follow_all=st.booleans(),
        scopes=st.lists(st.sampled_from(SCOPES), unique=True).map(lambda s: tuple(sorted(s))),
    ),
    st.builds(Neg, messages=st.dictionaries(st.integers(0, 6), neg_message, max_size=4)),
    st.builds(Want, ids=st.lists(ids32, max_size=4).map(tuple)),
    st.builds(Recs, records=st.lists(st.binary(min_size=1, max_size=50), max_size=3).map(tuple)),
    st.builds(Push, records=st.lists(st.binary(min_size=1, max_size=50), max_size=3).map(tuple)),
    st.builds(Ack, new=st.integers(0, 5)),
    st.just(Bye()),
    st.builds(ErrorFrame, code=st.sampled_from(["bad-frame", "x"]), message=st.text(max_size=9)),
)


def mutate(frame: Frame, data: st.DataObject) -> Frame:
    """An honest frame, bent the way a hostile peer might bend it."""
    how = data.draw(st.sampled_from(["keep", "keep", "replace", "neg", "recs"]))
    if how == "replace":
        return data.draw(any_frame)
    if how == "neg" and isinstance(frame, Neg) and frame.messages:
        number = data.draw(st.sampled_from(sorted(frame.messages)))
        message = frame.messages[number]
        cut = data.draw(st.integers(0, len(message)))
        messages = dict(frame.messages)
        messages[number] = data.draw(
            st.sampled_from([message[:cut], message[:cut] + b"\x07" + message[cut + 1 :]])
        )
        if data.draw(st.booleans()):
            messages[data.draw(st.integers(0, 6))] = data.draw(neg_message)
        return Neg(messages=messages)
    if how == "recs" and isinstance(frame, Recs | Push):
        extra = data.draw(st.lists(st.binary(min_size=1, max_size=40), max_size=2))
        return type(frame)(records=(*frame.records[1:], *extra))
    return frame


def hostile_run(victim: Shell, peer: Shell, data: st.DataObject) -> None:
    """``peer`` runs honestly but its frames are bent on their way; the victim must either
    go on or raise the remote error, and stay errored after that."""
    to_victim, to_peer = FrameReader(), FrameReader()
    first, second = (victim, peer) if victim.role == "client" else (peer, victim)
    first.answer()
    moved = True
    while moved and victim.session.state is not State.DONE:
        moved = False
        for shell in (first, second):
            frames = shell.session.frames_to_send()
            if shell is peer:
                frames = [mutate(frame, data) for frame in frames]
            reader, other = (to_victim, victim) if shell is peer else (to_peer, peer)
            for frame in frames:
                reader.feed(encode_frame(frame))
                moved = True
            while (frame := reader.next_frame()) is not None:
                if other.session.state in (State.DONE, State.ERROR):
                    break  # the honest peer has stopped reading
                failed: RemoteProtocolError | None = None
                try:
                    other.feed(frame)
                    other.answer()
                except RemoteProtocolError as exc:
                    failed = exc
                if failed is not None:
                    assert other.session.state is State.ERROR
                    assert other.session.error is failed
                    if other is victim:
                        with pytest.raises(LocalProtocolError, match="errored"):
                            victim.session.receive_frame(frame)
                        return


@FUZZ
@given(data=st.data(), small=st.booleans())
def test_a_hostile_server_gets_the_remote_error_or_progress(
    data: st.DataObject, small: bool
) -> None:
    ours = Holder(many(0, 30) + many(1, 50, start=5000))
    theirs = Holder(many(0, 35) + many(2, 40) + [record(0xFF, 3)])
    c, s = pair(ours, theirs, SMALL if small else DEFAULT_LIMITS)
    hostile_run(c, s, data)


@FUZZ
@given(data=st.data(), small=st.booleans())
def test_a_hostile_client_gets_the_remote_error_or_progress(
    data: st.DataObject, small: bool
) -> None:
    ours = Holder(many(0, 30) + many(1, 50, start=5000) + [record(0xEE, 4)])
    theirs = Holder(many(0, 35) + many(2, 40))
    c, s = pair(
        ours, theirs, SMALL if small else DEFAULT_LIMITS, (DictMemo(ours), DictMemo(theirs))
    )
    hostile_run(s, c, data)


@FUZZ
@given(frames=st.lists(any_frame, max_size=8), client=st.booleans())
def test_any_frames_give_progress_or_the_remote_error(frames: list[Frame], client: bool) -> None:
    holder = Holder(many(0, 20) + many(1, 20))
    session: Session = ClientSession(holder.hello()) if client else ServerSession(holder.hello())
    shell = Shell(session, holder)
    shell.answer()
    for frame in frames:
        if session.state is State.DONE:
            break
        try:
            shell.feed(frame)
            shell.answer()
        except RemoteProtocolError:
            assert session.state is State.ERROR
            break


def test_the_client_counts_what_it_needs_as_the_rounds_tell_it() -> None:
    """``needed`` grows with the rounds, never beyond the fetch's need, equals it once
    reconciled and falls as records arrive: a shell can prepare for a big fetch (start its
    helpers) before the last round."""
    ours = Holder(many(0, 20))
    theirs = Holder(many(0, 20) + many(0, 2000, start=1000) + many(1, 500))
    lacking = len(set(theirs.records) - set(ours.records))
    c, s = pair(ours, theirs, SMALL)
    assert isinstance(c.session, ClientSession)
    seen: list[tuple[int, bool]] = []  # needed after each frame, and whether reconciled
    feed = c.feed

    def counting(frame: Frame) -> None:
        feed(frame)
        reconciled = any(isinstance(e, Reconciled) for e in c.events)
        seen.append((c.session.needed, reconciled))

    c.feed = counting  # type: ignore[method-assign]
    converse(c, s)
    need = next(e.need for e in c.events if isinstance(e, Reconciled))
    assert need == lacking
    during = [n for n, reconciled in seen if not reconciled]
    assert during == sorted(during)
    assert 0 < max(during) <= need, "some of the need is known before the last round"
    assert c.session.rounds >= 2
    assert seen[-1][0] == 0  # all fetched
