"""The person fold: which person, if any, each key's records count for (docs/IDENTITY.md).

:meth:`People.fold` is a pure function of a *set* of records, like every view: the same set
gives the same result in any order, and a record given twice counts once. It reads the three
identity kinds and ignores every other record. The rules (docs/IDENTITY.md section 3 and
docs/RECORD-FORMAT.md section 5.9), per person id ``R`` (the recovery key's public key):

1. Every ``device-revoke`` authored by ``R`` is final. The devices it names are *annulled*:
   their links and revocations are dropped whatever their ``ts``, except a link whose ticket
   admits a device that one of ``R``'s revocations lists in ``keep``, which then counts as
   ``R``'s own.
2. A ticket admits a device only when exactly one key has joined ``R`` with it.
3. The remaining links, joins and revocations are applied in ascending ``(ts, id)`` order to
   a set of active devices, starting empty: a link takes effect when its author is ``R`` or
   active; a device is admitted once its ticket is authorised and its join applied (in
   either order), never after a revocation in ``R``; a revocation takes effect when its
   author is ``R``, or is active and names itself or another active device, and then the
   device leaves the active set, revoked with the smallest cut that took effect on it.
4. A key that authored a link or revocation naming itself as ``person`` is a recovery key.

:meth:`People.person_at` then answers for any record: nobody for a recovery key or a key
admitted by two persons, the person for an admitted key (nobody after its cut), and the key
itself for a key no person admitted (a v1 key is a one-device person).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias, cast

from protocol.identity_records import DeviceJoinBody, DeviceLinkBody, DeviceRevokeBody
from protocol.record import Record

__all__ = ["NO_PEOPLE", "Device", "People", "Person"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Device:
    """One key a person admitted: since when (the ``ts`` of the act that completed its
    admission) and, once revoked, the cut after which its records count for nothing."""

    key: bytes
    since: int
    cut: int | None

    @property
    def revoked(self) -> bool:
        return self.cut is not None

    def counts_at(self, ts: int) -> bool:
        """True when a record of this device dated ``ts`` speaks for the person."""
        return self.cut is None or ts <= self.cut


@dataclass(frozen=True, kw_only=True, slots=True)
class Person:
    """The folded state of one person: devices in admission order, and the tickets that
    admitted nobody, either still waiting for a join or joined by more than one key."""

    id: bytes
    devices: tuple[Device, ...]
    waiting_tickets: tuple[bytes, ...]
    contested_tickets: tuple[bytes, ...]

    @property
    def active(self) -> tuple[Device, ...]:
        """The devices that are not revoked."""
        return tuple(d for d in self.devices if d.cut is None)

    def device(self, key: bytes) -> Device | None:
        return next((d for d in self.devices if d.key == key), None)


_Act: TypeAlias = DeviceLinkBody | DeviceJoinBody | DeviceRevokeBody
_IDENTITY_BODIES: Final = frozenset({DeviceLinkBody, DeviceJoinBody, DeviceRevokeBody})


def _order(record: Record) -> tuple[int, bytes]:
    return (record.ts, record.id)


class People:
    """Every person of a set of records, and the person each key's records count for.

    Immutable after :meth:`fold`; threads may share it.
    """

    __slots__ = ("_members", "_persons", "_recovery")

    def __init__(self, persons: dict[bytes, Person], recovery: frozenset[bytes]) -> None:
        self._persons = persons
        self._recovery = recovery
        members: dict[bytes, list[tuple[bytes, Device]]] = {}
        for person in persons.values():
            for device in person.devices:
                members.setdefault(device.key, []).append((person.id, device))
        self._members = members

    def __repr__(self) -> str:
        return f"People({len(self._persons)} persons)"

    @classmethod
    def fold(cls, records: Iterable[Record]) -> People:
        """Fold the identity records among ``records`` (any order, repeats, other kinds)."""
        acts: dict[bytes, dict[bytes, Record]] = {}
        recovery: set[bytes] = set()
        for record in records:
            body = record.body
            # A set look-up of the exact class: the views call this on every record of a
            # project, so it must cost next to nothing for the records it ignores.
            if type(body) in _IDENTITY_BODIES:
                body = cast(_Act, body)
                acts.setdefault(body.person, {})[record.id] = record
                if record.author == body.person and not isinstance(body, DeviceJoinBody):
                    recovery.add(record.author)
        persons = {person: _fold_person(person, held.values()) for person, held in acts.items()}
        return cls(
            {p: s for p, s in persons.items() if s.devices or p in recovery}, frozenset(recovery)
        )

    @property
    def trivial(self) -> bool:
        """True when no record names a person: every key is its own one-device person."""
        return not self._persons and not self._recovery

    def person_at(self, key: bytes, ts: int) -> bytes | None:
        """The person a record of ``key`` dated ``ts`` counts for, or None for nobody."""
        if not self._members and not self._recovery:
            return key
        if key in self._recovery:
            return None
        held = self._members.get(key)
        if held is None:
            return key
        if len(held) != 1:
            return None
        person, device = held[0]
        return person if device.counts_at(ts) else None

    def person_now(self, key: bytes) -> bytes | None:
        """The person a new record of ``key`` would count for (None once it is revoked)."""
        if key in self._recovery:
            return None
        held = self._members.get(key)
        if held is None:
            return key
        if len(held) != 1 or held[0][1].revoked:
            return None
        return held[0][0]

    def person_of_key(self, key: bytes) -> bytes | None:
        """The person a key named in a list (maintainers, coauthors) stands for: a recovery
        key for its own person, a device for the person that admitted it (revoked or not),
        any other key for itself; None for a key two persons admitted."""
        if key in self._recovery:
            return key
        held = self._members.get(key)
        if held is None:
            return key
        return held[0][0] if len(held) == 1 else None

    def person(self, person_id: bytes) -> Person | None:
        """The folded state of a person id, or None when no record names it."""
        return self._persons.get(person_id)

    def is_recovery_key(self, key: bytes) -> bool:
        return key in self._recovery

    def persons_of_device(self, key: bytes) -> tuple[bytes, ...]:
        """Every person that admitted ``key`` (more than one makes its records void)."""
        return tuple(sorted(p for p, _ in self._members.get(key, ())))


#: The people of a set with no identity records: every key is its own person.
NO_PEOPLE: Final = People({}, frozenset())


def _fold_person(person: bytes, held: Iterable[Record]) -> Person:
    """Apply one person's links, joins and revocations (the module docstring's rules)."""
    records = sorted(held, key=_order)
    final = [r for r in records if r.author == person and isinstance(r.body, DeviceRevokeBody)]
    annulled = {r.body.device for r in final if isinstance(r.body, DeviceRevokeBody)}
    annulled.discard(person)
    keep = {k for r in final if isinstance(r.body, DeviceRevokeBody) for k in r.body.keep or ()}
    joiners: dict[bytes, set[bytes]] = {}
    for record in records:
        if isinstance(record.body, DeviceJoinBody):
            joiners.setdefault(record.body.ticket, set()).add(record.author)

    def sole(ticket: bytes) -> bytes | None:
        keys = joiners.get(ticket)
        return next(iter(keys)) if keys is not None and len(keys) == 1 else None

    active: dict[bytes, int] = {}
    admitted: dict[bytes, int] = {}
    cuts: dict[bytes, int] = {}
    authorised: set[bytes] = set()
    joined: set[bytes] = set()

    def admit(key: bytes, ts: int) -> None:
        if key != person and key not in cuts and key not in active:
            active[key] = ts
            admitted[key] = ts

    for record in records:
        body = record.body
        author = record.author
        if isinstance(body, DeviceLinkBody):
            kept = author in annulled and sole(body.ticket) in keep
            if author in annulled and not kept:
                continue
            if author == person or kept or author in active:
                authorised.add(body.ticket)
                device = sole(body.ticket)
                if device is not None and body.ticket in joined:
                    admit(device, record.ts)
        elif isinstance(body, DeviceJoinBody):
            if sole(body.ticket) == author:
                joined.add(body.ticket)
                if body.ticket in authorised:
                    admit(author, record.ts)
        elif isinstance(body, DeviceRevokeBody):
            target = body.device
            if author in annulled:
                continue
            by_device = author in active and (target == author or target in active)
            if author == person or by_device:
                active.pop(target, None)
                cuts[target] = min(cuts.get(target, body.cut), body.cut)
    devices = tuple(
        Device(key=key, since=since, cut=cuts.get(key))
        for key, since in sorted(admitted.items(), key=lambda item: (item[1], item[0]))
    )
    waiting = sorted(t for t in authorised if t not in joined and len(joiners.get(t, ())) <= 1)
    contested = sorted(t for t, keys in joiners.items() if len(keys) > 1)
    return Person(
        id=person,
        devices=devices,
        waiting_tickets=tuple(waiting),
        contested_tickets=tuple(contested),
    )
