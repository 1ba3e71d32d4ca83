"""Generate ``tests/vectors/views.json``: view scenarios for implementations in other languages.

Each scenario is a set of records (canonical bytes as hex, listed in ascending id order so the
order carries no information) and what ``protocol.ledger`` makes of them for one project: its
state, its live contributions newest first, its shares and the authors' latest profiles.
Fractions are exact strings, ``"n/d"`` or ``"n"`` (Python's ``str(Fraction)``).

Everything is deterministic: the keys come from :func:`protocol.testing.key`, the timestamps
from a :class:`~protocol.testing.RecordFactory` that starts at its fixed epoch, and Ed25519
signatures are deterministic, so ``build()`` returns the same value on every run.
``python tests/vectors/gen_views.py`` rewrites the file; ``tests/protocol/test_ledger.py``
checks that the file matches ``build()`` and replays every scenario from its hex alone.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from protocol.attest import email_handle
from protocol.identity import People
from protocol.identity_records import UnknownBody
from protocol.ledger import ProjectView, person_profiles
from protocol.record import EndorsementBody, Record, RetractionBody, sign_record
from protocol.signing import peer_id
from protocol.testing import EPOCH_MS, RecordFactory

__all__ = ["OUTPUT", "SCENARIOS", "build", "expected_of", "main"]

OUTPUT = Path(__file__).with_name("views.json")
FORMAT = "commons-view-vectors-v1"

#: A scenario builds its records with a fresh factory and returns (genesis, all records).
Scenario = tuple[str, str, Callable[[RecordFactory], tuple[Record, list[Record]]]]


def _endorsement_rules(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Wikispeed", maintainers=("bob",), license="CERN-OHL-S-2.0")
    c1 = f.contribution("carol", p, title="Chassis CAD", type="design", minutes=120)
    c2 = f.contribution(
        "dave", p, title="Brake test", type="testing", minutes=60, coauthors=("bob",)
    )
    c3 = f.contribution("alice", p, title="Build guide", type="docs", minutes=30)
    return p, [
        p,
        c1,
        c2,
        c3,
        f.endorsement("alice", c1, weight=3),  # counts
        f.endorsement("bob", c1),  # counts, weight 1
        f.endorsement("dave", c1, weight=5),  # not a maintainer
        f.endorsement("bob", c2, weight=4),  # bob is a coauthor of c2
        f.endorsement("alice", c2),  # counts
        f.endorsement("alice", c3, weight=7),  # her own contribution
        f.endorsement("bob", c3, weight=2),  # counts
    ]


def _coauthor_thirds(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Open Loom")
    c1 = f.contribution("carol", p, title="Frame", minutes=100, coauthors=("dave", "erin"))
    c2 = f.contribution("bob", p, title="Heddles", type="hardware", minutes=50)
    c3 = f.contribution("erin", p, title="Manual", type="docs")  # no minutes: no value
    return p, [
        p,
        c1,
        c2,
        c3,
        f.endorsement("alice", c1, weight=2),
        f.endorsement("alice", c2),
        f.endorsement("alice", c3, weight=10),
    ]


def _maintainer_evolution(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Seed Bank", tags=("seeds",))
    updates = [
        f.update("alice", p, add=("bob",), name="Seed Library", tags=("seeds", "library")),
        f.update("carol", p, name="Hijacked"),  # carol is no maintainer: no effect
        f.update("bob", p, remove=("alice", "bob"), description="gone"),  # would leave none
    ]
    # Two updates at the same ts: the one with the smaller id is applied first. Here that is
    # bob's, so alice is no longer a maintainer when hers comes and carol is never added.
    same_ts = f.now_ms + 100
    updates += [
        f.update("bob", p, remove=("alice",), ts=same_ts),
        f.update("alice", p, add=("carol",), ts=same_ts),
    ]
    f.now_ms = same_ts
    # dave is added and removed by one update: removals come last, so he is not a maintainer.
    updates.append(f.update("bob", p, add=("dave",), remove=("dave",), license="CC0-1.0"))
    c1 = f.contribution("erin", p, title="Catalogue", minutes=90)
    return p, [
        p,
        *updates,
        c1,
        f.endorsement("alice", c1, weight=4),  # alice was removed later: does not count
        f.endorsement("bob", c1),
        f.endorsement("carol", c1, weight=2),
        f.endorsement("dave", c1, weight=8),
    ]


def _retractions(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Repair Cafe", maintainers=("bob",))
    u1 = f.update("alice", p, tags=("repair",))
    c1 = f.contribution("carol", p, title="Toaster", minutes=60)
    c2 = f.contribution("dave", p, title="Lamp", minutes=30)
    c3 = f.contribution("carol", p, title="Radio", minutes=10)
    e2 = f.endorsement("bob", c1, weight=3)
    e3 = f.endorsement("alice", c2)
    r1 = f.retraction("carol", c3)  # her own contribution: c3 and e4 drop out
    return p, [
        p,
        u1,
        c1,
        c2,
        c3,
        f.endorsement("alice", c1, weight=2),
        e2,
        e3,
        f.endorsement("bob", c3),
        r1,
        f.retraction("dave", c1),  # not his: no effect
        f.retraction("bob", e2),  # his own endorsement: drops out
        f.retraction("dave", e3),  # not his: no effect
        f.retraction("carol", r1),  # a retraction cannot be retracted
        f.retraction("alice", u1),  # an update cannot be retracted
    ]


def _repeats_and_zero(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Mesh Net")
    c1 = f.contribution("bob", p, title="Antenna", minutes=45)
    c2 = f.contribution("carol", p, title="Logo", type="design")
    ts = f.now_ms + 10
    return p, [
        p,
        c1,
        c2,
        f.contribution("dave", p, title="Router", minutes=20, ts=ts),
        f.contribution("erin", p, title="Firmware", minutes=20, ts=ts),  # same ts as Router
        f.endorsement("alice", c1, weight=2),
        f.endorsement("alice", c1, weight=3),  # later: replaces her weight 2
        f.endorsement("alice", c2, weight=10),  # no minutes, no value
    ]


def _one_endorsement_per_maintainer(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Tool Library", maintainers=("bob", "carol"))
    c1 = f.contribution("dave", p, title="Drill press", type="hardware", minutes=60)
    c2 = f.contribution("erin", p, title="Lending rules", type="docs", minutes=30)
    bob_latest = f.endorsement("bob", c1, weight=10)
    same_ts = f.now_ms + 50
    records = [
        p,
        c1,
        c2,
        f.endorsement("alice", c1, weight=7),
        f.endorsement("alice", c1, weight=2),  # later: only this one counts, lower or not
        f.endorsement("bob", c1, weight=4, ts=bob_latest.ts - 1),  # counts again: see below
        bob_latest,
        f.retraction("bob", bob_latest),  # retracting his latest restores his weight 4
        f.endorsement("carol", c1, weight=5),
        f.endorsement("carol", c1, weight=6),  # carol is removed below: neither counts
        # Two of alice's at the same ts: the one with the greater id counts.
        f.endorsement("alice", c2, weight=8, ts=same_ts),
        f.endorsement("alice", c2, weight=3, ts=same_ts),
        f.endorsement("bob", c2),
    ]
    f.now_ms = same_ts
    records.append(f.update("alice", p, remove=("carol",)))
    return p, records


def _unendorsed(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Quiet")
    return p, [
        p,
        f.contribution("bob", p, title="Sketch", minutes=30),
        f.contribution("carol", p, title="Model", minutes=30, coauthors=("bob",)),
    ]


def _cross_project_and_profiles(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Here")
    q = f.project("bob", name="Elsewhere")
    cq = f.contribution("carol", q, title="Elsewhere work", minutes=500)
    cp = f.contribution("carol", p, title="Here work", minutes=10)
    # Filed under p but aimed at q's contribution, and filed under q but aimed at p's.
    astray = sign_record(
        f.key("alice"), body=EndorsementBody(target=cq.id, weight=9), ts=f.now_ms + 1, project=p.id
    )
    retract_astray = sign_record(
        f.key("carol"), body=RetractionBody(target=cp.id), ts=f.now_ms + 2, project=q.id
    )
    f.now_ms += 2
    return p, [
        p,
        q,
        cq,
        cp,
        astray,
        retract_astray,
        f.update("bob", q, add=("dave",)),
        f.endorsement("bob", cq),
        f.endorsement("bob", cp, weight=6),  # bob maintains q, not p
        f.endorsement("alice", cp),
        f.profile("carol", name="Carol"),
        f.profile("alice", name="Alice"),
        f.profile("carol", name="Carol C.", about="welder"),  # later: wins
    ]


def _attested_and_claims(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Kernel", maintainers=("bob",))
    carol, dave = email_handle(b"carol@example.org"), "forge:github.com/dave"
    erin = "orcid:0000-0002-1825-0097"
    c1 = f.attested("alice", p, (carol,), title="Fix the scheduler", minutes=60)
    c2 = f.attested("alice", p, (carol, dave), title="Add a driver", minutes=30)
    c3 = f.attested("alice", p, (erin,), title="Docs")  # claims no time: counted, no value
    carol_claim = f.claim("carol", p, carol)
    dave_claim = f.claim("dave", p, dave)
    mallory_claim = f.claim("mallory", p, dave)  # disputes dave's handle
    erin_claim = f.claim("erin", p, erin)
    erin_confirmed = f.confirm("alice", erin_claim)
    return p, [
        p,
        c1,
        c2,
        c3,
        f.endorsement("bob", c1, weight=2),  # counts: the signer alice is no participant
        f.endorsement("alice", c2, weight=3),  # counts
        f.endorsement("carol", c2),  # carol is no maintainer
        carol_claim,
        f.confirm("bob", carol_claim),  # carol's email now credits her key
        dave_claim,
        f.confirm("bob", dave_claim),
        mallory_claim,
        f.confirm("alice", mallory_claim),  # two keys confirmed: dave's handle is disputed
        f.claim("erin", p, "forge:github.com/erin"),  # never confirmed
        erin_claim,
        erin_confirmed,
        f.retraction("alice", erin_confirmed),  # withdrawn: erin's ORCID stays a handle
    ]


def _ssh_proven_claims(f: RecordFactory) -> tuple[Record, list[Record]]:
    p = f.project("alice", name="Signed", maintainers=("bob",))
    carol, dave = email_handle(b"carol@example.org"), "forge:github.com/dave"
    erin, frank, team = "forge:github.com/erin", "forge:github.com/frank", "forge:x.org/team"
    c1 = f.attested("alice", p, (carol,), title="Signed fix", minutes=60, signed_by="carol-ssh")
    c2 = f.attested("alice", p, (dave,), title="Signed driver", minutes=30, signed_by="dave-ssh")
    dave_claim = f.claim("mallory", p, dave)
    return p, [
        p,
        c1,
        c2,
        f.endorsement("bob", c1, weight=2),
        f.endorsement("bob", c2),
        # Proven: carol's SSH key signed her commit, which a maintainer recorded.
        f.claim("carol", p, carol, ssh="carol-ssh"),
        # Not proven: a key nobody recorded for carol's handle.
        f.claim("gina", p, carol, ssh="gina-ssh"),
        # Proven, but a maintainer confirmed mallory's claim of dave's handle: a confirmation
        # outranks a proof, so the handle goes to mallory and dave's proof is overruled.
        f.claim("dave", p, dave, ssh="dave-ssh"),
        dave_claim,
        f.confirm("alice", dave_claim),
        # Not proven: the key was recorded by someone who is no maintainer.
        f.attested("mallory", p, (erin,), signed_by="mallory-ssh"),
        f.claim("mallory", p, erin, ssh="mallory-ssh"),
        # Not proven: the key was recorded by the claimant themselves.
        f.attested("alice", p, (frank,), signed_by="alice-ssh"),
        f.claim("alice", p, frank, ssh="alice-ssh"),
        # Two keys recorded for one handle, proven by two people: a dispute.
        f.attested("bob", p, (team,), signed_by="team-ssh-1"),
        f.attested("bob", p, (team,), title="Another", signed_by="team-ssh-2"),
        f.claim("tom", p, team, ssh="team-ssh-1"),
        f.claim("tina", p, team, ssh="team-ssh-2"),
    ]


def _two_devices(f: RecordFactory) -> tuple[Record, list[Record]]:
    # Alice's person is her paper key; her laptop and phone act for it. The project names
    # her laptop as a maintainer, so her phone endorses as that maintainer too.
    ids = [
        f.link("alice-paper", "alice-paper", "ticket-1"),
        f.join("alice-laptop", "alice-paper", "ticket-1"),
        f.link("alice-laptop", "alice-paper", "ticket-2"),
        f.join("alice-phone", "alice-paper", "ticket-2"),
    ]
    p = f.project("bob", name="Two devices", maintainers=("alice-laptop",))
    c1 = f.contribution("alice-laptop", p, title="Frame", minutes=60)
    c2 = f.contribution("alice-phone", p, title="Photos", minutes=30, coauthors=("alice-laptop",))
    c3 = f.contribution("carol", p, title="Seat", minutes=40)
    return p, [
        *ids,
        p,
        c1,
        c2,
        c3,
        f.endorsement("bob", c1, weight=2),
        f.endorsement("bob", c2),
        f.endorsement("alice-phone", c3, weight=3),  # her new device acts as maintainer
        f.endorsement("alice-laptop", c3, weight=5),  # the same person again: latest counts
        f.endorsement("alice-phone", c1, weight=9),  # her own contribution
        f.retraction("alice-paper", c3),  # a recovery key only manages devices
        f.profile("alice-laptop", name="Alice"),
        f.profile("alice-phone", name="Alice (phone)"),  # later: her person's profile
        f.profile("alice-paper", name="Not a device"),  # counts for nobody
    ]


def _revocation(f: RecordFactory) -> tuple[Record, list[Record]]:
    # The phone is stolen; the laptop revokes it with a cut. The thief's records after the
    # cut count for nothing; a backdated one before the cut still counts (the honest bound).
    start = f.now_ms
    setup = [
        f.link("alice-paper", "alice-paper", "ticket-1"),
        f.join("alice-laptop", "alice-paper", "ticket-1"),
        f.link("alice-laptop", "alice-paper", "ticket-2"),
        f.join("alice-phone", "alice-paper", "ticket-2"),
    ]
    p = f.project("bob", name="Theft", maintainers=("alice-laptop",))
    genuine = f.contribution("alice-phone", p, title="Before theft", minutes=20)
    cut = f.now_ms
    revoke = f.revoke("alice-laptop", "alice-paper", "alice-phone", cut=cut)
    after = f.contribution("alice-phone", p, title="Thief's", minutes=500)
    backdated = f.contribution("alice-phone", p, title="Backdated", minutes=7, ts=start + 2)
    return p, [
        *setup,
        p,
        genuine,
        revoke,
        after,
        backdated,
        f.endorsement("bob", genuine),
        f.endorsement("bob", after, weight=10),
        f.endorsement("bob", backdated),
        f.endorsement("alice-phone", genuine),  # after the cut: counts for nobody
        f.revoke("alice-phone", "alice-paper", "alice-laptop"),  # too late: not active
        f.contribution("alice-laptop", p, title="Still mine", minutes=15),
    ]


def _recovery(f: RecordFactory) -> tuple[Record, list[Record]]:
    # The laptop is stolen and the thief races with identity acts: a link admitting their
    # own device and a revocation of the phone. The paper key revokes the laptop, which
    # annuls every identity act it signed except the link of the phone, which it keeps, and
    # admits a new laptop. A ticket joined by two keys admits neither.
    setup = [
        f.link("alice-paper", "alice-paper", "ticket-1"),
        f.join("alice-laptop", "alice-paper", "ticket-1"),
        f.link("alice-laptop", "alice-paper", "ticket-2"),
        f.join("alice-phone", "alice-paper", "ticket-2"),
    ]
    p = f.project("bob", name="Recovery")
    theft = f.now_ms
    race = [
        f.link("alice-laptop", "alice-paper", "ticket-3"),
        f.join("mallory", "alice-paper", "ticket-3"),
        f.revoke("alice-laptop", "alice-paper", "alice-phone", cut=0),
    ]
    recover = [
        f.revoke("alice-paper", "alice-paper", "alice-laptop", cut=theft, keep=("alice-phone",)),
        f.link("alice-paper", "alice-paper", "ticket-4"),
        f.join("alice-new", "alice-paper", "ticket-4"),
        f.link("alice-new", "alice-paper", "ticket-5"),
        f.join("erin", "alice-paper", "ticket-5"),
        f.join("frank", "alice-paper", "ticket-5"),  # the code leaked: ticket-5 admits nobody
    ]
    return p, [
        *setup,
        p,
        *race,
        *recover,
        f.contribution("alice-phone", p, title="Phone work", minutes=10),
        f.contribution("mallory", p, title="Thief work", minutes=300),
        f.contribution("alice-new", p, title="New laptop work", minutes=5),
        f.contribution("erin", p, title="Leaked ticket", minutes=1),
        f.contribution("alice-laptop", p, title="Stolen laptop", minutes=99),
    ]


def _unknown_kind(f: RecordFactory) -> tuple[Record, list[Record]]:
    # A kind this library does not know is held (stored, forwarded) and counts for nothing,
    # even filed under the project.
    p = f.project("alice", name="Future")
    c = f.contribution("bob", p, title="Work", minutes=10)
    vote = sign_record(
        f.key("alice"),
        body=UnknownBody(name="vote", value={"target": c.id, "score": 5}),
        ts=f.now_ms + 1,
        project=p.id,
    )
    f.now_ms += 1
    return p, [p, c, vote, f.endorsement("alice", c)]


SCENARIOS: list[Scenario] = [
    (
        "endorsement-rules",
        "Endorsements count only from maintainers who are not participants.",
        _endorsement_rules,
    ),
    (
        "coauthor-thirds",
        "Three participants split minutes and value in thirds; no minutes means no value.",
        _coauthor_thirds,
    ),
    (
        "maintainer-evolution",
        "Updates from non-maintainers, updates that would leave no maintainer, same-ts updates "
        "ordered by id, add-and-remove of one key; endorsements weighed by current maintainers.",
        _maintainer_evolution,
    ),
    (
        "retractions",
        "Own retractions drop records out; others', and retractions of retractions or of "
        "updates, have no effect.",
        _retractions,
    ),
    (
        "repeats-and-zero",
        "A maintainer's later endorsement replaces the earlier one; zero-minute contributions "
        "carry no value; equal timestamps order by id.",
        _repeats_and_zero,
    ),
    (
        "one-endorsement-per-maintainer",
        "Of one maintainer's counting endorsements of a contribution only the latest by "
        "(ts, id) counts: a later weight replaces an earlier one, equal timestamps are decided "
        "by id, retracting the latest restores the one before, and a removed maintainer's "
        "endorsements count for nothing.",
        _one_endorsement_per_maintainer,
    ),
    ("unendorsed", "No counting endorsement: every share is 0.", _unendorsed),
    (
        "cross-project-and-profiles",
        "Records of another project, or filed under another project, have no effect here; the "
        "latest profile of each author wins.",
        _cross_project_and_profiles,
    ),
    (
        "attested-and-claims",
        "Attested contributions credit their handles, not their signer; a confirmed claim moves "
        "a handle's credit to the claiming key; two keys confirmed for one handle are a "
        "dispute and the credit stays with the handle; a withdrawn confirmation counts for "
        "nothing; a contribution that claims no time is counted but carries no value.",
        _attested_and_claims,
    ),
    (
        "ssh-proven-claims",
        "A claim proven by the SSH key that a maintainer other than the claimant recorded for "
        "the handle's signed work counts without a confirmation; a key recorded by nobody, by "
        "a non-maintainer or by the claimant proves nothing; a confirmation outranks a proof; "
        "two people proving one handle with two recorded keys are a dispute.",
        _ssh_proven_claims,
    ),
    (
        "two-devices",
        "A person's two devices count as one person: one share, one maintainer, one "
        "endorsement per person, a coauthor device adds nobody; a recovery key's other "
        "records count for nothing (docs/IDENTITY.md).",
        _two_devices,
    ),
    (
        "revocation",
        "A revoked device's records after the cut count for nothing, its backdated ones "
        "before the cut still count, and its identity acts after its revocation do nothing.",
        _revocation,
    ),
    (
        "recovery",
        "A recovery-key revocation annuls every identity act of the stolen device except the "
        "links it keeps; new devices join; a ticket joined by two keys admits neither.",
        _recovery,
    ),
    (
        "unknown-kind",
        "A record of a kind this library does not know counts for nothing.",
        _unknown_kind,
    ),
]


def _fraction(value: Fraction) -> str:
    return str(value)


def _key(public_key: bytes) -> dict[str, str]:
    return {"public_key": public_key.hex(), "peer_id": peer_id(public_key)}


def expected_of(view: ProjectView, records: Iterable[Record]) -> dict[str, object]:
    """What a scenario expects, computed from a view (and, for profiles, all its records)."""
    state = view.state
    latest = person_profiles(records, People.fold(records))
    return {
        "state": {
            "name": state.name,
            "description": state.description,
            "license": state.license,
            "links": list(state.links),
            "tags": list(state.tags),
            "maintainers": [_key(m) for m in state.sorted_maintainers],
            "updated_ts": state.updated_ts,
            "applied_updates": [u.hex() for u in state.applied_updates],
            "rejected_updates": [u.hex() for u in state.rejected_updates],
        },
        "retracted": sorted(r.hex() for r in view.retracted),
        "ledger": [
            {
                "id": entry.id.hex(),
                "author": peer_id(entry.record.author),
                "person": peer_id(view.person_of(entry.record) or entry.record.author),
                "endorsements": entry.endorsements,
                "weight": entry.weight,
                **({"credited": entry.to_json()["credited"]} if entry.credited else {}),
            }
            for entry in view.live_contributions()
        ],
        "contributions": view.summary().contributions,
        "contributors": view.contributors(),
        "total_endorsed_value": _fraction(view.total_endorsed_value()),
        "shares": [
            {
                **_key(s.contributor),
                **({"handle": s.handle} if s.handle else {}),
                "contributions": s.contributions,
                "claimed_minutes": _fraction(s.claimed_minutes),
                "endorsed_value": _fraction(s.endorsed_value),
                "share": _fraction(s.share),
            }
            for s in view.shares()
        ],
        **(
            {"claims": {h: peer_id(k) for h, k in sorted(view.claims.resolved.items())}}
            if view.claims.resolved
            else {}
        ),
        **(
            {"disputed": {h: [peer_id(k) for k in ks] for h, ks in view.claims.disputed.items()}}
            if view.claims.disputed
            else {}
        ),
        "profiles": [
            {**_key(person), "record": latest[person].id.hex()} for person in sorted(latest)
        ],
    }


def build() -> dict[str, object]:
    """The whole vector file as a JSON-ready value."""
    scenarios = []
    for name, description, make in SCENARIOS:
        genesis, records = make(RecordFactory(now_ms=EPOCH_MS))
        scenarios.append(
            {
                "name": name,
                "description": description,
                "project": genesis.id.hex(),
                "records": [r.raw.hex() for r in sorted(records, key=lambda r: r.id)],
                "expected": expected_of(ProjectView.build(genesis, records), records),
            }
        )
    return {
        "format": FORMAT,
        "description": (
            "View scenarios of docs/RECORD-FORMAT.md section 5. For each scenario: decode every "
            "record, take the project record whose id is `project` as the genesis, fold all "
            "records into that project's views, and compare with `expected`. Fractions are "
            "exact strings 'n/d' or 'n'. `state.maintainers` and `profiles` are in ascending "
            "public-key order; `ledger` is newest first (descending (ts, id)); `shares` is "
            "largest share first, then larger claimed minutes, more contributions, smaller "
            "public key. Every key is read as its person (docs/IDENTITY.md): `ledger[].person`, "
            "`shares` and `profiles` are persons; a key no identity record names is its own "
            "person. Generated by tests/vectors/gen_views.py."
        ),
        "scenarios": scenarios,
    }


def render() -> str:
    """The file's exact text."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
