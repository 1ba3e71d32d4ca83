"""The views of a project from the store's tallies: no fold of its every record.

The store keeps, as records are stored, the sums :mod:`protocol.tally` adds up
(:mod:`node.store.tally`). Answering a project then reads those sums (one row per participant),
folds only the project's special records with ``protocol.ledger`` (its updates, endorsements,
retractions, claims and confirmations, and the contributions they name) and, for a ledger
page, unpacks the page's records off the index that holds them in ledger order
(:meth:`protocol.tally.TallyView.entry_json`). For a project of a million imported commits
by 20,000 authors the first ledger page takes about 20 ms and the shares, written as JSON
text and kept encoded, about 0.2 s on a loaded 2-core machine, where decoding and folding
100,000 records took 10 s (BENCHMARKS.md, figure 8); a node makes both while it starts.
The results are those of the full fold (``tests/node/test_tallied.py`` compares them on
random record sets).

This holds while keys are their own persons (no identity record held); with persons,
:mod:`node.views.cache` folds every record as before.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, cast

from node.store.sqlite import ProjectKey, Store
from node.views.months import SortedTimes, Times
from protocol.attest import ClaimBody, handle_key
from protocol.identity import People
from protocol.ledger import LedgerEntry, ProjectSummary, ProjectView
from protocol.record import (
    ContributionBody,
    EndorsementBody,
    Record,
    RetractionBody,
    decode_trusted,
)
from protocol.tally import TallyView

__all__ = ["FOLDED_KINDS", "Prepared", "Tallied", "combine_keys", "json_body"]

#: What a project's fold reads besides its genesis and contributions.
FOLDED_KINDS = ("project-update", "endorsement", "retraction", "claim", "claim-confirmation")


#: Ledger pages a project's answers keep (the first page is asked for far more than others).
MAX_HELD_PAGES = 4


def combine_keys(project: ProjectKey, identity: ProjectKey) -> ProjectKey:
    """One key for a project's records and the identity records: both only grow, so the sum
    of their counts and the greater of their last ``seq`` change whenever either does. With
    no identity record it is the project's own key."""
    return (project[0] + identity[0], max(project[1], identity[1]))


def json_body(value: Any) -> bytes:
    """``value`` as the API's JSON answers encode it (Starlette's ``JSONResponse``: compact,
    UTF-8, no NaN), for answers encoded ahead of the response."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode()


@dataclass(frozen=True, slots=True)
class Prepared:
    """What :meth:`Tallied.prepare` makes, as plain values: made by the views' process of
    their own (:mod:`node.views.maker`) and adopted by answers made here."""

    #: The query limit of the first ledger page (the page shown holds one entry less).
    limit: int
    #: The first page's entries and how many entries the ledger holds in all.
    page: tuple[list[dict[str, Any]], int]
    #: The entries shown, as the API sends them.
    page_body: bytes
    shares_body: bytes
    summary: ProjectSummary


def _order(entry: LedgerEntry) -> tuple[int, bytes]:
    return (entry.record.ts, entry.record.id)


def _recorders(
    store: Store, pid: bytes, genesis: Record, others: list[Record], held: set[bytes]
) -> list[Record]:
    """The contributions a claim's SSH proof needs folded: for each (handle, key) a live
    claim proves, attested contributions whose first handle is that handle and that record
    that key (``protocol.attest``: a maintainer other than the claimant must have recorded
    it). The handle's contributions are read newest first until one recorded by a maintainer
    who made none of those claims turns up, which proves the pair for every claimant; the
    contributions already ``held`` (named by an endorsement or a retraction) are folded
    anyway."""
    claimants: dict[tuple[str, bytes], set[bytes]] = {}
    for record in others:
        body = record.body
        if isinstance(body, ClaimBody) and body.proof_key is not None:
            claimants.setdefault((body.handle, body.proof_key), set()).add(record.author)
    if not claimants:
        return []
    maintainers = ProjectView.build(genesis, others).state.maintainers
    found: dict[bytes, Record] = {}
    for (handle, key), who in sorted(claimants.items()):
        for _, rid, raw in store.ledger_rows(pid, units=[handle_key(handle)]):
            if rid in held:
                continue
            record = decode_trusted(raw)
            body = cast(ContributionBody, record.body)
            if body.ssh_key != key or not body.on_behalf or body.on_behalf[0] != handle:
                continue
            found[rid] = record
            if record.author in maintainers and record.author not in who:
                break
    return list(found.values())


class _TalliedTimes:
    """:meth:`Tallied.times`: the store's counts, corrected by the fold's."""

    __slots__ = ("live", "pid", "special", "store")

    def __init__(self, store: Store, pid: bytes, special: SortedTimes, live: SortedTimes) -> None:
        self.store = store
        self.pid = pid
        self.special = special
        self.live = live

    def newest(self, before: int | None) -> int | None:
        # The special contributions are held too: the newest held bounds the newest live.
        return self.store.newest_contribution(self.pid, before)

    def count(self, start: int, end: int | None) -> int:
        held = self.store.contributions_between(self.pid, start, end)
        return held - self.special.count(start, end) + self.live.count(start, end)


class Tallied:
    """A project's answers (``node.views.answers.Answers``) from its tallies."""

    __slots__ = (
        "_bodies",
        "_first",
        "_pages",
        "_prepared",
        "_shares",
        "_shares_body",
        "_special_times",
        "_summary",
        "pid",
        "store",
        "tally",
    )

    def __init__(
        self, store: Store, pid: bytes, tally: TallyView, special: Sequence[Record] = ()
    ) -> None:
        self.store = store
        self.pid = pid
        self.tally = tally
        #: When the contributions the fold answers for (``special``) were made: the store's
        #: index of contributions by time counts them as any other.
        self._special_times = SortedTimes([r.ts for r in special])
        #: Pages already made, by query: these answers are for one record set, so a page
        #: stays right for as long as they are used (a new record makes new answers).
        self._pages: dict[tuple[Any, ...], tuple[list[dict[str, Any]], int]] = {}
        self._shares: list[dict[str, Any]] | None = None
        self._shares_body: bytes | None = None
        #: The summary made elsewhere (:meth:`adopt`), else None: the tally's own.
        self._summary: ProjectSummary | None = None
        self._prepared = False
        #: The query limit of the first page :meth:`prepare` made.
        self._first = 0
        #: Ledger pages encoded as the API sends them, by query (see :meth:`encoded`).
        self._bodies: dict[tuple[Any, ...], bytes] = {}

    @classmethod
    def build(cls, store: Store, pid: bytes, people: People) -> Tallied | None:
        """Read and fold what the views need of project ``pid`` (None when its genesis is
        not held). ``people`` must be trivial: every key its own person."""
        found = store.project_kinds(pid, ("project",))
        if not found:
            return None
        genesis = found[0]
        others = store.project_kinds(pid, FOLDED_KINDS)
        named = {
            r.body.target for r in others if isinstance(r.body, EndorsementBody | RetractionBody)
        }
        special = store.project_contributions(pid, named)
        held = {r.id for r in special}
        special += _recorders(store, pid, genesis, others, held)
        view = ProjectView.build(genesis, [*others, *special], people)
        held = {r.id for r in special}
        merged = [
            r
            for group in TallyView.merged_handles(view.claims.resolved)
            for r in store.sharing_contributions(pid, group)
            if r.id not in held
        ]
        if merged:
            # The claims' outcome depends on no contribution that is not special already (the
            # recorders of proven keys are): folding more leaves it alone.
            special += list({r.id: r for r in merged}.values())
            view = ProjectView.build(genesis, [*others, *special], people)
        types = store.type_counts(pid)
        tally = TallyView(view, lambda: store.tally_rows(pid), types, special)
        return cls(store, pid, tally, special)

    def prepare(self, limit: int) -> None:
        """Make and keep the summary, the shares and the first ledger page of query limit
        ``limit``, encoded as shown (the node's warming calls this, so the first calls find
        them made)."""
        entries = self.ledger(None, None, limit)[0]
        # The page ``ViewCache.ledger_page`` shows: one entry more tells if a next one exists.
        self.encoded((None, None, limit, None), lambda: json_body(entries[: limit - 1]))
        self.shares_body()
        self.tally.summary()
        self._first = limit
        self._prepared = True

    def prepared(self) -> Prepared:
        """What :meth:`prepare` made (call it first), to be adopted by answers elsewhere."""
        if not self._prepared:
            raise ValueError("these answers are not prepared")
        query = (None, None, self._first, None)
        page = self._pages[query]
        return Prepared(self._first, page, self._bodies[query], self.shares_body(), self._made())

    def adopt(self, prepared: Prepared) -> None:
        """Take what answers made elsewhere prepared as made here (instead of
        :meth:`prepare`): the summary, the shares and the first ledger page; the rest these
        answers make as they always do."""
        query = (None, None, prepared.limit, None)
        self._pages = {query: prepared.page}
        self._bodies = {query: prepared.page_body}
        self._shares_body = prepared.shares_body
        self._shares = None
        self._summary = prepared.summary
        self._first = prepared.limit
        self._prepared = True

    def _made(self) -> ProjectSummary:
        return self._summary if self._summary is not None else self.tally.summary()

    def encoded(self, query: tuple[Any, ...], encode: Callable[[], bytes]) -> bytes:
        """The ledger page of ``query`` encoded by ``encode``, once for these answers (the
        first page of a big project is a megabyte of JSON: encoding it took longer than the
        rest of a call). Only the pages held are kept."""
        body = self._bodies.get(query)
        if body is None:
            body = encode()
            if self._held(query) is not None:
                self._bodies = {q: b for q, b in self._bodies.items() if q in self._pages}
                self._bodies[query] = body
        return body

    def made(self, page: tuple[Any, ...] | None = None) -> bool:
        """Whether :meth:`prepare` made the summary and the shares, and the ledger page of
        query ``page`` (``(author, type, limit, after)``) is held when one is given: answers
        that read nothing more from the store (which may hold newer records by now)."""
        return self._prepared and (page is None or self._held(page) is not None)

    def _held(self, query: tuple[Any, ...]) -> tuple[list[dict[str, Any]], int] | None:
        """The page of ``query`` made already: itself, or cut from a longer page made of the
        same query (the first ``limit`` entries of a longer page are the shorter page)."""
        held = self._pages.get(query)
        if held is not None:
            return held
        author, type, limit, after = query
        for (a, t, longer, f), (entries, total) in list(self._pages.items()):
            if (a, t, f) == (author, type, after) and longer >= limit:
                return entries[:limit], total
        return None

    def show(self) -> dict[str, Any]:
        return self._made().to_json()

    def list_item(self) -> dict[str, Any]:
        return self._made().to_list_json()

    def shares(self) -> list[dict[str, Any]]:
        if self._shares is None:
            if self._summary is not None and self._shares_body is not None:
                # Adopted: the lines of the same record set as the text.
                self._shares = json.loads(self._shares_body)
            else:
                self._shares = self.tally.shares_json()
        return [dict(line) for line in self._shares]

    def shares_body(self) -> bytes:
        """The shares as the API sends them (``JSONResponse``'s compact UTF-8 JSON), encoded
        once for these answers: 20,000 lines are about 5 MB, which took longer to encode
        from dicts than everything else a call does."""
        if self._shares_body is None:
            self._shares_body = self.tally.shares_text().encode()
        return self._shares_body

    def times(self) -> Times:
        """:class:`~node.views.months.Times` of the live contributions, off the store's
        index of contributions by time: every contribution held, less those the fold
        answers for (the special ones), plus those of them it finds live."""
        live = SortedTimes([e.record.ts for e in self.tally.view.live_contributions()])
        return _TalliedTimes(self.store, self.pid, self._special_times, live)

    def ledger(
        self,
        author: bytes | str | None,
        type: str | None,
        limit: int,
        after: tuple[int, bytes] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        query = (author, type, limit, after)
        held = self._held(query)
        if held is None:
            held = self._ledger(author, type, limit, after)
            if len(self._pages) >= MAX_HELD_PAGES:
                # Threads may share these answers: whoever evicts first wins, quietly. The
                # prepared first page stays (stale answers are served from it).
                first = 1 if self._prepared else 0
                for oldest in list(self._pages)[first : first + 1]:
                    self._pages.pop(oldest, None)
            self._pages[query] = held
        # Copies: the caller may trim the list or change an entry.
        return [dict(e) for e in held[0]], held[1]

    def _ledger(
        self,
        author: bytes | str | None,
        type: str | None,
        limit: int,
        after: tuple[int, bytes] | None,
    ) -> tuple[list[dict[str, Any]], int]:
        tally = self.tally
        if author is None:
            rows = self.store.ledger_rows(self.pid, type=type, after=after)
            found = (tally.entry_json(rid, raw) for _, rid, raw in rows)
            return list(islice((e for e in found if e is not None), limit)), tally.live(type)
        if isinstance(author, str):
            # A handle: the contributions recorded on its behalf, off the index of credits by
            # participant, where the store keeps each under the handle's stand-in (claims
            # change whom they count for, not where they are kept).
            units = [handle_key(author)]
            special = tally.live_special(None, type, author)
        else:
            units = tally.units_of(author)
            special = tally.live_special(author, type)
        rows = self.store.ledger_rows(self.pid, units=units, after=after) if units else iter(())
        plain = (
            e
            for e in self._entries(rows)
            if not tally.is_special(e.id) and (type is None or e.body.type == type)
        )
        earlier = [e for e in special if after is None or (e.record.ts, e.id) < after]
        entries = heapq.merge(plain, earlier, key=_order, reverse=True)
        page = [e.to_json() for e in islice(entries, limit)]
        if type is None and isinstance(author, bytes):
            return page, tally.contributions_of(author)
        # Counted by reading the contributions: no sum is kept per participant and type, nor
        # per handle whoever a claim resolves it to.
        everything = self.store.ledger_rows(self.pid, units=units) if units else iter(())
        if type is None:  # off the ids: nothing to unpack
            held = sum(1 for _, rid, _ in everything if not tally.is_special(rid))
        else:
            held = sum(
                1
                for e in self._entries(everything)
                if not tally.is_special(e.id) and e.body.type == type
            )
        return page, held + len(special)

    def _entries(self, rows: Iterator[tuple[int, bytes, bytes]]) -> Iterator[LedgerEntry]:
        """The live entries of ``rows`` (contributions in ledger order), retracted skipped."""
        for _, _, raw in rows:
            entry = self.tally.entry(decode_trusted(raw))
            if entry is not None:
                yield entry
