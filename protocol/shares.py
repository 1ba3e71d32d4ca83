"""The lines of ``shares``: one participant's open value accounting (docs/RECORD-FORMAT.md
section 5), made from per-participant integer tallies by :mod:`protocol.ledger` and
:mod:`protocol.tally`, as :class:`Share` objects or straight as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
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
    one total): 20,000 contributors sort in milliseconds, not the seconds fractions take."""
    return sorted(
        contributions, key=lambda p: (-endorsed.get(p, 0), -claimed[p], -contributions[p], p)
    )


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
    total = sum(endorsed.values())
    out: list[JsonObject] = []
    for person in _share_order(contributions, claimed, endorsed):
        name = handles.get(person) or _peer(person)
        value = endorsed.get(person, 0)
        out.append(
            {
                "contributor": name,
                "person": name,
                "contributions": contributions[person],
                "claimed_minutes": ratio(claimed[person], DENOMINATOR),
                "endorsed_value": ratio(value, DENOMINATOR),
                "share": ratio(value, total) if value else 0,
            }
        )
    return out


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
