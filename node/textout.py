"""Text output for people: aligned tables, relative times, short peer ids, progress bars.

Everything printed for people passes through :func:`terminal_safe`, because most of it comes
from peers: a project name, a title or a description is whatever its author signed, and the
records a store held before the format refused control characters may still carry them.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import TextIO

__all__ = ["Progress", "fmt_number", "relative_time", "short_peer", "table", "terminal_safe"]

#: What a terminal acts on instead of showing, or cannot show: C0 and C1 controls and DEL
#: (escape sequences start with ESC or the 8-bit CSI), the line and paragraph separators, the
#: bidi embeddings, overrides and isolates (they reorder whatever is printed after them), and
#: lone surrogates (which cannot be encoded, so printing them would fail).
_UNSAFE_IN_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: The same, less newline and tab, for text that is meant to span lines.
_UNSAFE_IN_TEXT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    return _SHORT_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def terminal_safe(text: str, *, multiline: bool = False) -> str:
    """``text`` with every character a terminal would act on written as a visible escape
    (``\\x1b``, ``\\u202e``, ``\\n``), so peer-supplied text can neither move the cursor,
    clear the screen, retitle the window, reorder what follows nor forge extra lines.

    ``multiline`` keeps newline and tab (for descriptions and whole blocks of output). The
    escapes are for reading, not for decoding: a backslash in the text stays as it is.
    """
    return (_UNSAFE_IN_TEXT if multiline else _UNSAFE_IN_LINE).sub(_escape, text)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()
) -> str:
    """An aligned plain-text table; columns whose index is in ``right`` are right-aligned.

    Every cell is one line: :func:`terminal_safe` escapes whatever a cell holds."""
    cells = [[str(h) for h in headers]] + [[terminal_safe(str(c)) for c in row] for row in rows]
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
        self.label = terminal_safe(label)
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
