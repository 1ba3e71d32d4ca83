"""Live contributions per month: the dashboard's contributions-over-time chart.

The chart needs, month by month from the newest, how many live contributions each month
holds. A fold has every live contribution's ``ts`` (:class:`SortedTimes`); a project answered
from the tallies counts them off the store's index of contributions by time, without reading
a record (``node.views.tallied``). Both answer the two questions of :class:`Times`, and
:func:`month_counts` walks the months with them: a few dozen index seeks and range counts
for a project of a million contributions, where listing every ``ts`` took a second.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["SortedTimes", "Times", "month_counts"]


class Times(Protocol):
    """When a project's contributions were made, as the month walk asks it."""

    def newest(self, before: int | None) -> int | None:
        """The greatest ``ts`` below ``before`` (of every contribution when None) of a
        contribution that may be live; None when there is none. Every live one counts."""
        ...

    def count(self, start: int, end: int | None) -> int:
        """How many live contributions have ``start <= ts < end`` (no bound when None)."""
        ...


class SortedTimes:
    """:class:`Times` of a list of the live contributions' ``ts``."""

    __slots__ = ("_times",)

    def __init__(self, timestamps: Sequence[int]) -> None:
        self._times = sorted(timestamps)

    def _index(self, bound: int | None) -> int:
        return len(self._times) if bound is None else bisect_left(self._times, bound)

    def newest(self, before: int | None) -> int | None:
        end = self._index(before)
        return self._times[end - 1] if end else None

    def count(self, start: int, end: int | None) -> int:
        return self._index(end) - bisect_left(self._times, start)


def month_counts(
    times: Times, month_start: Callable[[int], tuple[str, int]], most: int
) -> list[tuple[str, int]]:
    """``(month, live contributions)`` of the last ``most`` months that have any, oldest
    first. ``month_start(ts)`` names the month of ``ts`` and says when it began (at or
    before ``ts``). A month whose contributions were all retracted is skipped."""
    counts: list[tuple[str, int]] = []
    end: int | None = None
    while len(counts) < most:
        newest = times.newest(end)
        if newest is None:
            break
        month, start = month_start(newest)
        n = times.count(start, end)
        if n:
            counts.append((month, n))
        end = start
    counts.reverse()
    return counts
