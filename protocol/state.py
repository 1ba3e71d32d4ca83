"""A project's state (section 5.3 of docs/RECORD-FORMAT.md) and profiles (section 5.8).

The maintainers of a project are persons (docs/IDENTITY.md section 4): a key in a
``maintainers`` list stands for the person it belongs to, and an update takes effect when the
person of its record is a maintainer. With no identity records every key is its own person and
these are exactly the rules of format v1. Pure functions of a set of records, like every view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final, cast

from protocol.errors import LocalProtocolError
from protocol.identity import NO_PEOPLE, People
from protocol.record import ProfileBody, ProjectBody, ProjectUpdateBody, Record
from protocol.signing import peer_id

__all__ = [
    "ProjectState",
    "cached_peer_id",
    "fold_updates",
    "genesis_body",
    "order_key",
    "person_profiles",
    "profiles",
    "project_state",
]

#: Peer ids are cached because a ledger of many contributions repeats few authors, and the
#: base58 encoding is the slowest part of turning an entry into JSON.
_PEER_ID_CACHE_SIZE: Final = 4096


def order_key(record: Record) -> tuple[int, bytes]:
    """The ``(ts, id)`` key by which every view orders records."""
    return (record.ts, record.id)


@lru_cache(maxsize=_PEER_ID_CACHE_SIZE)
def cached_peer_id(public_key: bytes) -> str:
    return peer_id(public_key)


# --------------------------------------------------------------------------------------------
# Project state


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectState:
    """A project's current metadata and maintainers, after every update that took effect.

    ``links`` and ``tags`` are empty when the project never had any; ``description`` and
    ``license`` are ``None`` when never given. ``updated_ts`` is the greatest ``ts`` among the
    genesis and the updates that took effect. ``applied_updates`` and ``rejected_updates`` list
    the ids of this project's updates in the order they were considered (ascending
    ``(ts, id)``): the ones that took effect and the ones that did not.
    """

    id: bytes
    genesis: Record
    name: str
    description: str | None
    license: str | None
    links: tuple[str, ...]
    tags: tuple[str, ...]
    maintainers: frozenset[bytes]
    updated_ts: int
    applied_updates: tuple[bytes, ...]
    rejected_updates: tuple[bytes, ...]
    #: The persons the maintainers and authors are counted as (docs/IDENTITY.md).
    people: People = field(default=NO_PEOPLE, compare=False, repr=False)

    @property
    def sorted_maintainers(self) -> tuple[bytes, ...]:
        """The maintainers' public keys in ascending byte order (the order JSON shows)."""
        return tuple(sorted(self.maintainers))

    def is_maintainer(self, public_key: bytes) -> bool:
        """True when a new record by this key would speak for a maintainer (a maintainer's
        person id, or an active device of a maintainer)."""
        return self.people.person_now(public_key) in self.maintainers

    @property
    def maintainer_peer_ids(self) -> tuple[str, ...]:
        """The maintainers' peer ids, in the order of :attr:`sorted_maintainers`."""
        return tuple(cached_peer_id(m) for m in self.sorted_maintainers)


def genesis_body(genesis: Record) -> ProjectBody:
    body = genesis.body
    if not isinstance(body, ProjectBody):
        raise LocalProtocolError(
            "not-a-project", f"a project view starts from a project record, not a {genesis.kind}"
        )
    return body


def project_state(
    genesis: Record, updates: Iterable[Record], people: People = NO_PEOPLE
) -> ProjectState:
    """Fold a project's updates into its current state (see the module docstring for rules).

    ``updates`` may hold anything: records that are not ``project-update`` records of this
    project are ignored, and so are repeats. ``people`` is the person fold of the identity
    records held (:meth:`protocol.identity.People.fold`); without it every key is a person.
    Raises ``LocalProtocolError("not-a-project")``
    when ``genesis`` is not a ``project`` record.
    """
    body = genesis_body(genesis)
    pid = genesis.id
    unique = {
        u.id: u for u in updates if u.project == pid and isinstance(u.body, ProjectUpdateBody)
    }
    return fold_updates(genesis, body, unique.values(), people)


def _persons(people: People, keys: Iterable[bytes]) -> frozenset[bytes]:
    """The persons a list of keys names; a key two persons admitted names nobody."""
    found = {people.person_of_key(k) for k in keys}
    found.discard(None)
    return cast(frozenset[bytes], frozenset(found))


def fold_updates(
    genesis: Record, body: ProjectBody, updates: Iterable[Record], people: People
) -> ProjectState:
    """Apply ``updates`` (this project's, without repeats) to the genesis state."""
    name = body.name
    description = body.description
    license_ = body.license
    links = body.links or ()
    tags = body.tags or ()
    founder = people.person_at(genesis.author, genesis.ts)
    maintainers = _persons(people, body.maintainers or ())
    if founder is not None:
        maintainers |= {founder}
    updated_ts = genesis.ts
    applied: list[bytes] = []
    rejected: list[bytes] = []
    for update in sorted(updates, key=order_key):
        if people.person_at(update.author, update.ts) not in maintainers:
            rejected.append(update.id)
            continue
        change = cast(ProjectUpdateBody, update.body)
        after = maintainers.union(_persons(people, change.add_maintainers or ())).difference(
            _persons(people, change.remove_maintainers or ())
        )
        if not after:
            rejected.append(update.id)
            continue
        maintainers = after
        fields = change.set
        if fields is not None:
            name = fields.name if fields.name is not None else name
            description = fields.description if fields.description is not None else description
            license_ = fields.license if fields.license is not None else license_
            links = fields.links if fields.links is not None else links
            tags = fields.tags if fields.tags is not None else tags
        updated_ts = max(updated_ts, update.ts)
        applied.append(update.id)
    return ProjectState(
        id=genesis.id,
        genesis=genesis,
        name=name,
        description=description,
        license=license_,
        links=links,
        tags=tags,
        maintainers=maintainers,
        updated_ts=updated_ts,
        applied_updates=tuple(applied),
        rejected_updates=tuple(rejected),
        people=people,
    )


# --------------------------------------------------------------------------------------------
# Profiles


def profiles(records: Iterable[Record]) -> dict[bytes, Record]:
    """Per author, their ``profile`` record with the greatest ``(ts, id)``; others ignored."""
    latest: dict[bytes, Record] = {}
    for record in records:
        if isinstance(record.body, ProfileBody):
            current = latest.get(record.author)
            if current is None or order_key(record) > order_key(current):
                latest[record.author] = record
    return latest


def person_profiles(records: Iterable[Record], people: People) -> dict[bytes, Record]:
    """Per person, the ``profile`` with the greatest ``(ts, id)`` among those its devices
    signed that count for it (a revoked device's profiles dated after its cut do not)."""
    latest: dict[bytes, Record] = {}
    for record in records:
        if isinstance(record.body, ProfileBody):
            person = people.person_at(record.author, record.ts)
            if person is None:
                continue
            current = latest.get(person)
            if current is None or order_key(record) > order_key(current):
                latest[person] = record
    return latest
