"""glibc's allocator knobs, reached through ctypes: how a long-running node gives memory back.

The store trims the heap after a large read or write (``malloc_trim``) and the node pins the
mmap threshold at start-up (``mallopt``). Both are glibc's; on any other C library (musl,
macOS) ``libc.so.6`` does not load, or lacks the function, and each call does nothing.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold", "malloc_trim"]

#: glibc's ``M_MMAP_THRESHOLD`` option of ``mallopt``, and the value it starts at.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def malloc_trim() -> None:
    """Return the heap's free pages to the system."""
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def fix_mmap_threshold() -> None:
    """Keep big allocations (128 KiB and up) on their own mappings, given back when freed.

    glibc raises this threshold each time such a block is freed, so after the first big
    list (a negentropy item list: 100,000 items allocate a few MB of arrays) later ones come
    from the heap and stay there after they are freed: an idle node kept 9 MB more for each
    big sync it had served. A long-running node prefers its memory back.
    """
    libc = _glibc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
