"""A project's views from stored tallies: shares and a ledger without folding every record.

Most of a big project's contributions are *plain*: no endorsement or retraction names them,
so each one counts exactly as it was signed, for the participants it names (its author and
coauthors, or for an attested one the stand-ins of its handles, moved to the key a claim
resolves them to). What a plain contribution adds to :meth:`protocol.ledger.ProjectView.shares`
is therefore known the moment it is stored, and a node keeps running sums of it per project
and participant (:func:`credit_of` says what to add). The few *special* records (updates,
endorsements, retractions, claims, confirmations, and the contributions they name) are folded
by :class:`protocol.ledger.ProjectView` as usual, and :class:`TallyView` adds the two: the
same results as folding every record, for the cost of reading the sums and folding the
special records.

The rules stay those of :mod:`protocol.ledger` and :mod:`protocol.attest`; this module only
adds numbers up. It holds for the views of keys as their own persons (no identity record
held: ``People.trivial``); with persons, a node folds every record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, cast

from protocol import attest, codec
from protocol.attest import handle_key
from protocol.ledger import LedgerEntry, ProjectSummary, ProjectView
from protocol.record import ContributionBody, Record, decode_trusted
from protocol.shares import (
    DENOMINATOR,
    JsonObject,
    Share,
    share_json,
    share_json_text,
    share_lines,
)
from protocol.state import cached_peer_id as _peer

__all__ = ["Credit", "TallyRow", "TallyView", "attested_credit", "credit_of"]


class Credit(NamedTuple):
    """What one contribution adds to its project's tallies while no claim moves its credit."""

    #: ``P(c)`` before claims: the author's key then the coauthors', or the handles' stand-ins
    #: (:func:`protocol.attest.handle_key`) of an attested contribution, in the order listed.
    participants: tuple[bytes, ...]
    #: The handle each participant stands for, or None for a key, in the same order.
    handles: tuple[str | None, ...]
    minutes: int
    type: str


class TallyRow(NamedTuple):
    """One stored running sum: a participant's plain credit from contributions that have
    ``parts`` participants (claimed minutes are split ``parts`` ways)."""

    participant: bytes
    #: The handle the participant stands for, or None for a key.
    handle: str | None
    parts: int
    contributions: int
    minutes: int


def credit_of(record: Record) -> Credit:
    """What ``record`` (a contribution) adds to the tallies: the sums a node keeps per
    project, participant and participant count are of exactly these values."""
    body = cast(ContributionBody, record.body)
    if body.on_behalf is not None:
        return attested_credit(body.on_behalf, body.effort_minutes or 0, body.type)
    participants = (record.author, *(body.coauthors or ()))
    return Credit(participants, (None,) * len(participants), body.effort_minutes or 0, body.type)


def attested_credit(on_behalf: tuple[str, ...], minutes: int, type: str) -> Credit:
    """The :class:`Credit` of an attested contribution of ``type`` on behalf of the handles
    ``on_behalf`` claiming ``minutes`` (what :func:`credit_of` says of such a record, for a
    caller that holds its fields rather than the decoded record: a bulk import)."""
    return Credit(tuple(map(handle_key, on_behalf)), on_behalf, minutes, type)


class TallyView:
    """The views of a project from its stored tallies and a fold of its special records.

    ``view`` folds the project's genesis, its records of every kind but ``contribution``, and
    the contributions in ``special``. ``rows`` reads the stored sums over *every* contribution
    of the project held (called when the sums are first needed), ``types`` is its count of
    contributions per type. The caller
    guarantees what makes the rest plain: every contribution not in ``special`` is named by
    no endorsement or retraction of the project and has no two handles that
    ``view.claims.resolved`` sends to one key (:meth:`merged_handles` says which to look for).
    """

    __slots__ = ("_rows", "_special", "_summary", "_sums", "types", "view")

    def __init__(
        self,
        view: ProjectView,
        rows: Callable[[], Iterable[TallyRow]],
        types: Mapping[str, int],
        special: Iterable[Record],
    ) -> None:
        self.view = view
        self._special = {r.id: r for r in special}
        live = dict(types)
        for record in self._special.values():
            kind = cast(ContributionBody, record.body).type
            live[kind] = live.get(kind, 0) - 1
        for entry in view.live_contributions():
            kind = entry.body.type
            live[kind] = live.get(kind, 0) + 1
        #: Live contributions per type.
        self.types = {kind: n for kind, n in live.items() if n}
        # The sums are read when first needed: a ledger page without an author needs none.
        self._rows = rows
        self._sums: (
            tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int], dict[bytes, str]] | None
        ) = None
        self._summary: ProjectSummary | None = None

    def _tallies(
        self,
    ) -> tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int], dict[bytes, str]]:
        """Per participant after claims: live contributions, claimed minutes and endorsed
        value (units of ``1/DENOMINATOR``), the stored sums and the fold's added up; and
        the text of the unclaimed handles' stand-ins among them."""
        if self._sums is not None:
            return self._sums
        contributions: dict[bytes, int] = {}
        claimed: dict[bytes, int] = {}
        handles: dict[bytes, str] = {}
        for key, handle, parts, count, spent in self._rows():
            if handle is not None:
                handles[key] = handle
            # A participant usually has one row (one participant count): no lookups then.
            if key in contributions:
                contributions[key] += count
                claimed[key] += spent * (DENOMINATOR // parts)
            else:
                contributions[key] = count
                claimed[key] = spent * (DENOMINATOR // parts)
        for record in self._special.values():
            credit = credit_of(record)
            share = credit.minutes * (DENOMINATOR // len(credit.participants))
            for key in credit.participants:
                contributions[key] -= 1
                claimed[key] -= share
        counts = {key: count for key, count in contributions.items() if count}
        minutes = {key: claimed[key] for key in counts}
        for handle, person in self.view.claims.resolved.items():
            # A claimed handle's plain credit moves to the key the claim resolves it to.
            stand_in = handle_key(handle)
            if stand_in in counts:
                counts[person] = counts.get(person, 0) + counts.pop(stand_in)
                minutes[person] = minutes.get(person, 0) + minutes.pop(stand_in)
        fold_counts, fold_claimed, endorsed = self.view.accounts()
        for person, count in fold_counts.items():
            counts[person] = counts.get(person, 0) + count
            minutes[person] = minutes.get(person, 0) + fold_claimed[person]
        # Threads may share a view: two may compute this at once, to the same result.
        resolved = self.view.claims.resolved
        names = {k: h for k, h in handles.items() if k in counts and h not in resolved}
        self._sums = (counts, minutes, dict(endorsed), names)
        return self._sums

    @staticmethod
    def merged_handles(resolved: Mapping[str, bytes]) -> list[tuple[bytes, ...]]:
        """The stand-ins of handles that claims resolve to one key, a group per key that has
        two or more: a contribution naming two of one group credits that key once, so it
        must be folded (passed as special), not added up."""
        groups: dict[bytes, list[bytes]] = {}
        for handle, key in sorted(resolved.items()):
            groups.setdefault(key, []).append(handle_key(handle))
        return [tuple(group) for group in groups.values() if len(group) > 1]

    def is_special(self, record_id: bytes) -> bool:
        """Whether the fold holds this contribution (its entry comes from the fold)."""
        return record_id in self._special

    def units_of(self, key: bytes) -> list[bytes]:
        """The participants whose plain credit is ``key``'s: the key itself (unless it is the
        stand-in of a handle a claim resolves) and the stand-ins of the handles claims resolve
        to it."""
        resolved = self.view.claims.resolved
        own = [] if key in {handle_key(h) for h in resolved} else [key]
        return [*own, *(handle_key(h) for h, k in sorted(resolved.items()) if k == key)]

    def live_special(
        self, key: bytes | None, type: str | None, handle: str | None = None
    ) -> list[LedgerEntry]:
        """The fold's live contributions, newest first, filtered as a ledger filters."""
        return self.view.live_contributions(author=key, type=type, handle=handle)

    def entry(self, record: Record) -> LedgerEntry | None:
        """The ledger entry of a contribution of the project, or None when it is retracted."""
        if record.id in self.view.retracted:
            return None
        return self.view.entry_for(record)

    def entry_json(self, record_id: bytes, raw: bytes) -> JsonObject | None:
        """``entry(decode_trusted(raw)).to_json()`` of a contribution of the project read
        back from this node's store (``raw`` was validated when stored), or None when it is
        retracted.

        A plain contribution's entry is made from its unpacked map alone, without building
        and checking a :class:`Record`: it has no counting endorsement, counts for its author
        (keys are their own persons here) and credits its handles as the claims resolve them,
        exactly as :meth:`ProjectView.entry_for` says. A 1,000-entry ledger page spent three
        quarters of its time building records (BENCHMARKS.md, figure 8).
        """
        view = self.view
        if record_id in view.retracted:
            return None
        if record_id in self._special or not view.state.people.trivial:
            return view.entry_for(decode_trusted(raw)).to_json()
        value = codec.unpack_trusted(raw)
        body = value["body"]
        author = _peer(value["author"])
        out: JsonObject = {
            "id": record_id.hex(),
            "author": author,
            "type": body["type"],
            "title": body["title"],
            "effort_minutes": body.get("effort_minutes"),
            "ts": value["ts"],
            "coauthors": [_peer(c) for c in body.get("coauthors", ())],
            "endorsements": 0,
            "endorsed_weight": 0,
            "person": author,
        }
        on_behalf = body.get("on_behalf")
        if on_behalf is not None:
            out.update(attest.attested_json(tuple(on_behalf), view.claims.resolved, _peer))
        return out

    def contributions_of(self, key: bytes) -> int:
        """How many live contributions credit ``key`` (what its share line counts)."""
        return self._tallies()[0].get(key, 0)

    def live(self, type: str | None = None) -> int:
        """How many live contributions the project has (of ``type``, when given)."""
        if type is not None:
            return self.types.get(type, 0)
        return sum(self.types.values())

    def shares(self) -> list[Share]:
        """:meth:`protocol.ledger.ProjectView.shares` of every record of the project."""
        return share_lines(*self._tallies())

    def shares_json(self) -> list[JsonObject]:
        """``[s.to_json() for s in self.shares()]``, made straight from the tallies."""
        return share_json(*self._tallies())

    def shares_text(self) -> str:
        """The compact JSON text of :meth:`shares_json`, made straight from the tallies."""
        return share_json_text(*self._tallies())

    def summary(self) -> ProjectSummary:
        """:meth:`protocol.ledger.ProjectView.summary` of every record of the project."""
        if self._summary is None:
            self._summary = ProjectSummary.of(
                self.view.state,
                contributions=self.live(),
                contributors=len(self._tallies()[0]),
            )
        return self._summary
