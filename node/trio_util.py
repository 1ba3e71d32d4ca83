"""Exception groups from trio nurseries, reduced to the one exception callers expect.

A nursery wraps whatever its tasks raise in a ``BaseExceptionGroup``, nested once per
nursery; libp2p nests several. Most failures are one real exception among the ``Cancelled``
ones of its siblings, and callers (the CLI, the syncer's session, the API) expect it bare.
This is the one place that flattens a group and picks that exception out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

__all__ = ["leaves", "open_unwrapping_nursery", "raise_single", "real_leaves", "reraise"]


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception inside ``group`` and its nested groups, in order."""
    out: list[BaseException] = []
    for inner in group.exceptions:
        out.extend(leaves(inner) if isinstance(inner, BaseExceptionGroup) else [inner])
    return out


def real_leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The leaves of ``group`` that are not ``trio.Cancelled``, or all of them if none is:
    a sibling cancelled because another task failed is not news."""
    found = leaves(group)
    return [e for e in found if not isinstance(e, trio.Cancelled)] or found


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Re-raise the one real exception of ``group`` bare, keeping its own context rather
    than the group's; re-raise the group itself when it holds several."""
    real = real_leaves(group)
    if len(real) == 1:
        reraise(real[0])
    raise group


def reraise(leaf: BaseException) -> NoReturn:
    """Raise ``leaf``, taken out of a group, with its own context rather than the group being
    handled (which ``raise`` inside an ``except`` block would set)."""
    context = leaf.__context__
    try:
        raise leaf
    finally:
        leaf.__context__ = context


@asynccontextmanager
async def open_unwrapping_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery whose single failure leaves as itself, not wrapped in an exception group,
    so callers (and the CLI) see ``ApiStartError`` or ``OSError`` rather than a group."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        raise_single(group)
