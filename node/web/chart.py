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

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Bar", "Column", "month_columns", "share_bars"]

#: Contributors drawn as bars; the others are summed into one last bar (the table lists all).
MAX_BARS = 20
#: Width of the plot area in SVG units (the SVG scales to the page).
PLOT_WIDTH = 600.0
BAR_HEIGHT = 22
#: Months drawn in the contributions-over-time chart (the most recent ones).
MAX_MONTHS = 36
COLUMN_AREA = 160.0
DAY_MS = 86_400_000
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


def _month(ts_ms: int) -> str:
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m")
    except (OverflowError, OSError, ValueError):
        return "?"


def month_columns(timestamps: list[int]) -> list[Column]:
    """Live contributions per month (UTC), the last ``MAX_MONTHS`` months that have any."""
    # Counted by day first: a project of 50,000 contributions has a few hundred distinct
    # days, and turning a day into its month is the slow part.
    days = Counter(ts // DAY_MS for ts in timestamps)
    counts: Counter[str] = Counter()
    for day, n in days.items():
        counts[_month(day * DAY_MS)] += n
    months = sorted(counts)[-MAX_MONTHS:]
    if not months:
        return []
    most = max(counts[m] for m in months)
    step = PLOT_WIDTH / max(len(months), 1)
    return [
        Column(
            month=m,
            count=counts[m],
            x=round(i * step, 2),
            width=round(min(step * 0.8, MAX_COLUMN), 2),
            height=round(COLUMN_AREA * counts[m] / most, 2),
        )
        for i, m in enumerate(months)
    ]
