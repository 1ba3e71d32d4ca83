"""Snapshots of a project's view results: built from a fold, stored compactly, read back fast.

A :class:`ViewSnapshot` holds what ``project show``/``list``, ``shares`` and ``ledger``
(docs/INTERFACES.md) answer for one project, taken from a ``protocol.ledger.ProjectView`` through
its public methods, and answers those views again without the project's records: the results
of the rules, not a second implementation of them. ``node.views.cache`` decides when a snapshot is
current (the store labels it with the key of the project's record set) and when to write one.
"""

from __future__ import annotations

import functools
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import Any, Final

import msgpack

from node.views.months import SortedTimes
from protocol.ledger import ProjectView, as_number
from protocol.record import ID_SIZE
from protocol.signing import peer_id

__all__ = ["SNAPSHOT_COMPRESSION", "SNAPSHOT_FORMAT", "ViewSnapshot"]

#: The encoding of stored snapshots. Bump it whenever the encoding, the JSON shapes of the
#: views or the rules of ``protocol.ledger`` change: a snapshot of another format is ignored
#: (and replaced after the next fold), never trusted. 2: only a maintainer's latest
#: endorsement of a contribution counts (format 1 snapshots summed every one). 3: each ledger
#: entry also holds its endorsed weight. 4: attested entries and unclaimed handles
#: (protocol.attest).
SNAPSHOT_FORMAT: Final = 4
#: zlib level of the compressed part of a stored snapshot (all but the ids and public keys).
#: Measured on 55,000 records (4.1 MB packed, of which 1.6 MB are ids): compressing all of it
#: at level 1 gives 1.95 MB in 34 ms and takes 4 ms to inflate (10 ms on a loaded machine),
#: about what reading the 2 MB saved costs; leaving the ids out gives the same 1.95 MB in 9 ms,
#: inflated in 1.5 ms (3.5 ms loaded). Level 6 gains 3 % more for twice the time.
SNAPSHOT_COMPRESSION: Final = 1

_PEER_CACHE_SIZE: Final = 4096
#: Peer ids are cached: a ledger repeats few authors, and base58 is the slow part of an entry.
_peer = functools.lru_cache(maxsize=_PEER_CACHE_SIZE)(peer_id)


#: Array type codes of 4- and 8-byte signed integers (``i`` and ``q`` on every platform
#: CPython runs on, checked here rather than assumed). Stored little-endian.
_I32: Final = next(code for code in "ihl" if array(code).itemsize == 4)
_I64: Final = next(code for code in "ql" if array(code).itemsize == 8)
_SWAP: Final = sys.byteorder != "little"


def _ints_bytes(values: array[int]) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _ints(code: str, data: object, count: int, what: str) -> array[int]:
    if not isinstance(data, bytes):
        raise ValueError(f"{what} is not bytes")
    values = array(code)
    values.frombytes(data)
    if _SWAP:
        values.byteswap()
    if len(values) != count:
        raise ValueError(f"{what} holds {len(values)} values for {count} entries")
    return values


class ViewSnapshot:
    """A project's view results, made from a fold and answering the views without it.

    Built by :meth:`from_view` from ``ProjectView.summary()``, ``shares()`` and
    ``live_contributions()`` (every live contribution, newest first), and stored compactly by
    :meth:`pack`: one MessagePack array, zlib-compressed, in which the ledger is held by
    column (ids as one byte string, numbers as little-endian integer arrays, titles as one
    UTF-8 string with end offsets) and public keys are indexes into one table of raw 32-byte
    keys, turned into peer ids only for the entries a call returns. Unpacking copies a dozen
    byte strings, so a 55,000-entry snapshot is ready in a few milliseconds, and it occupies
    about 64 bytes an entry plus its title in memory.

    The ledger's filters select entries of that newest-first list in order, then the limit
    applies: the same entries in the same order as ``live_contributions`` filtering before it
    sorts. Immutable once built, so threads may share it.
    """

    __slots__ = (
        "_attested",
        "_authors",
        "_coauthors",
        "_endorsements",
        "_handles",
        "_ids",
        "_minutes",
        "_people",
        "_shares",
        "_summary",
        "_title_ends",
        "_titles",
        "_ts",
        "_type_names",
        "_types",
        "_weights",
    )

    def __init__(
        self,
        *,
        summary: Sequence[Any],
        people: bytes,
        shares: Sequence[Sequence[Any]],
        ids: bytes,
        ts: array[int],
        authors: array[int],
        type_names: Sequence[str],
        types: array[int],
        minutes: array[int],
        endorsements: array[int],
        weights: array[int],
        titles: bytes,
        title_ends: array[int],
        coauthors: dict[int, Sequence[int]],
        attested: dict[int, Sequence[Any]],
        handles: dict[int, str],
    ) -> None:
        self._summary = summary
        self._people = people
        self._shares = shares
        self._ids = ids
        self._ts = ts
        self._authors = authors
        self._type_names = type_names
        self._types = types
        self._minutes = minutes
        self._endorsements = endorsements
        self._weights = weights
        self._titles = titles
        self._title_ends = title_ends
        self._coauthors = coauthors
        #: Row -> [on_behalf handles, credited people], for attested entries.
        self._attested = attested
        #: Person index -> handle text, for the stand-ins of unclaimed handles.
        self._handles = handles

    @classmethod
    def from_view(cls, view: ProjectView) -> ViewSnapshot:
        """The results of ``view``, as its public methods give them."""
        people: dict[bytes, int] = {}

        def person(key: bytes) -> int:
            index = people.get(key)
            if index is None:
                index = people[key] = len(people)
            return index

        type_index: dict[str, int] = {}
        ids = bytearray()
        ts, ends = array(_I64), array(_I32)
        authors, types, minutes, endorsements = array(_I32), array(_I32), array(_I32), array(_I32)
        weights = array(_I32)
        titles: list[bytes] = []
        coauthors: dict[int, list[int]] = {}
        attested: dict[int, list[Any]] = {}
        end = 0
        for row, entry in enumerate(view.live_contributions()):
            record, body = entry.record, entry.body
            ids += record.id
            ts.append(record.ts)
            authors.append(person(record.author))
            kind = type_index.get(body.type)
            if kind is None:
                kind = type_index[body.type] = len(type_index)
            types.append(kind)
            minutes.append(-1 if body.effort_minutes is None else body.effort_minutes)
            endorsements.append(entry.endorsements)
            weights.append(entry.weight)
            title = body.title.encode()
            titles.append(title)
            end += len(title)
            ends.append(end)
            if body.coauthors:
                coauthors[row] = [person(c) for c in body.coauthors]
            if entry.credited is not None:
                attested[row] = [list(body.on_behalf or ()), [person(c) for c in entry.credited]]
        summary = view.summary()
        shares = [
            (
                person(s.contributor),
                s.contributions,
                as_number(s.claimed_minutes),
                as_number(s.endorsed_value),
                as_number(s.share),
            )
            for s in view.shares()
        ]
        handles = {person(s.contributor): s.handle for s in view.shares() if s.handle}
        return cls(
            summary=(
                summary.id,
                summary.name,
                summary.description,
                summary.license,
                list(summary.links),
                list(summary.tags),
                list(summary.maintainers),
                summary.contributions,
                summary.contributors,
            ),
            people=b"".join(people),
            shares=shares,
            ids=bytes(ids),
            ts=ts,
            authors=authors,
            type_names=list(type_index),
            types=types,
            minutes=minutes,
            endorsements=endorsements,
            weights=weights,
            titles=b"".join(titles),
            title_ends=ends,
            coauthors=dict(coauthors),
            attested=dict(attested),
            handles=handles,
        )

    def pack(self) -> bytes:
        """The stored form: a MessagePack array of the ids and the public keys as they are
        (random bytes do not compress, and zlib spends three quarters of its time failing
        to), then everything else as one zlib-compressed MessagePack array, which also holds
        the CRC-32 of those keys, so that damage anywhere is noticed when it is read.

        Raises ``OverflowError`` for a number MessagePack cannot hold.
        """
        rest = [
            zlib.crc32(self._people, zlib.crc32(self._ids)),
            list(self._summary),
            [list(s) for s in self._shares],
            _ints_bytes(self._ts),
            _ints_bytes(self._authors),
            list(self._type_names),
            _ints_bytes(self._types),
            _ints_bytes(self._minutes),
            _ints_bytes(self._endorsements),
            _ints_bytes(self._weights),
            self._titles,
            _ints_bytes(self._title_ends),
            [[row, list(people)] for row, people in self._coauthors.items()],
            [[row, list(value)] for row, value in self._attested.items()],
            [[index, text] for index, text in self._handles.items()],
        ]
        packed = zlib.compress(msgpack.packb(rest), SNAPSHOT_COMPRESSION)
        data: bytes = msgpack.packb([self._ids, self._people, packed])
        return data

    @classmethod
    def unpack(cls, data: bytes) -> ViewSnapshot:
        """Read a stored snapshot; ``ValueError`` when it is damaged."""
        try:
            ids, people, packed = msgpack.unpackb(data)
            rest = msgpack.unpackb(zlib.decompress(packed), strict_map_key=False)
            (crc, summary, shares, ts, authors, type_names, types, minutes, endorsements,
             weights, titles, ends, coauthors, attested, handles) = rest  # fmt: skip
            if not (isinstance(ids, bytes) and isinstance(people, bytes)):
                raise ValueError("the ids or the keys are not bytes")
            if crc != zlib.crc32(people, zlib.crc32(ids)):
                raise ValueError("the ids or the keys do not match their checksum")
            if len(ids) % ID_SIZE or len(people) % ID_SIZE:
                raise ValueError("the ids or the keys are not a whole number of keys")
            count = len(ids) // ID_SIZE
            if not isinstance(titles, bytes):
                raise ValueError("the titles are not bytes")
            if len(summary) != 9 or summary[7] != count:
                raise ValueError("the summary does not match the ledger")
            snapshot = cls(
                summary=summary,
                people=people,
                shares=shares,
                ids=ids,
                ts=_ints(_I64, ts, count, "ts"),
                authors=_ints(_I32, authors, count, "authors"),
                type_names=type_names,
                types=_ints(_I32, types, count, "types"),
                minutes=_ints(_I32, minutes, count, "minutes"),
                endorsements=_ints(_I32, endorsements, count, "endorsements"),
                weights=_ints(_I32, weights, count, "weights"),
                titles=titles,
                title_ends=_ints(_I32, ends, count, "title ends"),
                coauthors={int(row): list(people) for row, people in coauthors},
                attested={int(row): list(value) for row, value in attested},
                handles={int(index): str(text) for index, text in handles},
            )
        except (zlib.error, msgpack.UnpackException, TypeError, IndexError, KeyError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        if count and snapshot._title_ends[-1] != len(titles):
            raise ValueError("the title offsets do not match the titles")
        return snapshot

    # ---- the views

    def _person(self, index: int) -> str:
        handle = self._handles.get(index)
        if handle is not None:
            return handle
        start = index * ID_SIZE
        return _peer(self._people[start : start + ID_SIZE])

    def _find_person(self, key: bytes) -> int | None:
        at = self._people.find(key)
        while at >= 0 and at % ID_SIZE:
            at = self._people.find(key, at + 1)
        return None if at < 0 else at // ID_SIZE

    def show(self) -> dict[str, Any]:
        pid, name, description, license_, links, tags, maintainers, count, people = self._summary
        return {
            "id": pid.hex(),
            "name": name,
            "description": description,
            "license": license_,
            "links": list(links),
            "tags": list(tags),
            "maintainers": [_peer(m) for m in maintainers],
            "contributions": count,
            "contributors": people,
        }

    def list_item(self) -> dict[str, Any]:
        pid, name, _, _, _, _, maintainers, count, people = self._summary
        return {
            "id": pid.hex(),
            "name": name,
            "maintainers": [_peer(m) for m in maintainers],
            "contributions": count,
            "contributors": people,
        }

    def shares(self) -> list[dict[str, Any]]:
        return [
            {
                "contributor": self._person(person),
                # Snapshots exist only while no identity record is held: a key is its person.
                "person": self._person(person),
                "contributions": contributions,
                "claimed_minutes": claimed,
                "endorsed_value": endorsed,
                "share": share,
            }
            for person, contributions, claimed, endorsed, share in self._shares
        ]

    def times(self) -> SortedTimes:
        """When the live contributions were made (the contributions chart)."""
        return SortedTimes(self._ts.tolist())

    def ledger(
        self,
        author: bytes | None,
        type: str | None,
        limit: int,
        after: tuple[int, bytes] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        rows: Sequence[int] = range(len(self._ts))
        if author is not None:
            person = self._find_person(author)
            if person is None:
                return [], 0
            # The signer of an attested entry is no participant of it; its credited people are.
            attested = self._attested
            mine = [r for r, a in enumerate(self._authors) if a == person and r not in attested]
            shared = [row for row, people in self._coauthors.items() if person in people]
            shared += [row for row, (_, people) in attested.items() if person in people]
            rows = sorted({*mine, *shared}) if shared else mine
        if type is not None:
            if type not in self._type_names:
                return [], 0
            kind, types = self._type_names.index(type), self._types
            rows = [row for row in rows if types[row] == kind]
        total = len(rows)
        if after is not None:
            # Rows are in ledger order, newest first: the page starts at the first row that
            # comes after the cursor's (ts, id), found by bisection.
            lo, hi = 0, total
            while lo < hi:
                mid = (lo + hi) // 2
                row = rows[mid]
                if (self._ts[row], self._ids[row * ID_SIZE : (row + 1) * ID_SIZE]) < after:
                    hi = mid
                else:
                    lo = mid + 1
            rows = rows[lo:]
        return [self._entry(row) for row in rows[:limit]], total

    def _entry(self, row: int) -> dict[str, Any]:
        start = row * ID_SIZE
        minutes = self._minutes[row]
        first = self._title_ends[row - 1] if row else 0
        return {
            "id": self._ids[start : start + ID_SIZE].hex(),
            "author": self._person(self._authors[row]),
            "type": self._type_names[self._types[row]],
            "title": self._titles[first : self._title_ends[row]].decode(),
            "effort_minutes": None if minutes < 0 else minutes,
            "ts": self._ts[row],
            "coauthors": [self._person(p) for p in self._coauthors.get(row, ())],
            "endorsements": self._endorsements[row],
            "endorsed_weight": self._weights[row],
            **self._attested_json(row),
            "person": self._person(self._authors[row]),
        }

    def _attested_json(self, row: int) -> dict[str, Any]:
        attested = self._attested.get(row)
        if attested is None:
            return {}
        on_behalf, people = attested
        return {"on_behalf": list(on_behalf), "credited": [self._person(p) for p in people]}
