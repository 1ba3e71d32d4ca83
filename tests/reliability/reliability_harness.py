"""In-process helpers for the reliability tests: honest nodes and hostile libp2p peers.

Rules as in tests/node: port 0 on 127.0.0.1 everywhere, every wait a poll with a deadline.
A hostile peer is a bare :func:`node.net.transport.open_transport` (our own libp2p adapter: Noise,
Yamux, GossipSub, no validator) that publishes whatever bytes it likes, and can speak the
``/commons/sync/1`` frames of :mod:`protocol.sync` as a lying server or a pushing client.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from node.home import Home
from node.net.transport import Stream, Transport, TransportConfig, open_transport
from node.runtime import Node, NodeOptions, open_node
from protocol import negentropy
from protocol import sync as sp

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
#: Whether to run the full (long) forms: set by scripts/reliability.
FULL = os.environ.get("COMMONS_RELIABILITY") == "full"


async def wait_until(predicate: Callable[[], object], seconds: float = 15.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - the state changes in other tasks
            await trio.sleep(0.02)


@asynccontextmanager
async def running(
    root: Path, name: str, *, bootstrap: list[str] | tuple[str, ...] = (), **options: object
) -> AsyncIterator[Node]:
    """An honest node in this process, home ``root/name``, no mDNS, API off unless given."""
    home = Home(root / name)
    home.init()
    settings: dict[str, object] = {"listen": [LOOPBACK], "api": None, **options}
    opts = NodeOptions(bootstrap=list(bootstrap), mdns=False, **settings)  # type: ignore[arg-type]
    async with open_node(home, opts) as node:
        yield node


def addr(node: Node) -> str:
    return node.transport.listen_addrs()[0]


def held_ids(node: Node) -> set[bytes]:
    return {i for scope in node.store.scopes() for _, i in node.store.items(scope)}


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"reliability-peer:" + name.encode()).digest()


# --------------------------------------------------------------------------------------------
# Frames over a transport stream


class FrameStream:
    """Send and receive whole ``/commons/sync/1`` frames on one stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.reader = sp.FrameReader()

    async def send(self, frame: sp.Frame) -> None:
        await self.stream.write(sp.encode_frame(frame))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.write(data)

    async def recv(self) -> sp.Frame | None:
        """The next frame, or None at EOF."""
        while (frame := self.reader.next_frame()) is None:
            data = await self.stream.read(1 << 16)
            if not data:
                return None
            self.reader.feed(data)
        return frame


@dataclass
class LyingServer:
    """A sync server that claims to hold one record (``offer``) and answers ``want`` with it.

    ``offer`` is the bytes it serves; ``claim`` the ``(ts, id)`` it advertises in the meta
    scope (the id of ``offer`` by default). ``sessions`` counts the sessions served.
    """

    offer: bytes = b""
    claim: tuple[int, bytes] | None = None
    once: bool = False  # serve ``offer`` to the first ``want`` only, then nothing
    served: int = 0
    sessions: int = 0
    errors: list[sp.ErrorFrame] = field(default_factory=list)

    async def serve(self, stream: Stream) -> None:
        self.sessions += 1
        frames = FrameStream(stream)
        theirs = await frames.recv()
        if not isinstance(theirs, sp.Hello):
            return
        ours = sp.Hello(follow_all=True, scopes=("meta",))
        await frames.send(ours)
        shared = sp.shared_scopes(ours, theirs)
        claim = self.claim or (1, hashlib.sha256(self.offer).digest())
        sessions: dict[str, negentropy.Negentropy] = {}
        while True:
            frame = await frames.recv()
            if isinstance(frame, sp.Neg):
                replies = {}
                for number, message in frame.messages.items():
                    scope = shared[number]
                    if scope not in sessions:
                        items = [claim] if scope == "meta" else []
                        sessions[scope] = negentropy.Negentropy(negentropy.Storage(items))
                    replies[number] = sessions[scope].reconcile(message) or b""
                await frames.send(sp.Neg(messages=replies))
            elif isinstance(frame, sp.Want):
                give = not (self.once and self.served)
                self.served += give
                await frames.send(sp.Recs(records=(self.offer,) if give else ()))
            elif isinstance(frame, sp.Push):
                await frames.send(sp.Ack(new=0))
            else:
                if isinstance(frame, sp.ErrorFrame):
                    self.errors.append(frame)
                return


class Attacker:
    """A hostile peer: a bare libp2p transport with no validator of its own."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.peer_id = transport.peer_id
        self.server = LyingServer()

    @property
    def addr(self) -> str:
        return self.transport.listen_addrs()[0]

    def knows_subscribed(self, peer_id: str, topic: str) -> bool:
        """Whether our pubsub has heard ``peer_id`` subscribe to ``topic`` (so a publish on
        that topic reaches it through the fanout, without waiting for a mesh heartbeat)."""
        peers = self.transport._pubsub.peer_topics.get(topic, set())
        return any(str(p) == peer_id for p in peers)

    async def push(self, victim: Node, records: tuple[bytes, ...]) -> sp.Frame | None:
        """Open a sync session to ``victim`` and push ``records``: its answer (ack or error)."""
        stream = await self.transport.open_stream(victim.peer_id, sp.PROTOCOL_ID)
        frames = FrameStream(stream)
        try:
            await frames.send(sp.Hello(follow_all=True, scopes=("meta",)))
            if not isinstance(await frames.recv(), sp.Hello):
                return None
            await frames.send(sp.Push(records=records))
            return await frames.recv()
        finally:
            await stream.close()


@asynccontextmanager
async def open_attacker(name: str, *, lying_server: bool = True) -> AsyncIterator[Attacker]:
    """A hostile peer; with ``lying_server`` it answers sync sessions (``attacker.server``)."""
    config = TransportConfig(seed=seed_of(name), listen=(LOOPBACK,))
    async with open_transport(config) as transport:
        attacker = Attacker(transport)
        if lying_server:
            transport.set_stream_handler(sp.PROTOCOL_ID, attacker.server.serve)
        yield attacker
