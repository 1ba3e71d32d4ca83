"""Liveness and sync with peers that serve neither ping nor sync, as a stock js-libp2p node.

A real node and a bare libp2p peer (``node.net.transport`` with GossipSub and identify, its ping
handler removed, no sync handler) in one process on 127.0.0.1. Liveness rounds are shortened
to 0.5 s (a check still in flight at the next round counts as missed, so this is also the time
a peer has to answer: shorter rounds made a loaded machine look like a dead peer).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from test_node import LOOPBACK, addr, running, wait_until

from node import liveness
from node.net.transport import Transport, TransportConfig, open_transport
from node.runtime import Node
from node.service import ServiceConfig
from protocol import sync
from protocol.testing import RecordFactory
from protocol.validation import META_TOPIC

PING = liveness.PING_PROTOCOL


#: Liveness rounds (and the time a check may take) of the nodes in these tests.
SHORT_ROUNDS = ServiceConfig(liveness_interval=0.5, liveness_timeout=0.5)


@asynccontextmanager
async def gossip_only(*, ping: bool = False) -> AsyncIterator[Transport]:
    """A libp2p peer that serves GossipSub and identify only (and ping if asked)."""
    seed = hashlib.sha256(b"gossip-only peer").digest()
    async with open_transport(TransportConfig(seed=seed, listen=(LOOPBACK,))) as peer:
        if not ping:
            peer.remove_stream_handler(PING)
        await peer.subscribe(META_TOPIC)
        yield peer


def connected(node: Node, peer: Transport) -> bool:
    return peer.peer_id in {p.peer_id for p in node.transport.connected_peers()}


def count(node: Node, name: str, outcome: str) -> float:
    return node.metrics.get(name, outcome=outcome)


@asynccontextmanager
async def stalled(peer: Transport) -> AsyncIterator[None]:
    """Make the peer's connections carry nothing more either way, as a partition does: its
    side stops reading and writing (the TCP connection stays open). On leaving, its side of
    those connections is closed (its tasks hang in reads that would never see the end)."""

    async def hang(*args: object) -> None:
        await trio.sleep_forever()

    secured = [c.muxed_conn.secured_conn for c in peer._host.get_network().get_connections()]
    for conn in secured:
        conn.read = hang  # type: ignore[method-assign]
        conn.write = hang  # type: ignore[method-assign]
    try:
        yield
    finally:
        for conn in secured:
            del conn.read, conn.write
            await conn.close()


def sync_attempts(node: Node) -> list[str]:
    """Count the node's attempts to open the sync protocol (returned list grows)."""
    attempts: list[str] = []
    real = node.transport.open_stream

    async def counting(peer_id: str, protocol_id: str) -> object:
        if protocol_id == sync.PROTOCOL_ID:
            attempts.append(peer_id)
        return await real(peer_id, protocol_id)

    node.transport.open_stream = counting  # type: ignore[method-assign, assignment]
    return attempts


async def test_a_gossip_only_peer_stays_connected_and_is_asked_to_sync_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="node")
    factory = RecordFactory()
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            peer = await stack.enter_async_context(gossip_only())
            # The node dials the peer, so it starts a sync at once; periodic syncs are due at
            # every tick (0.5 s), and the peer is the only candidate.
            node = await stack.enter_async_context(
                running(
                    tmp_path,
                    "a",
                    bootstrap=[addr_of(peer)],
                    sync_interval=0.2,
                    tuning=SHORT_ROUNDS,
                )
            )
            attempts = sync_attempts(node)
            await wait_until(lambda: not node.service.speaks_sync(peer.peer_id))
            asked = len(attempts)  # 0 or 1: the first attempt may precede the counter
            probes = count(node, "commons_keepalives_total", "ok")
            await wait_until(lambda: count(node, "commons_keepalives_total", "ok") >= probes + 10)
            # Ten rounds: every probe answered, no ping tried in vain.
            assert connected(node, peer)
            assert node.peer_id in {p.peer_id for p in peer.connected_peers()}
            assert count(node, "commons_keepalives_total", "missed") == 0
            assert node.metrics.total("commons_pings_total") == 0
            assert node.metrics.total("commons_peers_dropped_total") == 0
            assert node.transport.offers(peer.peer_id, PING) is False
            # Asked once, on connecting, and never again in the periodic rounds since.
            assert len(attempts) == asked
            said = [r for r in caplog.records if f"does not serve {sync.PROTOCOL_ID}" in r.message]
            assert len(said) == 1
            assert (await node.sync_now())["peers"] == 0  # `commons sync` skips it too
            # It is in the gossip mesh both ways.
            await wait_until(lambda: peer.peer_id in node.transport.mesh_peers(META_TOPIC))
            project = await node.author("project", {"name": "Seen from outside"})
            while (await peer.messages.receive()).data != project.raw:
                pass
            theirs = factory.profile("outsider", name="Outsider")
            await peer.publish(META_TOPIC, theirs.raw)
            await wait_until(lambda: node.store.has(theirs.id))


def addr_of(peer: Transport) -> str:
    return peer.listen_addrs()[0]


async def test_a_refused_ping_is_not_a_miss(tmp_path: Path) -> None:
    """Identify listed ping, then the peer stopped serving it: the refusal of a fresh ping
    stream is an answer, and the connection is probed from then on."""
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            peer = await stack.enter_async_context(gossip_only(ping=True))
            node = await stack.enter_async_context(
                running(tmp_path, "a", bootstrap=[addr_of(peer)], tuning=SHORT_ROUNDS)
            )
            await wait_until(lambda: count(node, "commons_pings_total", "ok") >= 2)
            assert node.transport.offers(peer.peer_id, PING) is True
            peer.remove_stream_handler(PING)
            for stream in node.liveness.ping_streams():
                await stream.reset()  # the kept stream would go on answering
            await wait_until(lambda: count(node, "commons_keepalives_total", "ok") >= 6)
            assert count(node, "commons_pings_total", "missed") == 0
            assert count(node, "commons_keepalives_total", "missed") == 0
            assert node.metrics.total("commons_peers_dropped_total") == 0
            assert connected(node, peer)


async def test_a_stalled_gossip_only_peer_is_dropped(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            peer = await stack.enter_async_context(gossip_only())
            node = await stack.enter_async_context(running(tmp_path, "a", tuning=SHORT_ROUNDS))
            # No redial: the drop is what is checked.
            node.service.config = replace(node.service.config, target_peers=0)
            await peer.connect(addr(node))
            await wait_until(lambda: count(node, "commons_keepalives_total", "ok") >= 2)
            async with stalled(peer):
                await wait_until(
                    lambda: (
                        node.metrics.get("commons_peers_dropped_total", reason="unresponsive") == 1
                    )
                )
                await wait_until(lambda: not connected(node, peer))
            assert node.metrics.total("commons_pings_total") == 0  # probes found it dead
