"""``GET /api/v1/events``: records as they are stored, as Server-Sent Events.

The node's ingestor calls :meth:`EventHub.publish` after each commit of new records (its
``on_new`` listener, on the trio loop); each connected client has a bounded queue, and a
client that falls ``QUEUE`` events behind is disconnected rather than buffered without end
(its ``EventSource`` reconnects, and a reload shows what it missed). At most ``MAX_CLIENTS``
streams are open at once; one more is answered 503. A comment line every ``HEARTBEAT``
seconds lets a client, and the server, notice a dead connection.

Each event is ``event: record``, ``id:`` the record id, and ``data:`` one JSON object:
``{"id", "kind", "author", "project", "ts", "title", "source"}``, where ``title`` is the
contribution's title, the project's name or the profile's name (else null) and ``source``
where the record came from (``gossip``, ``sync``, ``api``, ``local``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import trio

from protocol.record import ContributionBody, ProfileBody, ProjectBody, Record
from protocol.signing import peer_id

__all__ = ["EventHub", "event_json"]

MAX_CLIENTS = 32
QUEUE = 256
HEARTBEAT = 15.0


def event_json(record: Record, source: str) -> dict[str, Any]:
    body = record.body
    title = None
    if isinstance(body, ContributionBody):
        title = body.title
    elif isinstance(body, ProjectBody | ProfileBody):
        title = body.name
    return {
        "id": record.id.hex(),
        "kind": record.kind,
        "author": peer_id(record.author),
        "project": record.project.hex() if record.project is not None else None,
        "ts": record.ts,
        "title": title,
        "source": source,
    }


class _Client:
    __slots__ = ("project", "send")

    def __init__(self, send: trio.MemorySendChannel[bytes], project: str | None) -> None:
        self.send = send
        self.project = project


class EventHub:
    """The open event streams, fed by :meth:`publish`."""

    def __init__(self, *, max_clients: int = MAX_CLIENTS, queue: int = QUEUE) -> None:
        self.max_clients = max_clients
        self.queue = queue
        self._clients: list[_Client] = []

    @property
    def clients(self) -> int:
        return len(self._clients)

    def full(self) -> bool:
        return len(self._clients) >= self.max_clients

    def publish(self, records: list[Record], source: str) -> None:
        """Queue ``records`` for every client (those of their project, when filtered)."""
        if not self._clients:
            return
        for record in records:
            payload = event_json(record, source)
            text = json.dumps(payload, ensure_ascii=True)
            message = f"event: record\nid: {payload['id']}\ndata: {text}\n\n".encode()
            for client in list(self._clients):
                wanted = client.project is None or client.project == payload["project"]
                if payload["kind"] == "project" and client.project == payload["id"]:
                    wanted = True
                if not wanted:
                    continue
                try:
                    client.send.send_nowait(message)
                except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                    # Too far behind (or gone): closing its queue ends its stream.
                    client.send.close()
                    self._clients.remove(client)

    async def stream(self, project: str | None = None) -> AsyncIterator[bytes]:
        """One client's stream of events, until it disconnects or falls behind."""
        send, receive = trio.open_memory_channel[bytes](self.queue)
        client = _Client(send, project)
        self._clients.append(client)
        try:
            # The first bytes tell the client (and any proxy) that the stream is open.
            yield b"retry: 2000\n: connected\n\n"
            async with receive:
                while True:
                    with trio.move_on_after(HEARTBEAT) as waited:
                        try:
                            message = await receive.receive()
                        except trio.EndOfChannel:
                            return
                    yield b": ping\n\n" if waited.cancelled_caught else message
        finally:
            if client in self._clients:
                self._clients.remove(client)
            send.close()
