"""Attested contributions, claims and confirmations (docs/RECORD-FORMAT.md sections 4.10-5.10).

The examples pin each rule of the claim fold, the dispute rule included; the properties check
that the fold is a function of the set (any order gives the same shares) and that claims move
shares exactly as a direct model of the rule says.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.attest import (
    ClaimConfirmationBody,
    check_handle,
    email_handle,
    handle_from_text,
    handle_key,
    names_handle,
)
from protocol.errors import InvalidRecord
from protocol.ledger import ProjectView
from protocol.record import Record, sign_record
from protocol.signing import peer_id
from protocol.testing import RecordFactory, key

CAROL_MAIL = email_handle(b"carol@example.org")
DAVE_GH = "forge:github.com/dave"


def shares_by(view: ProjectView) -> dict[str, tuple[int, Fraction]]:
    """contributor text -> (contributions, endorsed value)."""
    return {
        str(s.to_json()["contributor"]): (s.contributions, s.endorsed_value) for s in view.shares()
    }


def _peer(name: str) -> str:
    return peer_id(key(name).public_key)


# ---- handles


def test_email_handles_hash_a_normalised_address() -> None:
    handle = email_handle(b"  Carol@Example.ORG\n")
    assert handle == CAROL_MAIL == email_handle("carol@example.org")
    assert handle.startswith("email:")
    assert len(handle) == 6 + 64
    assert "carol" not in handle
    # Only ASCII letters are lowered, so the rule is the same bytes in every language; bytes
    # that are not UTF-8 (git keeps them as given) hash as they are.
    assert email_handle("É@x.org") != email_handle("é@x.org")
    assert email_handle(b"\xe9@x.org").startswith("email:")
    assert handle_from_text("email:Carol@example.org") == CAROL_MAIL
    assert handle_from_text(CAROL_MAIL) == CAROL_MAIL


@pytest.mark.parametrize(
    "handle",
    [
        "forge:github.com/dave",
        "forge:codeberg.org/Some_User.name-2",
        "orcid:0000-0002-1825-0097",
        "orcid:0000-0001-5109-3700",
        "orcid:0000-0002-1694-233X",
    ],
)
def test_good_handles(handle: str) -> None:
    assert check_handle("handle", handle) == handle


@pytest.mark.parametrize(
    "handle",
    [
        "email:carol@example.org",
        "email:" + "A" * 64,
        "forge:GitHub.com/dave",
        "forge:github.com/",
        "forge:github.com/a b",
        "forge:github.com/a/b",
        "orcid:0000-0002-1825-0098",
        "orcid:0000-0002-1825-009",
        "dave",
        "",
    ],
)
def test_bad_handles(handle: str) -> None:
    with pytest.raises(InvalidRecord) as caught:
        check_handle("handle", handle)
    assert caught.value.code == "bad-value:handle"


# ---- the fold, rule by rule


def setup() -> tuple[RecordFactory, Record, list[Record]]:
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    c1 = f.attested("alice", p, (CAROL_MAIL,), minutes=60)
    c2 = f.attested("alice", p, (CAROL_MAIL, DAVE_GH), minutes=30)
    return f, p, [p, c1, c2, f.endorsement("bob", c1, weight=2), f.endorsement("bob", c2)]


def test_names_handle_tells_a_handle_from_a_peer_id_by_its_scheme() -> None:
    for text in (CAROL_MAIL, DAVE_GH, "orcid:0000-0002-1825-0097", "email:not-hashed", "forge:"):
        assert names_handle(text)  # a handle by its form; check_handle judges the rest
    for text in (_peer("alice"), "mail:x", "Email:x", "", "forge"):
        assert not names_handle(text)


def test_an_attested_contribution_credits_its_handles_not_its_signer() -> None:
    _, p, records = setup()
    view = ProjectView.build(p, records)
    assert shares_by(view) == {
        CAROL_MAIL: (2, Fraction(60 * 2 + 15)),
        DAVE_GH: (1, Fraction(15)),
    }
    entry = view.live_contributions()[0].to_json()
    assert entry["on_behalf"] == [CAROL_MAIL, DAVE_GH]
    assert entry["credited"] == [CAROL_MAIL, DAVE_GH]
    assert entry["author"] == _peer("alice")
    # The signer is no participant, so a maintainer's own endorsement of what they attested
    # counts; the view filters by a handle's stand-in key.
    assert len(view.live_contributions(author=handle_key(DAVE_GH))) == 1
    assert view.live_contributions(author=key("alice").public_key) == []


def test_a_confirmed_claim_moves_the_handle_credit_to_the_key() -> None:
    f, p, records = setup()
    claim = f.claim("carol", p, CAROL_MAIL)
    unconfirmed = ProjectView.build(p, [*records, claim])
    assert CAROL_MAIL in shares_by(unconfirmed)
    view = ProjectView.build(p, [*records, claim, f.confirm("bob", claim)])
    assert shares_by(view) == {_peer("carol"): (2, Fraction(135)), DAVE_GH: (1, Fraction(15))}
    assert view.claims.resolved == {CAROL_MAIL: key("carol").public_key}
    assert view.live_contributions()[0].to_json()["credited"] == [_peer("carol"), DAVE_GH]
    assert view.total_endorsed_value() == unconfirmed.total_endorsed_value()


def test_a_ledger_filtered_by_a_handle_lists_its_work_claimed_or_not() -> None:
    f, p, records = setup()
    before = ProjectView.build(p, records)
    carols = before.live_contributions(handle=CAROL_MAIL)
    assert len(carols) == 2
    assert all(CAROL_MAIL in (e.to_json()["on_behalf"] or []) for e in carols)
    assert [e.id for e in before.live_contributions(handle=DAVE_GH)] == [carols[0].id]
    assert before.live_contributions(handle="forge:github.com/nobody") == []
    assert before.live_contributions(handle=CAROL_MAIL, type="design") == []
    # Once a claim moves the credit, the handle still lists the work recorded for it (now
    # credited to the claimant), and the claimant's key lists it too.
    claim = f.claim("carol", p, CAROL_MAIL)
    after = ProjectView.build(p, [*records, claim, f.confirm("bob", claim)])
    assert [e.id for e in after.live_contributions(handle=CAROL_MAIL)] == [e.id for e in carols]
    assert [e.id for e in after.live_contributions(author=key("carol").public_key)] == [
        e.id for e in carols
    ]
    # A plain contribution lists no handle.
    plain = f.contribution("bob", p, minutes=5)
    assert ProjectView.build(p, [*records, plain]).live_contributions(handle=CAROL_MAIL) == (
        before.live_contributions(handle=CAROL_MAIL)
    )


def test_confirmations_that_do_not_count() -> None:
    f, p, records = setup()
    claim = f.claim("carol", p, CAROL_MAIL)
    by_non_maintainer = f.confirm("dave", claim)
    bob_claims = f.claim("bob", p, DAVE_GH)
    by_himself = f.confirm("bob", bob_claims)
    view = ProjectView.build(p, [*records, claim, by_non_maintainer, bob_claims, by_himself])
    assert view.claims.resolved == {}
    # A maintainer removed later no longer confirms anything.
    confirmed = [*records, claim, f.confirm("bob", claim)]
    assert ProjectView.build(p, confirmed).claims.resolved
    removed = f.update("alice", p, remove=("bob",))
    assert ProjectView.build(p, [*confirmed, removed]).claims.resolved == {}


def test_withdrawals_give_the_credit_back_to_the_handle() -> None:
    f, p, records = setup()
    claim = f.claim("carol", p, CAROL_MAIL)
    confirmation = f.confirm("bob", claim)
    confirmed = [*records, claim, confirmation]
    # The maintainer withdraws the confirmation by retracting it ...
    withdrawn = ProjectView.build(p, [*confirmed, f.retraction("bob", confirmation)])
    assert CAROL_MAIL in shares_by(withdrawn)
    # ... nobody else can ...
    foreign = ProjectView.build(p, [*confirmed, f.retraction("alice", confirmation)])
    assert _peer("carol") in shares_by(foreign)
    # ... and the claimant may withdraw the claim itself.
    dropped = ProjectView.build(p, [*confirmed, f.retraction("carol", claim)])
    assert CAROL_MAIL in shares_by(dropped)
    # Another maintainer's confirmation keeps a claim confirmed after one is withdrawn.
    again = f.confirm("alice", claim)
    both = ProjectView.build(p, [*confirmed, again, f.retraction("bob", confirmation)])
    assert _peer("carol") in shares_by(both)


def test_two_confirmed_claims_of_one_handle_are_a_dispute() -> None:
    f, p, records = setup()
    carol = f.claim("carol", p, CAROL_MAIL)
    mallory = f.claim("mallory", p, CAROL_MAIL)
    c1, c2 = f.confirm("bob", carol), f.confirm("alice", mallory)
    view = ProjectView.build(p, [*records, carol, mallory, c1, c2])
    assert view.claims.resolved == {}
    assert view.claims.disputed == {
        CAROL_MAIL: tuple(sorted((key("carol").public_key, key("mallory").public_key)))
    }
    assert CAROL_MAIL in shares_by(view)
    # Withdrawing one side's confirmation settles it for the other.
    settled = ProjectView.build(p, [*records, carol, mallory, c1, c2, f.retraction("alice", c2)])
    assert settled.claims.resolved == {CAROL_MAIL: key("carol").public_key}
    # Two claims by the same key are no dispute.
    twice = f.claim("carol", p, CAROL_MAIL)
    same = [*records, carol, twice, c1, f.confirm("alice", twice)]
    assert ProjectView.build(p, same).claims.resolved == {CAROL_MAIL: key("carol").public_key}


def test_a_claim_confirmed_in_one_project_moves_nothing_in_another() -> None:
    f, p, records = setup()
    q = f.project("mallory")
    in_q = f.attested("mallory", q, (CAROL_MAIL,), minutes=10)
    false_claim = f.claim("mallory2", q, CAROL_MAIL)
    confirmed_in_q = f.confirm("mallory", false_claim)
    everything = [*records, q, in_q, false_claim, confirmed_in_q]
    assert ProjectView.build(q, everything).claims.resolved == {
        CAROL_MAIL: key("mallory2").public_key
    }
    assert ProjectView.build(p, everything).claims.resolved == {}
    assert CAROL_MAIL in shares_by(ProjectView.build(p, everything))
    # A confirmation filed under p of a claim made in q does not count in p either.
    body = ClaimConfirmationBody(claim=false_claim.id)
    cross = sign_record(key("bob"), body=body, ts=false_claim.ts + 1, project=p.id)
    assert ProjectView.build(p, [*everything, cross]).claims.resolved == {}


def test_a_handles_resolved_key_cannot_endorse_its_own_work() -> None:
    f, p, records = setup()
    claim = f.claim("bob", p, DAVE_GH)  # bob, a maintainer, is also dave on GitHub
    view = ProjectView.build(p, [*records, claim, f.confirm("alice", claim)])
    # bob's endorsement of c2 stops counting once c2 credits bob himself.
    c2 = records[2]
    assert view.contribution(c2.id) is not None
    assert view.contribution(c2.id).endorsements == 0  # type: ignore[union-attr]
    assert view.why_not_counted(records[4]) == (
        "its author is an author or coauthor of the contribution"
    )


def test_two_handles_of_one_person_count_once() -> None:
    f, p, records = setup()
    first = f.claim("carol", p, CAROL_MAIL)
    second = f.claim("carol", p, DAVE_GH)
    view = ProjectView.build(
        p, [*records, first, second, f.confirm("bob", first), f.confirm("bob", second)]
    )
    # c2 names both handles; both are carol's, so she is its one participant.
    assert view.live_contributions()[0].participants == (key("carol").public_key,)
    assert shares_by(view) == {_peer("carol"): (2, Fraction(150))}


# ---- properties

HANDLES = [CAROL_MAIL, DAVE_GH, "orcid:0000-0002-1825-0097", email_handle(b"erin@x.org")]
PEOPLE = ["carol", "dave", "erin"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Record, list[Record], dict[str, str]]:
    """A project with attested contributions, endorsements, claims and confirmations; and
    the handle -> person mapping the claim rule must produce, computed by a direct model."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",))
    records = [p]
    for _ in range(draw(st.integers(1, 6))):
        handles = draw(st.lists(st.sampled_from(HANDLES), min_size=1, max_size=3, unique=True))
        c = f.attested("alice", p, tuple(handles), minutes=draw(st.integers(0, 500)))
        records.append(c)
        for maintainer in ("alice", "bob"):
            weight = draw(st.one_of(st.none(), st.integers(1, 10)))
            if weight is not None:
                records.append(f.endorsement(maintainer, c, weight=weight))
    confirmed: dict[str, set[str]] = {}
    for _ in range(draw(st.integers(0, 6))):
        who = draw(st.sampled_from(PEOPLE))
        handle = draw(st.sampled_from(HANDLES))
        claim = f.claim(who, p, handle)
        records.append(claim)
        state = draw(st.sampled_from(["none", "confirmed", "withdrawn"]))
        if state != "none":
            maintainer = draw(st.sampled_from(["alice", "bob"]))
            confirmation = f.confirm(maintainer, claim)
            records.append(confirmation)
            if state == "withdrawn":
                records.append(f.retraction(maintainer, confirmation))
            else:
                confirmed.setdefault(handle, set()).add(who)
    resolved = {h: next(iter(w)) for h, w in confirmed.items() if len(w) == 1}
    return p, records, resolved


def _expected(p: Record, records: list[Record], resolved: dict[str, str]) -> dict[str, Fraction]:
    """Endorsed value per contributor text, straight from section 5.7 and the claim rule."""
    maintainers = {key("alice").public_key, key("bob").public_key}
    weights: dict[bytes, dict[bytes, Record]] = {}
    for r in records:
        if r.kind == "endorsement" and r.author in maintainers:
            weights.setdefault(r.body.target, {})[r.author] = r  # type: ignore[union-attr]
    out: dict[str, Fraction] = {}
    for r in records:
        if r.kind != "contribution":
            continue
        people = list(
            dict.fromkeys(
                _peer(resolved[h]) if h in resolved else h
                for h in r.body.on_behalf  # type: ignore[union-attr]
            )
        )
        endorsers = {
            e.author: e for e in weights.get(r.id, {}).values() if e.author_peer_id not in people
        }
        w = sum(e.body.effective_weight for e in endorsers.values())  # type: ignore[union-attr]
        for person in people:
            out[person] = out.get(person, Fraction(0)) + Fraction(
                r.body.minutes * w,
                len(people),  # type: ignore[union-attr]
            )
    return out


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_claims_move_shares_exactly_and_order_does_not_matter(
    scenario: tuple[Record, list[Record], dict[str, str]], rnd: random.Random
) -> None:
    p, records, resolved = scenario
    view = ProjectView.build(p, records)
    assert {h: _peer(w) for h, w in resolved.items()} == {
        h: peer_id(k) for h, k in view.claims.resolved.items()
    }
    got = {text: value for text, (_, value) in shares_by(view).items()}
    assert got == {k: v for k, v in _expected(p, records, resolved).items()}
    shuffled = records[:]
    rnd.shuffle(shuffled)
    again = ProjectView.build(p, shuffled + shuffled[: len(shuffled) // 2])
    assert [s.to_json() for s in again.shares()] == [s.to_json() for s in view.shares()]
    assert [e.to_json() for e in again.live_contributions()] == [
        e.to_json() for e in view.live_contributions()
    ]


def test_a_claim_from_a_device_credits_its_person() -> None:
    f, p, records = setup()
    # Carol's person is her paper key; her phone acts for it (docs/IDENTITY.md).
    devices = [
        f.link("carol-paper", "carol-paper", "ticket"),
        f.join("carol-phone", "carol-paper", "ticket"),
    ]
    claim = f.claim("carol-phone", p, CAROL_MAIL)
    view = ProjectView.build(p, [*devices, *records, claim, f.confirm("bob", claim)])
    assert view.claims.resolved == {CAROL_MAIL: key("carol-paper").public_key}
    assert _peer("carol-paper") in shares_by(view)
    assert CAROL_MAIL not in shares_by(view)
