"""Patch: Yamux's ``PY_YAMUX_*`` settings read from the environment once, and window updates
sent by go-yamux's rule.

Why: py-libp2p's Yamux reads its settings from ``os.environ`` on every read and write (2 %
of the relay's samples at benchmark figure 5), and by default sends a window update after
every read (9 %). ``PY_YAMUX_RELEASE_ON_READ=0`` is py-libp2p's own switch for go-yamux's
rule (an update once half the window has been read); it is set in the environment unless the
operator set it.

Upstream bug: the environment lookups are not cached, and the per-read window update is the
default.

How: the private ``_py_yamux_env`` and ``_py_yamux_env_set`` are wrapped in ``lru_cache``
(the environment is fixed once the node runs). On upgrade: a renamed function fails at
``install`` with AttributeError; an edited one trips its fingerprint in ``UPSTREAM``.
"""

from __future__ import annotations

import functools
import os

import libp2p.stream_muxer.yamux.yamux as yamux

UPSTREAM = {
    "libp2p.stream_muxer.yamux.yamux._py_yamux_env": (
        "1c26e5bb6db0a6ba9bb58281847ffebe0cbe6e3518a63faf684c7c9c224ef1fd"
    ),
    "libp2p.stream_muxer.yamux.yamux._py_yamux_env_set": (
        "48dcb1f17d9207de753b5aac375054c2c9d8f90082756281a3d982b261610b07"
    ),
}


def install() -> None:
    """Set the window-update rule and cache the settings (idempotent)."""
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    if not hasattr(yamux._py_yamux_env, "cache_info"):
        yamux._py_yamux_env = functools.lru_cache(maxsize=64)(yamux._py_yamux_env)
        yamux._py_yamux_env_set = functools.lru_cache(maxsize=64)(yamux._py_yamux_env_set)
