"""The views: project state, live contributions, counting endorsements and shares.

Every view is a pure, deterministic function of a *set* of records (docs/RECORD-FORMAT.md section
5): the same set gives the same result whatever order the records come in, and a record given
twice counts once (records are identified by their id). Records handed in are assumed to be
well-formed (:func:`protocol.validation.parse_record` or the node's own store); nothing here
checks a signature, reads a clock or does I/O.

The node calls :meth:`ProjectView.build` with the records it holds for one project; the CLI and
the API turn the results into JSON with the ``to_json`` methods, so both print the same shapes
(docs/INTERFACES.md).

The rules, with the choices this module makes where section 5 is silent (each one tested in
``tests/protocol/test_ledger.py`` and pinned for other implementations by
``tests/vectors/views.json``):

* **Ordering.** "Ascending ``(ts, id)``" compares ``ts`` as an integer, then the 32-byte ids
  bytewise. Ids are unique, so this is a total order.
* **Project state.** Maintainers start as the genesis author plus the genesis ``maintainers``.
  The project's ``project-update`` records are applied in ascending ``(ts, id)`` order, including
  any whose ``ts`` is earlier than the genesis (the format does not forbid them). An update from
  a non-maintainer (at that point) has no effect at all. Otherwise its maintainer lists are
  applied as one set expression, ``M' = (M | add) - remove``: additions first, then removals,
  so a key named in both lists ends up *not* a maintainer. If ``M'`` is empty the whole update,
  ``set`` included, has no effect. Otherwise ``M'`` takes effect and each field present in
  ``set`` replaces the current value whole (a list replaces the list).
* **Scope.** Only records whose ``project`` is this project are looked at; a retraction or an
  endorsement filed under another project has no effect here, even if its target is here.
* **Retractions.** A retraction takes effect when its target is a ``contribution`` or an
  ``endorsement`` of this project held in the set and its author is the target's author. A
  retraction of anything else (a retraction, an update, an unknown id) has no effect, so a
  retraction cannot be undone. A retracted record drops out of every view.
* **Counting endorsements.** An endorsement is *eligible* when it is not retracted, its
  target is a live contribution of this project, its author is a maintainer in the project's
  *current* state (after every update, so removing a maintainer removes the weight of their
  past endorsements, and adding one makes theirs count) and its author is not a participant
  (author or coauthor) of the target. One maintainer, one endorsement: of one maintainer's
  eligible endorsements of one contribution, only the latest by ``(ts, id)`` counts, so
  re-endorsing replaces the weight and never adds to it, and a contribution's weight is at
  most 10 per maintainer. Retracting that latest one leaves the maintainer's previous
  eligible endorsement, which then counts (a retraction undoes a re-endorsement). A
  maintainer who is removed has none that count; added back, their latest counts again.
* **Participants.** ``P(c)`` is the contribution's author followed by its coauthors; for an
  attested contribution, the participants its handles credit after claims (protocol.attest).
* **Shares.** As section 5, in exact :class:`fractions.Fraction` arithmetic; see
  :meth:`ProjectView.shares` for the order of the list.
* **Persons.** Every rule above reads "author" as the person of the record and a key in a
  list as the person it belongs to (:mod:`protocol.identity`, docs/RECORD-FORMAT.md section
  5.9): a record whose person is nobody (a revoked device after its cut, a recovery key, a
  key two persons claim) has no effect, and ``P(c)``, the maintainers and "one maintainer,
  one endorsement" are persons. With no identity records each key is its own person, and
  these are the rules of format v1 exactly (the fold then takes the same path as before).
* **Ledger filter by author.** ``live_contributions(author=k)`` keeps the contributions in
  which ``k``'s person is a participant (author or coauthor), the same contributions that
  ``shares()`` credits to that person.
  ``live_contributions(handle=h)`` keeps the attested contributions recorded on behalf of
  handle ``h`` (among their ``on_behalf``), whoever a claim has moved its credit to.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, NamedTuple, cast

from protocol import attest
from protocol.attest import ClaimBody, ClaimConfirmationBody, ClaimState
from protocol.errors import LocalProtocolError
from protocol.identity import People
from protocol.record import (
    ContributionBody,
    EndorsementBody,
    ProjectUpdateBody,
    Record,
    RetractionBody,
)
from protocol.shares import (
    DENOMINATOR,
    JsonObject,
    Share,
    as_number,
    share_lines,
)
from protocol.state import (
    ProjectState,
    fold_updates,
    genesis_body,
    order_key,
    person_profiles,
    profiles,
    project_state,
)
from protocol.state import cached_peer_id as _peer

__all__ = [
    "DENOMINATOR",
    "JsonObject",
    "LedgerEntry",
    "ProjectState",
    "ProjectSummary",
    "ProjectView",
    "Share",
    "as_number",
    "order_key",
    "participants",
    "person_profiles",
    "profiles",
    "project_state",
    "recorded_for",
    "share_lines",
]


#: :func:`order_key` as a C-level getter, for sorting many records, and its first half.
_ORDER: Final = operator.attrgetter("ts", "id")
_TS: Final = operator.attrgetter("ts")


def _newest_first(records: Iterable[Record]) -> list[Record]:
    """``records`` in descending ``(ts, id)`` order.

    Sorting on the integer ``ts`` alone is about twice as fast as on ``(ts, id)`` tuples
    (50,000 shuffled records: 13 ms against 30 ms). Only when two records share a timestamp
    does a second sort on ``(ts, id)`` run, cheap on the list that is already almost in order.
    """
    ordered = sorted(records, key=_TS, reverse=True)
    if len({r.ts for r in ordered}) != len(ordered):
        ordered.sort(key=_ORDER, reverse=True)
    return ordered


def participants(record: Record) -> tuple[bytes, ...]:
    """``P(c)`` of a contribution: its author, then its coauthors in the order listed."""
    body = record.body
    if not isinstance(body, ContributionBody):
        raise LocalProtocolError("not-a-contribution", f"a {record.kind} has no participants")
    return _participants(record.author, body)


def recorded_for(record: Record, handle: str) -> bool:
    """Whether contribution ``record`` is attested on behalf of ``handle`` (what a ledger
    filtered by a handle lists: the work recorded for it, claimed or not)."""
    on_behalf = cast(ContributionBody, record.body).on_behalf
    return on_behalf is not None and handle in on_behalf


def _participants(author: bytes, body: ContributionBody) -> tuple[bytes, ...]:
    # A record never lists its author among its coauthors (``coauthor-is-author``), and never
    # a coauthor twice, so these are |P(c)| distinct keys.
    coauthors = body.coauthors
    return (author,) if coauthors is None else (author, *coauthors)


def _persons_of(people: People, record: Record) -> tuple[bytes, ...]:
    """``P(c)`` as persons: the author's person, then each coauthor's, without repeats (a
    coauthor that is another device of the author adds nobody; a void key is left out)."""
    body = cast(ContributionBody, record.body)
    found = [people.person_at(record.author, record.ts)]
    found.extend(people.person_of_key(c) for c in body.coauthors or ())
    return tuple(dict.fromkeys(p for p in found if p is not None))


# --------------------------------------------------------------------------------------------
# Results


class LedgerEntry(NamedTuple):
    """One live contribution, with the count and total weight of its counting endorsements.

    A named tuple rather than a frozen dataclass because a full ledger makes tens of
    thousands of them, and a tuple is built about twice as fast.
    """

    record: Record
    endorsements: int
    weight: int
    #: The person the contribution counts for (docs/IDENTITY.md); None means its author key.
    person: bytes | None = None
    #: An attested contribution's participants after claims (protocol.attest), else None.
    credited: tuple[bytes, ...] | None = None

    @property
    def id(self) -> bytes:
        """The contribution's id."""
        return self.record.id

    @property
    def body(self) -> ContributionBody:
        """The contribution's body: type, title, effort, artifacts, coauthors."""
        return cast(ContributionBody, self.record.body)

    @property
    def participants(self) -> tuple[bytes, ...]:
        """``P(c)``: the author's public key, then the coauthors' in the order listed; for an
        attested contribution, the handles' credited participants."""
        return self.credited or _participants(self.record.author, self.body)

    @property
    def author_peer_id(self) -> str:
        """The author's peer id, the text form of ``record.author``."""
        return _peer(self.record.author)

    @property
    def coauthor_peer_ids(self) -> tuple[str, ...]:
        """The coauthors' peer ids, in the order the record lists them."""
        return tuple(_peer(c) for c in self.body.coauthors or ())

    def to_json(self) -> JsonObject:
        """The entry as ``commons ledger --json`` prints it (docs/INTERFACES.md).

        ``effort_minutes`` is ``None`` (JSON null) when the contribution claims none;
        ``endorsements`` is the number of counting endorsements and ``endorsed_weight`` the
        sum of their weights (what the contribution's claimed minutes are multiplied by).
        """
        body = self.body
        return {
            "id": self.record.id.hex(),
            "author": _peer(self.record.author),
            "type": body.type,
            "title": body.title,
            "effort_minutes": body.effort_minutes,
            "ts": self.record.ts,
            "coauthors": [_peer(c) for c in body.coauthors or ()],
            "endorsements": self.endorsements,
            "endorsed_weight": self.weight,
            "person": _peer(self.person or self.record.author),
            **attest.entry_json(body.on_behalf, self.credited, _peer),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectSummary:
    """What ``project show`` and ``project list`` print about a project.

    ``maintainers`` are public keys in ascending byte order; ``contributions`` counts the live
    contributions and ``contributors`` the distinct participants of live contributions.
    """

    id: bytes
    name: str
    description: str | None
    license: str | None
    links: tuple[str, ...]
    tags: tuple[str, ...]
    maintainers: tuple[bytes, ...]
    contributions: int
    contributors: int

    @classmethod
    def of(cls, state: ProjectState, *, contributions: int, contributors: int) -> ProjectSummary:
        """The summary of a project in ``state`` with these counts (a fold and the tallies
        count differently, and describe the project alike)."""
        return cls(
            id=state.id,
            name=state.name,
            description=state.description,
            license=state.license,
            links=state.links,
            tags=state.tags,
            maintainers=state.sorted_maintainers,
            contributions=contributions,
            contributors=contributors,
        )

    @property
    def maintainer_peer_ids(self) -> tuple[str, ...]:
        """The maintainers' peer ids, in the order of ``maintainers``."""
        return tuple(_peer(m) for m in self.maintainers)

    def to_json(self) -> JsonObject:
        """The ``project show --json`` object; absent description and license are null."""
        return {
            "id": self.id.hex(),
            "name": self.name,
            "description": self.description,
            "license": self.license,
            "links": list(self.links),
            "tags": list(self.tags),
            "maintainers": [_peer(m) for m in self.maintainers],
            "contributions": self.contributions,
            "contributors": self.contributors,
        }

    def to_list_json(self) -> JsonObject:
        """One item of the ``project list --json`` array."""
        return {
            "id": self.id.hex(),
            "name": self.name,
            "maintainers": [_peer(m) for m in self.maintainers],
            "contributions": self.contributions,
            "contributors": self.contributors,
        }


@dataclass(frozen=True, slots=True)
class _Accounts:
    """Per-participant integer tallies, in units of ``1/DENOMINATOR`` minutes."""

    contributions: dict[bytes, int]
    claimed: dict[bytes, int]
    endorsed: dict[bytes, int]


# --------------------------------------------------------------------------------------------
# The view of one project


class ProjectView:
    """The views of one project, folded once from the records a node holds for it.

    Build it with :meth:`build`; the constructor takes already-folded parts. Building is
    O(n) in the number of records (dictionary lookups only); the per-participant accounts are
    computed on first use and kept, so a view answers ``shares()``, ``contributors()`` and
    ``summary()`` without folding twice. Nothing else changes after ``build``, so threads may
    share a view: at worst two of them compute the same accounts at once.
    """

    __slots__ = (
        *("_accounts", "_counted", "_credited", "_live", "_parts", "_retracted", "_weights"),
        *("claims", "state"),
    )

    def __init__(
        self,
        *,
        state: ProjectState,
        live: dict[bytes, Record],
        retracted: frozenset[bytes],
        counted: dict[bytes, list[Record]],
        credited: dict[bytes, tuple[bytes, ...]] | None = None,
        claims: ClaimState = attest.EMPTY_CLAIMS,
    ) -> None:
        self.state = state
        #: Attested contributions' credited participants, by contribution id.
        self._credited = credited or {}
        #: Where claimed handles' credit goes (protocol.attest.fold_claims).
        self.claims = claims
        #: Per live contribution, its participants as persons, when any record names a person
        #: (empty otherwise: every key is then its own person, and P(c) is the keys).
        self._parts: dict[bytes, tuple[bytes, ...]] = {}
        people = state.people
        if not people.trivial:
            self._parts = {cid: _persons_of(people, r) for cid, r in live.items()}
        self._live = live
        self._retracted = retracted
        self._counted = counted
        self._weights = {
            target: sum(cast(EndorsementBody, e.body).effective_weight for e in endorsements)
            for target, endorsements in counted.items()
        }
        self._accounts: _Accounts | None = None

    @classmethod
    def build(
        cls, genesis: Record, records: Iterable[Record], people: People | None = None
    ) -> ProjectView:
        """Fold ``records`` (in any order, repeats allowed) into the views of ``genesis``.

        ``records`` may hold the genesis itself, this project's updates, contributions,
        endorsements and retractions, and anything else (other projects' records, profiles,
        identity records), which is ignored. ``people`` is the person fold of the identity
        records held; when None it is folded from ``records``. A record whose person is
        nobody (docs/IDENTITY.md section 3) has no effect. Raises
        ``LocalProtocolError("not-a-project")`` when ``genesis`` is not a ``project`` record.
        """
        body = genesis_body(genesis)
        if people is None:
            records = list(records)
            people = People.fold(records)
        pid = genesis.id
        updates: dict[bytes, Record] = {}
        contributions: dict[bytes, Record] = {}
        endorsements: dict[bytes, Record] = {}
        retractions: dict[bytes, Record] = {}
        claims: dict[bytes, Record] = {}
        confirmations: dict[bytes, Record] = {}
        # Keying by id drops repeats; a kind without a bucket (one this library does not
        # know, which may carry a ``project`` key) has no effect on any view.
        by_kind: dict[type, dict[bytes, Record]] = {
            ContributionBody: contributions,
            EndorsementBody: endorsements,
            RetractionBody: retractions,
            ProjectUpdateBody: updates,
            ClaimBody: claims,
            ClaimConfirmationBody: confirmations,
        }
        trivial = people.trivial
        for record in records:
            if record.project == pid:
                bucket = by_kind.get(type(record.body))
                if bucket is not None and (
                    trivial or people.person_at(record.author, record.ts) is not None
                ):
                    bucket[record.id] = record

        state = fold_updates(genesis, body, updates.values(), people)

        def who(record: Record) -> bytes:
            # Every record left in the buckets counts for somebody.
            return (
                record.author
                if trivial
                else cast(bytes, people.person_at(record.author, record.ts))
            )

        retracted: set[bytes] = set()
        for retraction in retractions.values():
            target_id = cast(RetractionBody, retraction.body).target
            target = contributions.get(target_id) or endorsements.get(target_id)
            target = target or claims.get(target_id) or confirmations.get(target_id)
            if target is not None and who(target) == who(retraction):
                retracted.add(target_id)

        # ``contributions`` is this fold's own dictionary: dropping the retracted ones in place
        # costs O(retracted), where a filtered copy would cost O(contributions).
        live = contributions
        for target_id in retracted:
            live.pop(target_id, None)

        maintainers = state.maintainers
        claim_state = attest.fold_claims(
            claims.values(), confirmations.values(), retracted, maintainers, who, live.values()
        )
        credited = attest.credited_people(live, claim_state.resolved)
        # Each maintainer's latest eligible endorsement of each contribution, by (ts, id).
        latest: dict[tuple[bytes, bytes], Record] = {}
        for eid, endorsement in endorsements.items():
            endorser = who(endorsement)
            if endorser not in maintainers or eid in retracted:
                continue
            target_id = cast(EndorsementBody, endorsement.body).target
            contribution = live.get(target_id)
            if contribution is None:
                continue
            if target_id in credited:
                if endorser in credited[target_id]:
                    continue
            elif trivial:
                if endorser in _participants(
                    contribution.author, cast(ContributionBody, contribution.body)
                ):
                    continue
            elif endorser in _persons_of(people, contribution):
                continue
            pair = (target_id, endorser)
            current = latest.get(pair)
            if current is None or (endorsement.ts, eid) > (current.ts, current.id):
                latest[pair] = endorsement
        counted: dict[bytes, list[Record]] = {}
        for (target_id, _), endorsement in latest.items():
            counted.setdefault(target_id, []).append(endorsement)

        return cls(
            state=state,
            live=live,
            retracted=frozenset(retracted),
            counted=counted,
            credited=credited,
            claims=claim_state,
        )

    def participants_of(self, record: Record) -> tuple[bytes, ...]:
        """``P(c)`` of a contribution as persons: the distinct persons of its author and
        coauthors, in order (a v1 key is its own person); for an attested one, the participants
        its handles credit after claims."""
        credited = self._credited.get(record.id)
        if credited is not None:
            return credited
        people = self.state.people
        if people.trivial:
            return _participants(record.author, cast(ContributionBody, record.body))
        held = self._parts.get(record.id)
        return held if held is not None else _persons_of(people, record)

    def person_of(self, record: Record) -> bytes | None:
        """The person a record of this project counts for, or None for nobody."""
        return self.state.people.person_at(record.author, record.ts)

    # ---- contributions and endorsements

    @property
    def retracted(self) -> frozenset[bytes]:
        """Ids of this project's contributions and endorsements retracted by their authors."""
        return self._retracted

    def is_live(self, contribution_id: bytes) -> bool:
        """True for a contribution of this project that is held and not retracted."""
        return contribution_id in self._live

    def claim_listing(self) -> list[JsonObject]:
        """Every claim of the project with its status (protocol.attest.claim_listing)."""
        return attest.claim_listing(self.claims, self._live.values(), _peer)

    def contribution(self, contribution_id: bytes) -> LedgerEntry | None:
        """The live contribution with this id, or ``None`` (unknown, retracted, or not one)."""
        record = self._live.get(contribution_id)
        return None if record is None else self._entry(record)

    def entry_for(self, record: Record) -> LedgerEntry:
        """The ledger entry of ``record``, a live contribution of this project that this view
        may not hold: one no endorsement or retraction of the view names has no counting
        endorsement, and an attested one credits its handles as the view's claims resolve
        them (how :mod:`protocol.tally` lists a ledger without folding every contribution)."""
        if record.id in self._live:
            return self._entry(record)
        body = cast(ContributionBody, record.body)
        credited = None
        if body.on_behalf is not None:
            credited = attest.credited(body.on_behalf, self.claims.resolved)
        person = self.person_of(record) if self._parts else None
        return LedgerEntry(record, 0, 0, person, credited)

    def live_contributions(
        self,
        *,
        author: bytes | None = None,
        type: str | None = None,
        limit: int | None = None,
        handle: str | None = None,
    ) -> list[LedgerEntry]:
        """Live contributions, newest first (descending ``(ts, id)``).

        ``author`` keeps those in which that key's person is a participant; ``handle`` keeps
        the attested ones recorded on behalf of that handle (among their ``on_behalf``),
        whoever its credit counts for now; ``type`` keeps those of that contribution type;
        ``limit`` keeps the first ``limit`` (``>= 0``).
        """
        if limit is not None and limit < 0:
            raise LocalProtocolError("bad-limit", f"limit must be 0 or more, not {limit}")
        records: Iterable[Record] = self._live.values()
        if author is not None:
            person = self.state.people.person_of_key(author)
            records = [r for r in records if person in self.participants_of(r)]
        if handle is not None:
            records = [r for r in records if recorded_for(r, handle)]
        if type is not None:
            records = [r for r in records if cast(ContributionBody, r.body).type == type]
        # One full sort even with a limit: heapq.nlargest is slower on records that come in
        # ascending order, which is how a store usually returns them.
        ordered = _newest_first(records)
        if limit is not None:
            ordered = ordered[:limit]
        return [self._entry(r) for r in ordered]

    def why_no_effect(self, record: Record, target: Record | None = None) -> str | None:
        """Why ``record``, added to this project's records now, would have no effect; or None.

        Authoring tools ask this before publishing, so that a record that cannot count is not
        reported as a success. ``record`` is judged as the newest of the project's records (it
        is about to be signed), against the current state: a ``project-update`` takes effect
        when its author is a maintainer and it leaves at least one; an ``endorsement`` counts
        when its target is a live contribution of this project, its author a maintainer and
        not a participant; a ``retraction`` takes effect when ``target`` (the record it names,
        as held, or None) is a contribution or endorsement of this project by the same author,
        not already retracted. Every other kind always has an effect. The reasons name the
        author "its author", for the caller to put in the person's words.
        """
        pid = self.state.id
        if record.project != pid:
            return "it is filed under another project"
        body = record.body
        people = self.state.people
        if people.person_now(record.author) is None:
            return "its author's key no longer speaks for any person (revoked or void)"
        if isinstance(body, ProjectUpdateBody):
            if not self.state.is_maintainer(record.author):
                return "its author is not a maintainer of the project"
            add = {people.person_of_key(k) for k in body.add_maintainers or ()}
            remove = {people.person_of_key(k) for k in body.remove_maintainers or ()}
            after = (set(self.state.maintainers) | add) - remove - {None}
            return None if after else "it would leave the project without maintainers"
        if isinstance(body, EndorsementBody):
            if body.target in self._retracted:
                return "the contribution is retracted"
            contribution = self._live.get(body.target)
            if contribution is None:
                return "its target is not a held contribution of the project"
            if not self.state.is_maintainer(record.author):
                return "its author is not a maintainer of the project"
            persons = self.participants_of(contribution)
            person = people.person_now(record.author)
            if person == persons[0]:
                return "its author wrote the contribution"
            if person in persons:
                return "its author is a coauthor of the contribution"
            return None
        if isinstance(body, RetractionBody):
            if target is None or target.id != body.target:
                return "its target is not held"
            if target.project != pid or target.kind in ("project-update", "retraction"):
                return "only contributions, endorsements and claims can be retracted"
            if self.person_of(target) != people.person_now(record.author):
                return "only the author of a record can retract it"
            if target.id in self._retracted:
                return "the record is already retracted"
        return None

    def endorsements_of(self, contribution_id: bytes) -> list[Record]:
        """The counting endorsements of a contribution, in ascending ``(ts, id)`` order."""
        return sorted(self._counted.get(contribution_id, ()), key=order_key)

    def why_not_counted(self, endorsement: Record) -> str | None:
        """``None`` when ``endorsement`` counts in this view, else the rule that keeps it out
        (the module docstring's *counting endorsements*), as a short sentence for people.

        ``endorsement`` may be any record; one that is not an endorsement never counts."""
        body = endorsement.body
        if not isinstance(body, EndorsementBody):
            return f"a {endorsement.kind} is not an endorsement"
        if endorsement.project != self.state.id:
            return "it is filed under another project"
        target = body.target
        if any(e.id == endorsement.id for e in self._counted.get(target, ())):
            return None
        if endorsement.id in self._retracted:
            return "its author retracted it"
        contribution = self._live.get(target)
        if contribution is None:
            if target in self._retracted:
                return "the contribution it endorses is retracted"
            return "the contribution it endorses is not held here"
        endorser = self.person_of(endorsement)
        if endorser is None:
            return "its author's key was revoked before it was signed"
        if endorser not in self.state.maintainers:
            return "its author is not a maintainer of the project now"
        if endorser in self.participants_of(contribution):
            return "its author is an author or coauthor of the contribution"
        return "a later endorsement by the same maintainer replaces it"

    def _entry(self, record: Record) -> LedgerEntry:
        counted = self._counted.get(record.id)
        person = self.person_of(record) if self._parts else None
        credited = self._credited.get(record.id)
        if counted is None:
            return LedgerEntry(record, 0, 0, person, credited)
        return LedgerEntry(record, len(counted), self._weights[record.id], person, credited)

    # ---- accounting

    def _tally(self) -> _Accounts:
        if self._accounts is not None:
            return self._accounts
        denominator = DENOMINATOR
        contributions: defaultdict[bytes, int] = defaultdict(int)
        # Minutes of single-author contributions, in whole minutes (the common case, kept
        # apart so it needs no multiplication per record), and credits from contributions with
        # coauthors, in units of 1/DENOMINATOR minutes.
        solo: defaultdict[bytes, int] = defaultdict(int)
        shared: defaultdict[bytes, int] = defaultdict(int)
        parts = self._parts
        for record in self._live.values():
            body = cast(ContributionBody, record.body)
            minutes = body.effort_minutes or 0
            people = self._credited.get(record.id) or (parts.get(record.id) if parts else None)
            if people is None and body.coauthors is None:
                contributions[record.author] += 1
                solo[record.author] += minutes
                continue
            people = people or _participants(record.author, body)
            credit = minutes * (denominator // len(people))
            for person in people:
                contributions[person] += 1
                shared[person] += credit
        claimed = {p: solo.get(p, 0) * denominator + shared.get(p, 0) for p in contributions}
        # Only endorsed contributions carry value, and there are usually far fewer of them.
        endorsed: defaultdict[bytes, int] = defaultdict(int)
        for target_id, weight in self._weights.items():
            record = self._live[target_id]
            body = cast(ContributionBody, record.body)
            people = self.participants_of(record)
            value = (body.effort_minutes or 0) * weight * (denominator // len(people))
            if value:
                for person in people:
                    endorsed[person] += value
        self._accounts = _Accounts(dict(contributions), claimed, dict(endorsed))
        return self._accounts

    def contributors(self) -> int:
        """The number of distinct participants (authors and coauthors) of live contributions."""
        return len(self._tally().contributions)

    def shares(self) -> list[Share]:
        """The open value accounting: one line per participant of any live contribution,
        in :func:`share_lines`' order."""
        accounts = self._tally()
        handles = attest.handle_names(self._live.values(), self.claims.resolved)
        return share_lines(accounts.contributions, accounts.claimed, accounts.endorsed, handles)

    def accounts(self) -> tuple[dict[bytes, int], dict[bytes, int], dict[bytes, int]]:
        """Per participant: live contributions, claimed minutes and endorsed value, the two
        sums in units of ``1/DENOMINATOR`` minutes (what :meth:`shares` is made of)."""
        accounts = self._tally()
        return accounts.contributions, accounts.claimed, accounts.endorsed

    def credit(self, contribution_id: bytes) -> list[tuple[bytes, Fraction, Fraction]] | None:
        """What one live contribution adds to :meth:`shares`: ``(participant, claimed minutes,
        endorsed value)`` for each participant, in the order of ``P(c)`` (section 5: minutes,
        and minutes times the endorsed weight, split evenly). ``None`` when it is not live."""
        entry = self.contribution(contribution_id)
        if entry is None:
            return None
        minutes = entry.body.effort_minutes or 0
        people = self.participants_of(entry.record)
        return [
            (p, Fraction(minutes, len(people)), Fraction(minutes * entry.weight, len(people)))
            for p in people
        ]

    def total_endorsed_value(self) -> Fraction:
        """The project's total endorsed value, the denominator of every share."""
        return Fraction(sum(self._tally().endorsed.values()), DENOMINATOR)

    def summary(self) -> ProjectSummary:
        """The data of ``project show`` and ``project list``."""
        return ProjectSummary.of(
            self.state, contributions=len(self._live), contributors=self.contributors()
        )
