"""The reactor's store work, in worker threads: the trio thread never waits on the store.

Every :class:`~node.storage.Store` method takes one lock, a write waits for an fsync, and a
sync's 10,000-record transaction holds the lock meanwhile; even a short read can wait that
long. So the effects of :mod:`node.service` that touch the store are carried out here:
address-book writes one at a time in a worker thread (best effort: beyond
``MAX_STORE_JOBS`` waiting, one is dropped), the project listing the subscriptions come
from, the scopes a sync session offers, and the folds of the views.
Results go back to the service through ``execute``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import trio

from node.service import Effect, NodeService, RefreshViews
from node.store.sqlite import Store, StoreError
from node.views.cache import ViewCache
from protocol.sync import Hello

__all__ = ["StoreWork"]

log = logging.getLogger(__name__)

#: Address-book writes waiting for the worker.
MAX_STORE_JOBS = 256


class StoreWork:
    """Store effects, run off the trio thread; called from the node's trio loop."""

    def __init__(
        self,
        store: Store,
        views: ViewCache,
        service: NodeService,
        execute: Callable[[Iterable[Effect]], None],
        *,
        held_only: bool = False,
    ) -> None:
        self.store = store
        #: Make again only the answers held (``ViewCache.refresh``'s ``held_only``).
        self.held_only = held_only
        self.views = views
        self.service = service
        self.execute = execute
        self._jobs, self._jobs_recv = trio.open_memory_channel[Callable[[], Any]](MAX_STORE_JOBS)

    def write_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue an address-book write for :meth:`run`."""
        try:
            self._jobs.send_nowait(partial(fn, *args))
        except trio.WouldBlock:
            log.debug("address book busy: dropped a %s", getattr(fn, "__name__", "write"))

    async def run(self) -> None:
        """The writer: one queued write at a time, each its own transaction."""
        async for job in self._jobs_recv:
            try:
                await trio.to_thread.run_sync(job)
            except StoreError as exc:
                log.warning("could not update the address book: %s", exc)

    async def hello(self) -> Hello:
        """What our sync sessions offer (counting the stored scopes reads the whole index
        when its memo is stale: tens of milliseconds at 100,000 records)."""
        following_all = not self.service.config.follow
        stored = await trio.to_thread.run_sync(self.store.scopes) if following_all else {}
        return self.service.hello(stored)

    async def list_projects(self) -> None:
        try:
            ids = await trio.to_thread.run_sync(self.store.project_ids)
        except StoreError as exc:
            log.warning("could not list the stored projects: %s", exc)
            return
        self.execute(self.service.projects_listed(ids))

    async def refresh_views(self, effect: RefreshViews) -> None:
        """Fold the followed projects whose results are stale (see ``ViewCache.refresh``),
        if records were stored since the last time or the last refresh left projects for later
        (its pause between two rebuilds of one): the first ``ledger`` or ``shares`` of a
        project then answers in milliseconds instead of a second or more, and a big project
        receiving records answers from its last results (``ViewCache``'s ``stale_seconds``)
        while they are made again here."""
        step = partial(
            self.views.refresh_changed,
            self.service.follows,
            effect.budget,
            first=effect.first,
            held_only=self.held_only,
        )
        try:
            if await trio.to_thread.run_sync(step) and effect.first:
                # Reading every project's key went through the whole index.
                await trio.to_thread.run_sync(self.store.release_memory)
        except StoreError as exc:
            log.warning("warming the views failed: %s", exc)
        self.execute(self.service.views_refreshed(trio.current_time()))
