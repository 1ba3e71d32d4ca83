"""Memory knobs of a long-running process: glibc's allocator, and the garbage collector.

The store trims the heap after a large read or write (``malloc_trim``) and the node pins the
mmap threshold at start-up (``mallopt``). Both are glibc's; on any other C library (musl,
macOS) ``libc.so.6`` does not load, or lacks the function, and each call does nothing.
The node's process and its API front process leave what their imports made out of the
garbage collector's full passes (``freeze_heap``).
"""

from __future__ import annotations

import ctypes
import functools
import gc

__all__ = ["MMAP_THRESHOLD", "fix_mmap_threshold", "freeze_heap", "malloc_trim", "thaw_heap"]

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


def freeze_heap() -> None:
    """Move every object alive now to the collector's permanent generation (``gc.freeze``).

    The cyclic collector's full pass walks every object it tracks, while holding the
    interpreter: a node's process holds about 90,000 once its modules are imported
    (py-libp2p's above all), and each full pass took 80-90 ms on a 2-core machine, 30 ms in
    the API's front process; during a catch-up, which allocates all the time, such passes
    come every second or so and stop the event loop for their length, or longer on busy
    cores. Called before the process makes anything that it will drop (a connection, a
    stream), as a frozen object left in a reference cycle is never collected: modules and
    what lives as long as the process cost nothing frozen (reference counts still free
    them), and a full pass then walks only what came later.
    """
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (``gc.unfreeze``): a node stopping in a
    process that goes on (a test's, an embedder's) leaves no cyclic garbage behind."""
    gc.unfreeze()
