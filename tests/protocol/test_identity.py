"""The person fold (protocol.identity, docs/IDENTITY.md section 3) and per-person views.

Examples pin each rule; Hypothesis runs random histories of links, joins and revocations
(any device may act, in any order, with any timestamps, as a thief would) and checks the
three promises of the design: the fold depends on the set of records only, a revoked device
never gains weight after its cut, and the recovery key always regains control.
"""

from __future__ import annotations

import random
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.identity import NO_PEOPLE, People
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.testing import EPOCH_MS, RecordFactory
from protocol.validation import parse_record


def pub(f: RecordFactory, name: str) -> bytes:
    return f.pub(name)


def person_of_setup(f: RecordFactory) -> list[Record]:
    """Paper key ``paper``; ``laptop`` linked by the paper key, ``phone`` by the laptop."""
    return [
        f.link("paper", "paper", "t1"),
        f.join("laptop", "paper", "t1"),
        f.link("laptop", "paper", "t2"),
        f.join("phone", "paper", "t2"),
    ]


def test_link_and_join_admit_a_device_in_either_order() -> None:
    f = RecordFactory()
    join_first = [f.join("laptop", "paper", "t1"), f.link("paper", "paper", "t1")]
    people = People.fold(join_first)
    assert people.person_at(pub(f, "laptop"), 0) == pub(f, "paper")
    person = people.person(pub(f, "paper"))
    assert person is not None
    assert [d.key for d in person.active] == [pub(f, "laptop")]


def test_a_join_needs_a_link_by_someone_who_speaks_for_the_person() -> None:
    f = RecordFactory()
    stranger = [f.link("mallory", "paper", "t1"), f.join("laptop", "paper", "t1")]
    people = People.fold(stranger)
    assert people.person_at(pub(f, "laptop"), 0) == pub(f, "laptop")  # still its own person
    assert people.person(pub(f, "paper")) is None
    lone_join = People.fold([f.join("laptop", "paper", "t9")])
    assert lone_join.trivial is True


def test_a_ticket_joined_by_two_keys_admits_nobody() -> None:
    f = RecordFactory()
    records = [
        f.link("paper", "paper", "t1"),
        f.join("laptop", "paper", "t1"),
        f.join("mallory", "paper", "t1"),
    ]
    people = People.fold(records)
    person = people.person(pub(f, "paper"))
    assert person is not None
    assert person.devices == ()
    assert person.contested_tickets == (pub(f, "t1"),)
    assert people.person_at(pub(f, "mallory"), 0) == pub(f, "mallory")


def test_recovery_keys_count_for_nobody_and_stand_for_their_person_in_lists() -> None:
    f = RecordFactory()
    people = People.fold(person_of_setup(f))
    paper = pub(f, "paper")
    assert people.is_recovery_key(paper)
    assert people.person_at(paper, 0) is None
    assert people.person_of_key(paper) == paper
    assert people.person_of_key(pub(f, "phone")) == paper
    assert people.person_of_key(pub(f, "bob")) == pub(f, "bob")


def test_revocation_cuts_and_is_for_good() -> None:
    f = RecordFactory()
    records = person_of_setup(f)
    cut = f.now_ms
    records.append(f.revoke("laptop", "paper", "phone", cut=cut))
    # Linking the phone again does not bring it back.
    records += [f.link("laptop", "paper", "t3"), f.join("phone", "paper", "t3")]
    people = People.fold(records)
    phone = pub(f, "phone")
    assert people.person_at(phone, cut) == pub(f, "paper")
    assert people.person_at(phone, cut + 1) is None
    assert people.person_now(phone) is None
    assert people.person_of_key(phone) == pub(f, "paper")  # still the person, in lists


def test_a_revoked_device_cannot_act_after_its_revocation() -> None:
    f = RecordFactory()
    records = [*person_of_setup(f), f.revoke("laptop", "paper", "phone")]
    records.append(f.revoke("phone", "paper", "laptop"))  # later: the phone is gone
    people = People.fold(records)
    assert people.person_now(pub(f, "laptop")) == pub(f, "paper")


def test_a_device_admitted_by_two_persons_is_void_for_both() -> None:
    f = RecordFactory()
    records = [
        *person_of_setup(f),
        f.link("other-paper", "other-paper", "t7"),
        f.join("phone", "other-paper", "t7"),
    ]
    people = People.fold(records)
    phone = pub(f, "phone")
    assert people.persons_of_device(phone) == tuple(
        sorted((pub(f, "paper"), pub(f, "other-paper")))
    )
    assert people.person_at(phone, 0) is None
    assert people.person_of_key(phone) is None


def test_recovery_annuls_the_stolen_devices_identity_acts_but_what_it_keeps() -> None:
    f = RecordFactory()
    records = person_of_setup(f)
    theft = f.now_ms
    records += [
        f.link("laptop", "paper", "t3"),
        f.join("mallory", "paper", "t3"),
        f.revoke("laptop", "paper", "phone", cut=0),
    ]
    without = People.fold(records)
    assert without.person_now(pub(f, "mallory")) == pub(f, "paper")
    assert without.person_now(pub(f, "phone")) is None
    records.append(f.revoke("paper", "paper", "laptop", cut=theft, keep=("phone",)))
    people = People.fold(records)
    assert people.person_now(pub(f, "mallory")) == pub(f, "mallory")  # no longer alice's
    assert people.person_now(pub(f, "phone")) == pub(f, "paper")
    assert people.person_at(pub(f, "laptop"), theft) == pub(f, "paper")
    assert people.person_at(pub(f, "laptop"), theft + 1) is None


def test_no_identity_records_is_v1() -> None:
    f = RecordFactory()
    p = f.project("alice", name="P")
    people = People.fold([p])
    assert people.trivial
    assert NO_PEOPLE.trivial
    assert people.person_at(pub(f, "alice"), 5) == pub(f, "alice")


def test_a_maintainers_new_device_endorses_without_an_update() -> None:
    f = RecordFactory()
    setup = person_of_setup(f)
    p = f.project("bob", name="P", maintainers=("laptop",))
    c = f.contribution("carol", p, minutes=10)
    records = [*setup, p, c, f.endorsement("phone", c, weight=4)]
    view = ProjectView.build(p, records)
    assert view.contribution(c.id) is not None
    assert view.live_contributions()[0].weight == 4
    assert view.state.is_maintainer(pub(f, "phone"))
    assert not view.state.is_maintainer(pub(f, "paper"))  # the paper key only manages


def test_another_device_of_the_author_can_retract() -> None:
    f = RecordFactory()
    setup = person_of_setup(f)
    p = f.project("bob", name="P")
    c = f.contribution("laptop", p, minutes=10)
    view = ProjectView.build(p, [*setup, p, c, f.retraction("phone", c)])
    assert not view.is_live(c.id)
    assert view.why_no_effect(f.retraction("phone", c), c) == "the record is already retracted"


# --------------------------------------------------------------------------------------------
# Random histories

DEVICES = ("d0", "d1", "d2", "d3")
ACTORS = ("paper", *DEVICES)
TICKETS = ("t0", "t1", "t2", "t3")


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    """A paper key admits d0, then random acts by anyone, dated anywhere in 0..40 ms."""
    f = RecordFactory(now_ms=EPOCH_MS)
    out = [f.link("paper", "paper", "t0", ts=EPOCH_MS), f.join("d0", "paper", "t0", ts=EPOCH_MS)]
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        ts = EPOCH_MS + draw(st.integers(min_value=0, max_value=40))
        act = draw(st.sampled_from(("link", "join", "revoke")))
        if act == "link":
            out.append(
                f.link(
                    draw(st.sampled_from(ACTORS)), "paper", draw(st.sampled_from(TICKETS)), ts=ts
                )
            )
        elif act == "join":
            out.append(
                f.join(
                    draw(st.sampled_from(DEVICES)), "paper", draw(st.sampled_from(TICKETS)), ts=ts
                )
            )
        else:
            cut = EPOCH_MS + draw(st.integers(min_value=0, max_value=ts - EPOCH_MS))
            keep = draw(st.sampled_from(((), ("d1",), ("d2", "d3"))))
            out.append(
                f.revoke(
                    draw(st.sampled_from(ACTORS)),
                    "paper",
                    draw(st.sampled_from(DEVICES)),
                    cut=cut,
                    keep=keep,
                    ts=ts,
                )
            )
    return out


def _snapshot(f: RecordFactory, people: People) -> object:
    keys = [f.pub(k) for k in (*ACTORS, "new")]
    return (
        [people.person_now(k) for k in keys],
        [[people.person_at(k, EPOCH_MS + t) for t in (0, 10, 20, 30, 40, 50)] for k in keys],
        people.person(f.pub("paper")),
    )


def _work(f: RecordFactory, genesis: Record) -> list[Record]:
    """Contributions by every device at several dates, each endorsed by the maintainer."""
    out: list[Record] = []
    for name in DEVICES:
        for t in (5, 25, 45):
            c = f.contribution(name, genesis, minutes=7, ts=EPOCH_MS + t)
            out += [c, f.endorsement("bob", c, weight=2, ts=EPOCH_MS + 60)]
    return out


@settings(max_examples=60, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_views_depend_on_the_set_only(history: list[Record], rnd: random.Random) -> None:
    f = RecordFactory()
    genesis = f.project("bob", name="P", ts=EPOCH_MS)
    records = [*history, genesis, *_work(f, genesis)]
    shuffled = [*records, *records[:3]]
    rnd.shuffle(shuffled)
    assert _snapshot(f, People.fold(records)) == _snapshot(f, People.fold(shuffled))
    one = ProjectView.build(genesis, records)
    two = ProjectView.build(genesis, shuffled)
    assert one.shares() == two.shares()
    assert [e.to_json() for e in one.live_contributions()] == [
        e.to_json() for e in two.live_contributions()
    ]


@settings(max_examples=60, deadline=None)
@given(histories())
def test_a_revoked_device_never_gains_weight_after_its_cut(history: list[Record]) -> None:
    f = RecordFactory()
    genesis = f.project("bob", name="P", ts=EPOCH_MS)
    people = People.fold(history)
    person = people.person(f.pub("paper"))
    base = [*history, genesis, *_work(f, genesis)]
    before = ProjectView.build(genesis, base).shares()
    for device in person.devices if person is not None else ():
        if device.cut is None:
            continue
        name = next(n for n in DEVICES if f.pub(n) == device.key)
        # Whatever the thief signs after the cut, endorsed or not, changes no share.
        late = f.contribution(name, genesis, minutes=1000, ts=device.cut + 1)
        extra = [late, f.endorsement("bob", late, weight=10, ts=device.cut + 2)]
        assert ProjectView.build(genesis, [*base, *extra]).shares() == before
        assert people.person_at(device.key, device.cut + 1) is None


@settings(max_examples=60, deadline=None)
@given(histories())
def test_the_recovery_key_always_regains_control(history: list[Record]) -> None:
    f = RecordFactory()
    last = max(r.ts for r in history) + 1
    recovery = [f.revoke("paper", "paper", name, cut=last, ts=last) for name in DEVICES]
    recovery += [
        f.link("paper", "paper", "fresh", ts=last + 1),
        f.join("new", "paper", "fresh", ts=last + 1),
    ]
    people = People.fold([*history, *recovery])
    paper = f.pub("paper")
    assert people.person_now(f.pub("new")) == paper
    for name in DEVICES:
        assert people.person_now(f.pub(name)) in (None, f.pub(name))
        assert people.person_at(f.pub(name), last + 5) != paper
    person = people.person(paper)
    assert person is not None
    assert [d.key for d in person.active] == [f.pub("new")]
    # The new device acts as the person in a project at once.
    g = f.project("bob", name="Q", maintainers=("paper",), ts=last + 2)
    c = f.contribution("carol", g, minutes=3, ts=last + 3)
    view = ProjectView.build(g, [*history, *recovery, g, c, f.endorsement("new", c, ts=last + 4)])
    assert view.total_endorsed_value() == Fraction(3)


def test_identity_records_round_trip_through_validation() -> None:
    f = RecordFactory()
    for record in [*person_of_setup(f), f.revoke("paper", "paper", "phone", keep=("laptop",))]:
        assert parse_record(record.raw, now_ms=record.ts) == record
