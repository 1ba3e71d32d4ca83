"""The DHT of project providers between real nodes in one process on 127.0.0.1: followers
of a project that no seed hosts find each other through DHT servers, and converge."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from test_node import addr, running, wait_until

from node.net._compat import kad
from node.net.transport import ProtocolUnsupported
from node.runtime import Node
from node.service import ServiceConfig
from protocol import peers
from protocol.testing import RecordFactory

#: Peer exchange off: the followers must meet through the DHT, not through the seeds' lists.
NO_EXCHANGE = ServiceConfig(max_pending_asks=0)


async def test_followers_no_seed_hosts_find_each_other_through_the_dht(tmp_path: Path) -> None:
    f = RecordFactory()
    niche, other = f.project("alice", name="Niche"), f.project("bob", name="Hosted")
    work = [f.contribution(who, niche, title=f"part {who}") for who in ("alice", "carol", "dave")]
    wanted = {niche.id, *(r.id for r in work)}
    with trio.fail_after(90):
        async with AsyncExitStack() as stack:

            async def start(name: str, **options: object):  # type: ignore[no-untyped-def]
                return await stack.enter_async_context(
                    running(tmp_path, name, tuning=NO_EXCHANGE, **options)
                )

            s1 = await start("s1", dht="server", follow=[other.id])
            s2 = await start("s2", dht="server", follow=[other.id], bootstrap=[addr(s1)])
            seeds = (s1, s2)
            followers = [
                await start(
                    f"f{i}", dht="client", follow=[niche.id], bootstrap=[addr(seeds[i % 2])]
                )
                for i in range(3)
            ]
            started = trio.current_time()
            await followers[0].submit(niche.raw)
            for follower, record in zip(followers, work, strict=True):
                await follower.submit(record.raw)
            try:
                await wait_until(lambda: all(wanted <= _held(n) for n in followers), 45)
            except trio.TooSlowError:
                pytest.fail(
                    "not converged:\n" + "\n".join(_state(n, wanted) for n in (*seeds, *followers))
                )
            took = trio.current_time() - started
            print(f"three followers of a niche project converged in {took:.1f} s")
            ids = {n.peer_id for n in followers}
            for n in followers:
                assert ids & {p.peer_id for p in n.transport.connected_peers()} - {n.peer_id}
                assert n.metrics.get("commons_dht_provides_total", outcome="ok") >= 1
            # Each met the others by its lookup, or by theirs (then it was dialled).
            assert sum(
                n.metrics.get("commons_dht_lookups_total", outcome="found") for n in followers
            )
            for seed in seeds:
                # The seeds hold the project record (the meta scope is everyone's), never its work.
                assert not {r.id for r in work} & _held(seed)
                # Only DHT servers enter routing tables: the other seed, not the followers,
                # although they opened DHT streams to it (py-libp2p admitted them).
                assert seed.transport.dht.routing_table_size() == 1
            # The DHT speaks our protocol id only: not the public IPFS one.
            assert s1.transport.offers(s2.peer_id, "/commons/kad/1") is True
            with pytest.raises(ProtocolUnsupported):
                await s1.transport.open_stream(s2.peer_id, "/ipfs/kad/1.0.0")
            # A client answers no DHT queries.
            assert s1.transport.offers(followers[0].peer_id, "/commons/kad/1") is False
            assert peers.provider_key(niche.id) != peers.provider_key(other.id)


def _state(node: Node, wanted: set[bytes]) -> str:
    """One line on what ``node`` holds, whom it is connected to, and its DHT counters."""
    peers = sorted(p.peer_id[-5:] for p in node.transport.connected_peers())
    counters = [
        line
        for line in node.metrics.render().splitlines()
        if line.startswith(("commons_dht", "commons_dials", "commons_sync_sessions"))
    ]
    return f"{node.peer_id[-5:]}: holds {len(_held(node) & wanted)}, peers {peers}, {counters}"


def _held(node: object) -> set[bytes]:
    store = node.store  # type: ignore[attr-defined]
    return {i for scope in store.scopes() for _, i in store.items(scope)}


def test_a_dht_message_is_cut_to_the_caps_before_the_library_reads_it() -> None:
    message = Message(type=Message.MessageType.GET_PROVIDERS, key=b"k")
    for _ in range(300):
        entry = message.providerPeers.add()
        entry.id = os.urandom(38)
        entry.addrs.extend(os.urandom(8) for _ in range(30))
    message.closerPeers.add().id = b"one"
    reasons: list[str] = []
    token = kad.REPORT.set(reasons.append)
    try:
        cut = Message()
        cut.ParseFromString(kad._cut(message.SerializeToString()))
        small = Message(type=Message.MessageType.FIND_NODE).SerializeToString()
        assert kad._cut(small) == small  # within the caps: the very bytes
        kad._cut(b"\xff\xff\xff")
    finally:
        kad.REPORT.reset(token)
    assert len(cut.providerPeers) == kad.MAX_ENTRIES
    assert {len(p.addrs) for p in cut.providerPeers} == {kad.MAX_ADDRS}
    assert [p.id for p in cut.closerPeers] == [b"one"]
    assert reasons == ["over-cap", "unparsable"]


async def test_a_dht_operation_opens_at_most_its_budget_of_new_connections() -> None:
    class Host:
        def __init__(self) -> None:
            self.opened: list[str] = []

        def get_connected_peers(self) -> list[str]:
            return ["connected"]

        async def new_stream(self, peer: str, protocols: object) -> str:
            self.opened.append(peer)
            return peer

    host = Host()
    budgeted = kad._BudgetedHost(host)
    reasons: list[str] = []
    tokens = kad.REPORT.set(reasons.append), kad.DIALS_LEFT.set(operation := [2, 0])
    try:
        for peer in ("a", "connected", "b", "connected"):
            await budgeted.new_stream(peer, [])  # type: ignore[arg-type]
        with pytest.raises(kad.DialBudgetSpent):
            await budgeted.new_stream("c", [])  # type: ignore[arg-type]
    finally:
        kad.DIALS_LEFT.reset(tokens[1])
        kad.REPORT.reset(tokens[0])
    assert host.opened == ["a", "connected", "b", "connected"]
    assert reasons == ["dial-budget"]
    assert operation == [0, 4]  # two dials spent, four queries sent
    assert await budgeted.new_stream("d", []) == "d"  # type: ignore[arg-type]  # no budget set
