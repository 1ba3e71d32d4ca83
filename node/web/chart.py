"""The shares chart and the contributions-over-time chart, as geometry for SVG templates.

Charts are drawn on the server, as SVG inside the page, rather than by a script in the
browser: the page then needs no JavaScript to be read (and none to be vendored, audited and
shipped), the CSP needs no exception, the numbers drawn are exactly the view's numbers (each
bar carries them in ``data-`` attributes and a ``<title>``, and the table under the chart
repeats them for screen readers), and the page is one response, which is what the render
budget in BENCHMARKS.md is measured on. Colours come from the stylesheet through classes, so
the charts follow the light or dark scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["MAX_MONTHS", "Bar", "Column", "month_columns", "month_start", "share_bars"]

#: Contributors drawn as bars; the others are summed into one last bar (the table lists all).
MAX_BARS = 20
#: Width of the plot area in SVG units (the SVG scales to the page).
PLOT_WIDTH = 600.0
BAR_HEIGHT = 22
#: Months drawn in the contributions-over-time chart (the most recent ones).
MAX_MONTHS = 36
COLUMN_AREA = 160.0
#: The widest column, so that a project of two months does not draw two slabs.
MAX_COLUMN = 40.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One contributor's bar: its share, and the figures the API gives for that line."""

    contributor: str | None  # None for the bar that sums the others
    others: int
    share: Any
    claimed_minutes: Any
    endorsed_value: Any
    contributions: int
    y: int
    width: float


@dataclass(frozen=True, slots=True)
class Column:
    """One month's column: its label (``2026-11``), count, and geometry."""

    month: str
    count: int
    x: float
    width: float
    height: float


def share_bars(shares: list[dict[str, Any]]) -> list[Bar]:
    """Bars for the largest shares (as ``commons shares --json`` lists them, largest first),
    scaled so the largest fills the plot."""
    top = shares[:MAX_BARS]
    rest = shares[MAX_BARS:]
    most = max((float(s["share"]) for s in shares), default=0.0) or 1.0
    bars = [
        Bar(
            contributor=s["contributor"],
            others=0,
            share=s["share"],
            claimed_minutes=s["claimed_minutes"],
            endorsed_value=s["endorsed_value"],
            contributions=s["contributions"],
            y=i * BAR_HEIGHT,
            width=round(PLOT_WIDTH * float(s["share"]) / most, 2),
        )
        for i, s in enumerate(top)
    ]
    if rest:
        share = sum(float(s["share"]) for s in rest)
        bars.append(
            Bar(
                contributor=None,
                others=len(rest),
                share=share,
                claimed_minutes=sum(s["claimed_minutes"] for s in rest),
                endorsed_value=sum(s["endorsed_value"] for s in rest),
                contributions=sum(s["contributions"] for s in rest),
                y=len(top) * BAR_HEIGHT,
                width=round(PLOT_WIDTH * share / most, 2),
            )
        )
    return bars


def month_start(ts_ms: int) -> tuple[str, int]:
    """The month (UTC) of ``ts_ms`` as ``2026-11``, and when it began, in ms."""
    try:
        when = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "?", ts_ms  # beyond what a datetime holds: a month of its own
    start = when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.strftime("%Y-%m"), int(start.timestamp() * 1000)


def month_columns(counts: list[tuple[str, int]]) -> list[Column]:
    """The columns of ``counts``, live contributions per month oldest first, as
    ``ViewCache.contribution_months`` gives them for ``month_start`` and ``MAX_MONTHS``
    (counted off an index, month by month from the newest: no date conversion for each
    contribution)."""
    if not counts:
        return []
    most = max(n for _, n in counts)
    step = PLOT_WIDTH / len(counts)
    return [
        Column(
            month=m,
            count=n,
            x=round(i * step, 2),
            width=round(min(step * 0.8, MAX_COLUMN), 2),
            height=round(COLUMN_AREA * n / most, 2),
        )
        for i, (m, n) in enumerate(counts)
    ]
