"""The sync sessions' negentropy item lists and remembered messages, shared between sessions.

A sync session (:mod:`protocol.sync_session`) asks for each scope's item list, the (ts, id)
of its records, and may look up negentropy messages it computed before. Building a list reads
the scope's index (about 0.3 s and 7 MB at 100,000 records), so :class:`ItemCache` builds it
once per store version and lends it to every session that needs it meanwhile, and
:class:`MessageMemo` remembers small messages while a scope does not change: periodic sessions
between peers that hold the same records then need no item list at all. :class:`Lent` is one
session's view of both: the lists it borrowed, and the memo at their versions.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import trio

from node.store.sqlite import Store
from protocol import negentropy

__all__ = ["ItemCache", "Lent", "MessageMemo"]

#: A scope's negentropy item list (72 bytes an item in memory) stays cached between
#: sessions while it has at most this many items; a bigger one is dropped as soon as no
#: session uses it, so an idle node does not carry it.
KEEP_STORAGE_ITEMS = 20_000
#: Items kept in all cached lists together (least recently used dropped first).
MAX_KEPT_ITEMS = 50_000
#: Negentropy messages remembered for unchanged item lists: a responder's reply is a function
#: of its items and the message, and an initiator's first message of its items, so periodic
#: sessions between peers that hold the same records need no item list at all.
MAX_MEMO_BYTES = 1 << 20
MAX_MEMO_MESSAGE = 64 * 1024


@dataclass(eq=False)
class _Items:
    """One scope's negentropy storage at one store version, shared by concurrent sessions."""

    scope: str
    version: tuple[int, int]
    storage: negentropy.Storage | None = None
    ready: trio.Event = field(default_factory=trio.Event)
    users: int = 0


class ItemCache:
    """Builds each scope's ``negentropy.Storage`` once per store version (in a worker thread,
    a page of the index at a time) and lends it to every session that needs it meanwhile."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: OrderedDict[str, _Items] = OrderedDict()
        self._trim_due = False  # a big list was dropped: give its memory back (``trim``)

    async def acquire(self, scope: str) -> _Items:
        while True:
            version = self.store.scope_version(scope)
            entry = self._entries.get(scope)
            if entry is None or entry.version != version:
                entry = _Items(scope, version, users=1)
                self._entries[scope] = entry
                box: list[negentropy.Storage] = []
                try:
                    await trio.to_thread.run_sync(self._build, scope, box)
                    entry.storage = box.pop()
                except BaseException:
                    entry.users -= 1
                    if self._entries.get(scope) is entry:
                        del self._entries[scope]
                    raise
                finally:
                    entry.ready.set()
                self._entries.move_to_end(scope)
                return entry
            entry.users += 1
            try:
                await entry.ready.wait()
            except BaseException:
                entry.users -= 1
                raise
            if entry.storage is not None:
                self._entries.move_to_end(scope)
                return entry
            entry.users -= 1  # its build failed: try again

    def _build(self, scope: str, box: list[negentropy.Storage]) -> None:
        # Handed over in ``box``, not returned: trio's idle worker thread keeps its last
        # job's result referenced, which would keep a dropped item list alive (7 MB at
        # 100,000 items). Streamed from the index into the compact storage, so the pairs are
        # never all Python objects at once (about 160 MB at a million).
        box.append(self.store.build_items(scope, negentropy.Storage))

    def release(self, entry: _Items) -> None:
        entry.users -= 1
        if entry.users > 0:
            return
        too_big = entry.storage is None or len(entry.storage) > KEEP_STORAGE_ITEMS
        if too_big and self._entries.get(entry.scope) is entry:
            del self._entries[entry.scope]
            if entry.storage is not None:
                entry.storage = None
                self._trim_due = True
        kept = sum(len(e.storage) for e in self._entries.values() if e.storage is not None)
        for scope, old in list(self._entries.items()):
            if kept <= MAX_KEPT_ITEMS:
                break
            if old.users == 0 and old.storage is not None:
                kept -= len(old.storage)
                del self._entries[scope]

    async def trim(self) -> None:
        """After a big list was dropped, give the memory back to the system in a worker
        thread (``Store.release_memory`` takes the store's lock, which a big write may hold)."""
        if self._trim_due:
            self._trim_due = False
            await trio.to_thread.run_sync(self.store.release_memory)


class MessageMemo:
    """Small negentropy messages by (scope, store version, key), bounded in bytes."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, tuple[int, int], bytes], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, scope: str, version: tuple[int, int], key: bytes) -> bytes | None:
        found = self._items.get((scope, version, key))
        if found is not None:
            self._items.move_to_end((scope, version, key))
        return found

    def put(self, scope: str, version: tuple[int, int], key: bytes, message: bytes) -> None:
        if len(message) > MAX_MEMO_MESSAGE or (scope, version, key) in self._items:
            return
        self._items[(scope, version, key)] = message
        self._bytes += len(message)
        while self._bytes > MAX_MEMO_BYTES:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)


class Lent:
    """The item lists one session borrowed, and the memo it sees (a
    :class:`protocol.sync_session.Memo`): messages at the version of the list the session
    holds for a scope, or at the store's current version before it holds one."""

    def __init__(self, cache: ItemCache, memo: MessageMemo) -> None:
        self._cache = cache
        self._memo = memo
        self._entries: dict[str, _Items] = {}

    async def storage(self, scope: str) -> negentropy.Storage:
        """Borrow ``scope``'s item list until :meth:`release`."""
        entry = await self._cache.acquire(scope)
        old = self._entries.pop(scope, None)
        self._entries[scope] = entry
        if old is not None:
            self._cache.release(old)
        assert entry.storage is not None
        return entry.storage

    def release(self) -> None:
        """Give back every list borrowed (the session no longer uses them)."""
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            self._cache.release(entry)

    def _version(self, scope: str) -> tuple[int, int]:
        entry = self._entries.get(scope)
        return entry.version if entry is not None else self._cache.store.scope_version(scope)

    def get(self, scope: str, key: bytes) -> bytes | None:
        return self._memo.get(scope, self._version(scope), key)

    def put(self, scope: str, key: bytes, message: bytes) -> None:
        self._memo.put(scope, self._version(scope), key, message)
