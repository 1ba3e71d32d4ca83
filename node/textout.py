"""Text output for people: aligned tables, relative times, short peer ids, progress bars."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import TextIO

__all__ = ["Progress", "fmt_number", "relative_time", "short_peer", "table"]


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()
) -> str:
    """An aligned plain-text table; columns whose index is in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def relative_time(ts_ms: int, now_ms: int | None = None) -> str:
    """'3 minutes ago', 'in 2 hours', or a date for anything older than a month."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    delta = (now_ms - ts_ms) / 1000
    future = delta < 0
    delta = abs(delta)
    if delta < 45:
        text = "just now" if not future else "in a moment"
        return text
    for limit, unit, size in (
        (3600, "minute", 60),
        (86400, "hour", 3600),
        (86400 * 30, "day", 86400),
    ):
        if delta < limit:
            n = max(1, round(delta / size))
            plural = "" if n == 1 else "s"
            return f"in {n} {unit}{plural}" if future else f"{n} {unit}{plural} ago"
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def short_peer(peer: str, others: Sequence[str] = ()) -> str:
    """A peer id shortened to its last characters, longer where that would be ambiguous."""
    for n in (8, 12, 16, 24):
        tail = peer[-n:]
        if sum(1 for o in others if o != peer and o.endswith(tail)) == 0:
            return "…" + tail
    return peer


def fmt_number(value: int | float | Fraction) -> str:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return f"{float(value):.2f}"
    if isinstance(value, float):
        return f"{value:.2f}" if value != int(value) else str(int(value))
    return str(value)


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total}")
        else:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
