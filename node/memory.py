"""How the node asks glibc to manage its memory (a long-running process wants it back)."""

from __future__ import annotations

import ctypes

__all__ = ["fixed_mmap_threshold"]

#: glibc's ``M_MMAP_THRESHOLD`` option of ``mallopt``, and the value it starts at.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def fixed_mmap_threshold() -> None:
    """Keep big allocations (128 KiB and up) on their own mappings, given back when freed.

    glibc raises this threshold each time such a block is freed, so after the first big
    list (a negentropy item list: 100,000 items allocate a few MB of arrays) later ones come
    from the heap and stay there after they are freed: an idle node kept 9 MB more for each
    big sync it had served. A long-running node prefers its memory back. Without glibc this
    does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass
