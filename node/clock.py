"""The wall clock in the unit records and the store use: whole milliseconds since the epoch.

Records carry ``ts`` in milliseconds, the store stamps arrivals and peer contacts with it, and
validation compares a record's time with it; one function keeps them on the same reading.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch, by the system clock (integer arithmetic: no float
    rounding at the millisecond boundary)."""
    return time.time_ns() // 1_000_000
