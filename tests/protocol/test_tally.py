"""protocol.tally: views from running sums plus a fold of the special records equal the full fold.

A node keeps, per project and participant, the sums of what every contribution adds
(:func:`protocol.tally.credit_of`) and folds only the records that change how a contribution
counts (``node/views/tallied.py`` reads both from its store). Here the same is done in memory,
with no store: the sums are added up from :func:`credit_of` of every contribution, and the
special contributions are chosen as the node's caller contract says (named by an endorsement
or a retraction, carrying a recorded SSH key a proof may need, or naming two handles that
claims send to one key). Every answer of :class:`protocol.tally.TallyView` must then equal
:class:`protocol.ledger.ProjectView` folded over every record, on random histories.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.attest import email_handle, handle_key
from protocol.ledger import ProjectView
from protocol.record import ContributionBody, EndorsementBody, Record, RetractionBody
from protocol.signing import peer_id
from protocol.tally import TallyRow, TallyView, credit_of
from protocol.testing import RecordFactory

KEYS = ["alice", "bob", "carol"]
HANDLES = [email_handle(b"one@example.org"), email_handle(b"two@example.org"), "forge:x.org/u"]
TYPES = ["code", "docs"]
SSH = ["ssh-a", "ssh-b"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[Record, list[Record]]:
    """A project by alice with bob as maintainer, then a random run of its records."""
    f = RecordFactory()
    f.step_ms = 0
    p = f.project("alice", maintainers=("bob",), ts=1000)
    records: list[Record] = []
    contributions: list[Record] = []
    claims: list[Record] = []
    authors: dict[bytes, str] = {}
    for n in range(draw(st.integers(1, 30))):
        op = draw(st.sampled_from("ccaaeerkk"))
        who = draw(st.sampled_from(KEYS))
        ts = 1000 + draw(st.integers(0, 4))
        minutes = draw(st.one_of(st.none(), st.integers(0, 120)))
        if op == "c":
            others = draw(st.lists(st.sampled_from([k for k in KEYS if k != who]), max_size=2))
            record = f.contribution(
                who,
                p,
                type=draw(st.sampled_from(TYPES)),
                minutes=minutes,
                coauthors=tuple(dict.fromkeys(others)),
                ts=ts,
                title=f"work {n}",
            )
            contributions.append(record)
        elif op == "a":
            handles = draw(st.lists(st.sampled_from(HANDLES), min_size=1, max_size=3, unique=True))
            signer = draw(st.sampled_from([None, *SSH]))
            record = f.attested(who, p, tuple(handles), minutes=minutes, ts=ts, signed_by=signer)
            contributions.append(record)
        elif op == "e" and contributions:
            target = draw(st.sampled_from(contributions))
            record = f.endorsement(who, target, weight=draw(st.integers(1, 5)), ts=ts)
        elif op == "r" and records:
            target = draw(st.sampled_from(records))
            if target.kind == "retraction":
                continue
            # Mostly by the target's own author (a retraction that counts), else by anyone.
            by = authors[target.id] if draw(st.booleans()) else who
            record = f.retraction(by, target, ts=ts)
        elif op == "k":
            if claims and draw(st.booleans()):
                record = f.confirm(who, draw(st.sampled_from(claims)), ts=ts)
            else:
                ssh = draw(st.sampled_from([None, *SSH]))
                record = f.claim(who, p, draw(st.sampled_from(HANDLES)), ts=ts, ssh=ssh)
                claims.append(record)
        else:
            continue
        if record.id in authors:
            continue  # the same record again: a store holds it once
        authors[record.id] = who
        records.append(record)
    return p, records


def tally_view(p: Record, records: list[Record]) -> TallyView:
    """What a node's store would hand :class:`TallyView`, made in memory."""
    contributions = [r for r in records if r.kind == "contribution"]
    others = [r for r in records if r.kind != "contribution"]
    sums: Counter[tuple[bytes, str | None, int]] = Counter()
    spent: Counter[tuple[bytes, str | None, int]] = Counter()
    types: Counter[str] = Counter()
    for record in contributions:
        credit = credit_of(record)
        types[credit.type] += 1
        parts = len(credit.participants)
        for key, handle in zip(credit.participants, credit.handles, strict=True):
            sums[(key, handle, parts)] += 1
            spent[(key, handle, parts)] += credit.minutes
    rows = [TallyRow(k, h, parts, n, spent[(k, h, parts)]) for (k, h, parts), n in sums.items()]
    named = {r.body.target for r in others if isinstance(r.body, EndorsementBody | RetractionBody)}
    special = [
        r
        for r in contributions
        if r.id in named or cast(ContributionBody, r.body).ssh_key is not None
    ]
    view = ProjectView.build(p, [p, *others, *special])
    chosen = {r.id for r in special}
    for group in TallyView.merged_handles(view.claims.resolved):
        for record in contributions:
            if record.id in chosen:
                continue
            keys = set(credit_of(record).participants)
            if len(keys & set(group)) > 1:
                special.append(record)
                chosen.add(record.id)
    view = ProjectView.build(p, [p, *others, *special])
    return TallyView(view, lambda: rows, dict(types), special)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_tallies_and_the_special_fold_answer_as_the_full_fold(
    history: tuple[Record, list[Record]],
) -> None:
    p, records = history
    full = ProjectView.build(p, [p, *records])
    tally = tally_view(p, records)
    lines = [s.to_json() for s in full.shares()]
    assert [s.to_json() for s in tally.shares()] == lines
    assert tally.shares_json() == lines
    assert json.loads(tally.shares_text()) == lines
    assert tally.summary().to_json() == full.summary().to_json()
    for kind in (None, *TYPES):
        assert tally.live(kind) == len(full.live_contributions(type=kind))
    for line in full.shares():
        assert tally.contributions_of(line.contributor) == line.contributions
    for record in records:
        if record.kind != "contribution":
            continue
        entry = full.contribution(record.id)
        expected = None if entry is None else entry.to_json()
        assert tally.entry_json(record.id, record.raw) == expected
        made = tally.entry(record)
        assert (None if made is None else made.to_json()) == expected


def test_a_claimed_handles_credit_moves_to_the_claimant_in_the_tallies() -> None:
    """One worked case, checked by hand: bob (a maintainer) attests two commits of a handle,
    carol claims it and bob confirms: carol's line counts the two, the handle has none."""
    f = RecordFactory()
    p = f.project("alice", maintainers=("bob",), ts=1000)
    handle = HANDLES[0]
    one = f.attested("bob", p, (handle,), minutes=None, ts=1001)
    two = f.attested("bob", p, (handle,), minutes=30, ts=1002)
    claim = f.claim("carol", p, handle, ts=1003)
    confirmed = f.confirm("bob", claim, ts=1004)
    tally = tally_view(p, [one, two, claim, confirmed])
    carol = f.pub("carol")
    assert tally.contributions_of(carol) == 2
    assert tally.contributions_of(handle_key(handle)) == 0
    assert tally.units_of(carol) == [carol, handle_key(handle)]
    (line,) = tally.shares_json()
    assert line["contributions"] == 2
    assert line["claimed_minutes"] == 30
    assert (tally.live(), tally.live("code"), tally.live("docs")) == (2, 2, 0)
    assert not tally.is_special(one.id)
    entry = tally.entry_json(one.id, one.raw)
    assert entry is not None
    assert entry["credited"] == [peer_id(carol)]
