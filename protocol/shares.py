"""The lines of ``shares``: one participant's open value accounting (docs/RECORD-FORMAT.md
section 5), made from per-participant integer tallies by :mod:`protocol.ledger` and
:mod:`protocol.tally`, as :class:`Share` objects or straight as JSON."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from json.encoder import encode_basestring
from typing import Final, TypeAlias

from protocol.record import MAX_COAUTHORS
from protocol.state import cached_peer_id as _peer

__all__ = [
    "DENOMINATOR",
    "JsonObject",
    "Share",
    "as_number",
    "ratio",
    "share_json",
    "share_json_text",
    "share_lines",
]

#: A JSON object as the ``to_json`` methods return it, ready for :func:`json.dumps`.
JsonObject: TypeAlias = dict[str, object]

#: Every participant count ``|P(c)|`` (1 to ``MAX_COAUTHORS + 1``) divides this number, so the
#: per-participant credits ``m/|P|`` and ``m*w/|P|`` are summed as integer multiples of
#: ``1/DENOMINATOR`` and only the final totals become fractions: exact, and much faster than
#: adding a ``Fraction`` per contribution.
DENOMINATOR: Final = math.lcm(*range(1, MAX_COAUTHORS + 2))


def as_number(value: Fraction) -> int | float:
    """A fraction as a JSON number: an ``int`` when it is integral, else the nearest float."""
    if value.denominator == 1:
        return value.numerator
    return float(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Share:
    """One participant's line of a project's open value accounting (section 5)."""

    contributor: bytes
    #: Live contributions in which the contributor is author or coauthor.
    contributions: int
    claimed_minutes: Fraction
    endorsed_value: Fraction
    #: ``endorsed_value`` over the project's total endorsed value; 0 when that total is 0.
    share: Fraction
    #: The handle ``contributor`` stands for when it is an unclaimed handle, else None.
    handle: str | None = None

    @property
    def contributor_peer_id(self) -> str:
        """The contributor's peer id, the text form of ``contributor``."""
        return _peer(self.contributor)

    def to_json(self) -> JsonObject:
        """The line as ``commons shares --json`` prints it: fractions as JSON numbers."""
        return {
            "contributor": self.handle or _peer(self.contributor),
            "person": self.handle or _peer(self.contributor),
            "contributions": self.contributions,
            "claimed_minutes": as_number(self.claimed_minutes),
            "endorsed_value": as_number(self.endorsed_value),
            "share": as_number(self.share),
        }


def _share_order(
    contributions: dict[bytes, int], claimed: dict[bytes, int], endorsed: dict[bytes, int]
) -> list[bytes]:
    """The participants in the order of ``shares()`` (see :func:`share_lines`), sorted on
    the integer tallies, which order as the fractions do (a share is the endorsed value over
    one total): 20,000 contributors sort in milliseconds, not the seconds fractions take.

    One stable sort per key, the last key first, each on a plain integer (a sort keeps the
    order of equal items, also in reverse): four times faster than one sort on tuples, and
    a key that is the same for everyone (no endorsement, no claimed time) is not sorted on.
    """
    order = sorted(contributions)
    order.sort(key=contributions.__getitem__, reverse=True)
    if any(claimed.values()):
        order.sort(key=claimed.__getitem__, reverse=True)
    if any(endorsed.values()):
        value = {p: endorsed.get(p, 0) for p in order}
        order.sort(key=value.__getitem__, reverse=True)
    return order


def ratio(numerator: int, denominator: int) -> int | float:
    """:func:`as_number` of ``Fraction(numerator, denominator)``, without making the
    fraction: Python's integer division is correctly rounded, as the fraction's float is."""
    whole, rest = divmod(numerator, denominator)
    return numerator / denominator if rest else whole


def share_json(
    contributions: dict[bytes, int],
    claimed: dict[bytes, int],
    endorsed: dict[bytes, int],
    handles: dict[bytes, str],
) -> list[JsonObject]:
    """``[s.to_json() for s in share_lines(...)]`` of the same tallies, made straight from
    the integers: what a node prints for a project of tens of thousands of contributors."""
    out: list[JsonObject] = []
    for person, count, minutes, value, total in _line_values(contributions, claimed, endorsed):
        name = handles.get(person) or _peer(person)
        out.append(
            {
                "contributor": name,
                "person": name,
                "contributions": count,
                "claimed_minutes": ratio(minutes, DENOMINATOR),
                "endorsed_value": ratio(value, DENOMINATOR),
                "share": ratio(value, total) if value else 0,
            }
        )
    return out


def _line_values(
    contributions: dict[bytes, int],
    claimed: dict[bytes, int],
    endorsed: dict[bytes, int],
) -> Iterator[tuple[bytes, int, int, int, int]]:
    """``(participant, contributions, claimed, endorsed, total endorsed)`` in the order of
    ``shares()`` (:func:`_share_order`)."""
    total = sum(endorsed.values())
    for person in _share_order(contributions, claimed, endorsed):
        yield person, contributions[person], claimed[person], endorsed.get(person, 0), total


def share_json_text(
    contributions: dict[bytes, int],
    claimed: dict[bytes, int],
    endorsed: dict[bytes, int],
    handles: dict[bytes, str],
) -> str:
    """``json.dumps(share_json(...), ensure_ascii=False, separators=(",", ":"))`` of the
    same tallies, written line by line without making a dict a line: what the API sends for
    a project of tens of thousands of contributors (20,000 lines: about 5 MB of JSON, which
    :func:`json.dumps` took 130 ms to encode from the dicts on a loaded machine).

    Numbers are written as :mod:`json` writes them (``repr`` of an int or a float), text by
    its own encoder (``encode_basestring``: what ``ensure_ascii=False`` uses).
    """
    lines = []
    total = sum(endorsed.values())
    for person in _share_order(contributions, claimed, endorsed):
        name = encode_basestring(handles.get(person) or _peer(person))
        count = contributions[person]
        minutes = claimed[person]
        value = endorsed.get(person, 0)
        claimed_text = repr(ratio(minutes, DENOMINATOR)) if minutes else "0"
        if value:
            endorsed_text = repr(ratio(value, DENOMINATOR))
            share_text = repr(ratio(value, total))
        else:
            endorsed_text = share_text = "0"
        lines.append(
            f'{{"contributor":{name},"person":{name},"contributions":{count},'
            f'"claimed_minutes":{claimed_text},"endorsed_value":{endorsed_text},'
            f'"share":{share_text}}}'
        )
    return "[" + ",".join(lines) + "]"


def share_lines(
    contributions: dict[bytes, int],
    claimed: dict[bytes, int],
    endorsed: dict[bytes, int],
    handles: dict[bytes, str],
) -> list[Share]:
    """The lines of ``shares()`` from per-participant tallies (claimed minutes and endorsed
    value in units of ``1/DENOMINATOR``); ``handles`` names the unclaimed handles' stand-ins.

    Sorted by largest ``share`` first, then (for equal shares) larger ``claimed_minutes``,
    then more ``contributions``, then the contributor's public key in ascending byte order.
    Equal shares mean equal endorsed values whenever the total is not zero, so endorsed
    value needs no tie-break of its own.
    """
    total = sum(endorsed.values())
    zero = Fraction(0)
    lines = []
    for person in _share_order(contributions, claimed, endorsed):
        value = endorsed.get(person, 0)
        minutes = claimed[person]
        lines.append(
            Share(
                contributor=person,
                contributions=contributions[person],
                claimed_minutes=Fraction(minutes, DENOMINATOR) if minutes else zero,
                endorsed_value=Fraction(value, DENOMINATOR) if value else zero,
                share=Fraction(value, total) if value else zero,
                handle=handles.get(person),
            )
        )
    return lines
