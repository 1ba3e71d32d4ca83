"""Text output for people: aligned tables, dates, names beside short peer ids, progress bars.

Everything printed for people passes through :func:`terminal_safe`, because most of it comes
from peers: a project name, a title or a description is whatever its author signed, and the
records a store held before the format refused control characters may still carry them.
"""

from __future__ import annotations

import functools
import re
import sys
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import TextIO

from protocol.attest import names_handle

__all__ = [
    "Progress",
    "clip",
    "date_time",
    "display_width",
    "duration",
    "fmt_number",
    "person",
    "short_peer",
    "short_peers",
    "table",
    "terminal_safe",
]

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


#: A character beyond ASCII: the only ones whose width needs a look-up.
_NON_ASCII = re.compile("[^\x00-\x7f]")


@functools.lru_cache(maxsize=4096)
def _char_width(ch: str) -> int:
    """Columns a terminal gives ``ch``: 2 for East Asian wide and fullwidth characters, 0 for
    combining marks and zero-width format characters, else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """The number of terminal columns ``text`` takes (wide CJK characters count 2)."""
    if text.isascii():
        return len(text)
    # An ASCII character takes one column: only the others are looked up (a table of
    # 20,000 short handles, each ending in an ellipsis, measured 2.5 s char by char).
    return len(text) + sum(_char_width(ch) - 1 for ch in _NON_ASCII.findall(text))


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` columns, ending in an ellipsis when it was cut."""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(cell: str, used: int, width: int, right: bool) -> str:
    fill = " " * (width - used)
    return fill + cell if right else cell + fill


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Sequence[int] = (),
    max_width: int | None = 60,
) -> str:
    """An aligned plain-text table; columns whose index is in ``right`` are right-aligned.

    Columns are measured in terminal columns (a CJK character takes two), and a cell wider
    than ``max_width`` is cut with an ellipsis. Every cell is one line: :func:`terminal_safe`
    escapes whatever a cell holds."""
    cells = [[str(h) for h in headers]] + [[terminal_safe(str(c)) for c in row] for row in rows]
    used = [[display_width(c) for c in row] for row in cells]  # measured once a cell
    if max_width is not None:
        for row, row_used in zip(cells, used, strict=True):
            for i, width in enumerate(row_used):
                if width > max_width:
                    row[i] = clip(row[i], max_width)
                    row_used[i] = display_width(row[i])
    widths = [max(row[i] for row in used) for i in range(len(headers))]
    lines = []
    for n, (row, row_used) in enumerate(zip(cells, used, strict=True)):
        parts = [_pad(cell, row_used[i], widths[i], i in right) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def date_time(ts_ms: int) -> str:
    """A timestamp in milliseconds as a UTC date and time to the minute (``2026-12-01 11:18``)."""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return str(ts_ms)  # beyond what a datetime holds: the number is all there is


def short_peer(peer: str, others: Sequence[str] = ()) -> str:
    """A peer id shortened to its last characters, longer where that would be ambiguous.

    An unclaimed handle (docs/RECORD-FORMAT.md section 4.10) stands where a peer would: a forge
    user or an ORCID shows whole, a hashed email as its first hex digits."""
    if peer.startswith("email:"):
        return terminal_safe(peer[:18]) + "…"
    if names_handle(peer):  # a forge user or an ORCID iD: short enough whole
        return terminal_safe(peer)
    for n in (8, 12, 16, 24):
        tail = peer[-n:]
        if sum(1 for o in others if o != peer and o.endswith(tail)) == 0:
            return "…" + tail
    return peer


def short_peers(peers: Sequence[str]) -> dict[str, str]:
    """``short_peer(p, peers)`` of every ``p`` in ``peers``, in one pass a tail length:
    ``short_peer`` reads every other peer, so a table calling it for each of 20,000 rows
    would read 400 million."""
    distinct = set(peers)
    out: dict[str, str] = {}
    pending: list[str] = []
    for peer in distinct:
        if names_handle(peer) or len(peer) < 24:
            out[peer] = short_peer(peer, peers)  # a handle, or too short for the tails
        else:
            pending.append(peer)
    for n in (8, 12, 16, 24):
        tails = Counter(p[-n:] for p in distinct if len(p) >= n)
        left = []
        for peer in pending:
            tail = peer[-n:]
            # Only itself ends with this tail (a shorter string cannot end with it).
            if tails[tail] == 1:
                out[peer] = "…" + tail
            else:
                left.append(peer)
        pending = left
    out.update((peer, peer) for peer in pending)
    return out


def person(
    peer: str, names: Mapping[str, str], others: Sequence[str] = (), *, short: str | None = None
) -> str:
    """A peer as a table shows it: its display name (escaped, clipped: names are chosen by
    peers and are not unique) beside its short id, or the short id alone. ``short``: its
    short id made already (:func:`short_peers`)."""
    if short is None:
        short = short_peer(peer, others)
    name = names.get(peer)
    return f"{clip(terminal_safe(name), 24)} ({short})" if name else short


def fmt_number(value: int | float | Fraction) -> str:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return f"{float(value):.2f}"
    if isinstance(value, float):
        return f"{value:.2f}" if value != int(value) else str(int(value))
    return str(value)


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal.

    ``unit`` says what ``total`` and :meth:`advance` count: ``"records"`` or ``"bytes"``; the
    other count is told with :meth:`add_records` or :meth:`add_bytes`. The line shows the
    records done, the megabytes read or written, the rate and, with a total, the time left."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        *,
        unit: str = "records",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = terminal_safe(label)
        self.total = total
        self.unit = unit
        self.done = 0
        self.records = 0
        self.bytes = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._clock = clock
        self._start = clock()
        self._last = 0.0
        self._drawn = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.unit == "records":
            self.records += n
        else:
            self.bytes += n
        self._tick()

    def add_records(self, n: int) -> None:
        """Count ``n`` records done, for a bar whose ``unit`` is bytes."""
        self.records += n
        self._tick()

    def add_bytes(self, n: int) -> None:
        """Count ``n`` bytes done, for a bar whose ``unit`` is records."""
        self.bytes += n

    def _tick(self) -> None:
        now = self._clock()
        if self.enabled and now - self._last > 0.1:
            self._last = now
            self._draw()

    def line(self) -> str:
        """The bar as it is drawn now, without the carriage return."""
        elapsed = max(self._clock() - self._start, 1e-9)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            frac = min(1.0, self.done / self.total)
            parts.append(f"[{'#' * int(frac * 30):<30}] {100 * frac:3.0f}%")
        parts.append(f"{self.records} records")
        mb = f"{self.bytes / 1e6:.1f}"
        if self.unit == "bytes":
            parts.append(f"{mb}/{self.total / 1e6:.1f} MB" if self.total else f"{mb} MB")
            parts.append(f"{rate / 1e6:.1f} MB/s")
        else:
            parts.append(f"{mb} MB")
            parts.append(f"{rate:.0f} records/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        return "  ".join(parts)

    def _draw(self) -> None:
        # Padded to the longest line drawn so far, so a shorter line leaves no tail of the
        # last one (no escape sequence: only CR is written besides visible text).
        line = self.line()
        self._drawn = max(self._drawn, display_width(line))
        self.stream.write(f"\r{_pad(line, display_width(line), self._drawn, False)}")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def duration(seconds: float) -> str:
    """A length of time for people (an uptime): ``2d 3h``, ``1h02m``, ``3m05s``, ``12s``."""
    if seconds >= 86400:
        return f"{int(seconds // 86400)}d {int(seconds % 86400 // 3600)}h"
    return _duration(seconds)
