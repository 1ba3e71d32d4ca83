"""A node for the dashboard's in-process tests: a real home, store, views and authoring
(:func:`node.authoring.prepare`), without a network. What it stores is announced to the
``on_new`` listeners, as the node's ingestor does, so the event stream can be tested too."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from node.authoring import Authored, prepare
from node.home import Home
from node.metrics import Metrics
from node.store.sqlite import Store
from node.views.cache import ViewCache
from node.views.follow import Follow
from protocol.record import Record
from protocol.testing import RecordFactory


class _Transport:
    def __init__(self) -> None:
        self.banned: list[str] = []

    def banned_peers(self) -> list[str]:
        return list(self.banned)


class FakeNode:
    """What the API app and the dashboard need of a node."""

    def __init__(self, root: Path, follow: Follow | None = None) -> None:
        self.home = Home(root)
        self.home.init()
        self.store = Store.open(self.home.store_path)
        self.follow = follow or Follow()
        self.views = ViewCache(self.store, follow=self.follow)
        self.key = self.home.signing_key()
        self.peer_id = self.key.peer_id
        self.metrics = Metrics()
        self.transport = _Transport()
        self.ingestor = self
        self.connected: list[dict[str, Any]] = []
        self._listeners: list[Callable[[list[Record], str], None]] = []
        self.clock = RecordFactory().now_ms + 10**9
        self.front = None  # no API front process: the app answers the views itself

    def on_new(self, listener: Callable[[list[Record], str], None]) -> None:
        self._listeners.append(listener)

    def add(self, *records: Record, source: str = "gossip") -> None:
        """Store records as if they had arrived, and tell the listeners."""
        self.store.add(list(records), published=True)
        for listener in self._listeners:
            listener(list(records), source)

    async def author_checked(self, action: str, fields: dict[str, Any]) -> Authored:
        self.clock += 1000
        authored = prepare(
            action, fields, views=self.views, key=self.key, follow=self.follow, now_ms=self.clock
        )
        self.add(authored.record, source="local")
        return authored

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": self.peer_id,
            "running": True,
            "peers": len(self.connected),
            "records": self.store.count(),
            "projects": len(self.store.project_ids()),
            "version": "test",
            "uptime_seconds": 12.5,
            "syncing": 0,
            "catching_up": False,
        }

    def peers(self) -> list[dict[str, Any]]:
        return list(self.connected)

    def close(self) -> None:
        self.store.close()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, token: str) -> str:
    """Log ``client`` in through a one-time URL; the CSRF token of its session."""
    made = await client.post(
        "/api/v1/dashboard/logins", headers={"Authorization": f"Bearer {token}"}
    )
    assert made.status_code == 201, made.text
    url = httpx.URL(made.json()["url"])
    answer = await client.get(url.raw_path.decode())
    assert answer.status_code == 303
    home = await client.get("/")
    return csrf_of(home.text)
