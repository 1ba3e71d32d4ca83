"""People and records in detail: display names, profiles, and where a contribution went.

A profile is a peer's own claim about itself (its latest by ``(ts, id)`` counts, the rule of
``protocol.ledger.profiles``), and a person's profile is the latest of any of its devices
(``protocol.ledger.person_profiles``, docs/IDENTITY.md); names are not unique, so every table
shows one beside a short id.
``record_detail`` answers ``record show`` and ``GET /api/v1/records/<id>``: the record as
``record_json`` gives it, plus what the project's fold (``protocol.ledger``) says about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.views.cache import ViewError, record_json
from protocol.errors import ProtocolError
from protocol.identity import People
from protocol.identity_records import IDENTITY_KINDS
from protocol.ledger import as_number, order_key, person_profiles, profiles
from protocol.record import ContributionBody, EndorsementBody, ProfileBody, Record, RetractionBody
from protocol.signing import peer_id, public_key_from_peer_id

if TYPE_CHECKING:
    from node.store.sqlite import Store
    from node.views.cache import ViewCache

__all__ = ["names", "people_of", "person_json", "profile_json", "record_detail"]


def people_of(store: Store) -> People:
    """The person fold of the identity records the store holds."""
    return People.fold(store.of_kinds(IDENTITY_KINDS))


def names(store: Store) -> dict[str, str]:
    """Every display name held: peer id to the name of that peer's current profile, and a
    person's id to the name of the person's profile."""
    latest = store.profiles()
    found = {
        peer_id(author): record.body.name
        for author, record in profiles(latest).items()
        if isinstance(record.body, ProfileBody)
    }
    people = people_of(store)
    if not people.trivial:
        for person, record in person_profiles(latest, people).items():
            if isinstance(record.body, ProfileBody):
                found[peer_id(person)] = record.body.name
    return found


def profile_json(store: Store, peer: str) -> dict[str, Any]:
    """``GET /api/v1/profiles/<peer>``: the peer's current profile; ``ViewError`` 404 if none."""
    try:
        key = public_key_from_peer_id(peer)
    except ProtocolError as exc:
        raise ViewError(exc.message, 400) from None
    people = people_of(store)
    person = people.person_of_key(key) or key
    if people.trivial:
        record = store.profile(key)
    else:  # the person's profile: the latest that counts, of any of its devices
        record = person_profiles(store.profiles(), people).get(person)
    if record is None or not isinstance(record.body, ProfileBody):
        raise ViewError(f"no profile of {peer} is held here")
    body = record.body
    return {
        "peer_id": peer_id(key),
        "person": peer_id(person),
        "id": record.id.hex(),
        "ts": record.ts,
        "name": body.name,
        "about": body.about,
        "links": list(body.links or ()),
    }


def record_detail(views: ViewCache, record: Record) -> dict[str, Any]:
    """``record_json(record)`` with, for a contribution, its endorsements (each saying whether
    it counts and why not), its retraction and what it counts for; for an endorsement, whether
    it counts. Every peer gets its display name beside it (``*_name``, null when none)."""
    who = names(views.store)
    out = record_json(record)
    out["author_name"] = who.get(out["author"])
    if record.project is None or record.kind not in ("contribution", "endorsement"):
        return out
    try:
        view = views.project_view(record.project.hex())
    except ViewError:
        # The project's genesis is not held here (yet): nothing of it counts, and the record
        # is shown as it is.
        out["project_held"] = False
        if isinstance(record.body, EndorsementBody):
            out["counts"], out["why_not_counted"] = False, "its project is not held here"
        return out
    if isinstance(record.body, EndorsementBody):
        reason = view.why_not_counted(record)
        out["counts"] = reason is None
        out["why_not_counted"] = reason
        return out
    body = record.body
    assert isinstance(body, ContributionBody)
    related = views.store.referring(record.id)
    endorsements = []
    for e in sorted(related, key=order_key):
        if not isinstance(e.body, EndorsementBody):
            continue
        reason = view.why_not_counted(e)
        author = peer_id(e.author)
        endorsements.append(
            {
                "id": e.id.hex(),
                "author": author,
                "author_name": who.get(author),
                "weight": e.body.effective_weight,
                "comment": e.body.comment,
                "ts": e.ts,
                "counts": reason is None,
                "why_not_counted": reason,
            }
        )
    out["endorsements"] = endorsements
    # The retraction that took effect: by the contribution's author, in its project.
    retractions = [
        r
        for r in related
        if isinstance(r.body, RetractionBody)
        and r.author == record.author
        and r.project == record.project
    ]
    out["live"] = view.is_live(record.id)
    out["retraction"] = None
    if retractions and not out["live"]:
        first = min(retractions, key=order_key)
        reason_text = first.body.reason if isinstance(first.body, RetractionBody) else None
        out["retraction"] = {"id": first.id.hex(), "ts": first.ts, "reason": reason_text}
    entry = view.contribution(record.id)
    credit = view.credit(record.id) or []
    total = view.total_endorsed_value()
    value = sum((endorsed for _, _, endorsed in credit), start=0 * total)
    out["endorsed_weight"] = entry.weight if entry is not None else 0
    out["counts_for"] = {
        "claimed_minutes": (body.effort_minutes or 0) if entry is not None else 0,
        "endorsed_value": as_number(value),
        "share_of_project": as_number(value / total) if total else 0,
        "participants": [
            {
                "peer_id": peer_id(p),
                "name": who.get(peer_id(p)),
                "claimed_minutes": as_number(claimed),
                "endorsed_value": as_number(endorsed),
            }
            for p, claimed, endorsed in credit
        ],
    }
    return out


def person_json(people: People, peer: str) -> dict[str, Any]:
    """``commons identity show`` and ``GET /api/v1/people/<peer>``: the person a key acts
    for, with its devices (docs/IDENTITY.md). ``peer`` may name a device or a person id.

    A key no identity record names is a person of one device, itself; a key that two persons
    admitted acts for neither (``person`` null, ``claimed_by`` lists them)."""
    try:
        key = public_key_from_peer_id(peer)
    except ProtocolError as exc:
        raise ViewError(exc.message, 400) from None
    person = people.person_of_key(key)
    claimed = [peer_id(p) for p in people.persons_of_device(key)]
    state = None if person is None else people.person(person)
    devices: list[dict[str, Any]]
    if state is None:
        devices = [] if person is None else [{"device": peer_id(key), "since": None, "cut": None}]
    else:
        devices = [
            {"device": peer_id(d.key), "since": d.since, "cut": d.cut} for d in state.devices
        ]
    for device in devices:
        device["active"] = device["cut"] is None
    return {
        "peer_id": peer_id(key),
        "person": None if person is None else peer_id(person),
        "recovery_key": state is not None,
        "devices": devices,
        "waiting_links": 0 if state is None else len(state.waiting_tickets),
        "contested_links": 0 if state is None else len(state.contested_tickets),
        "claimed_by": claimed if len(claimed) > 1 else [],
    }
