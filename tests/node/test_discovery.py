"""Peer exchange between real nodes in one process on 127.0.0.1: nodes bootstrapped only to
one seed meet each other, and keep spreading records once the seed is gone."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio
from test_node import LOOPBACK, addr, running, wait_until

from node import exchange
from node.net.transport import Stream, TransportConfig, open_transport
from node.runtime import Node
from protocol import peers
from protocol.testing import RecordFactory


async def _hosted(
    tmp_path: Path,
    name: str,
    stop: trio.Event,
    stopped: trio.Event,
    *,
    task_status: trio.TaskStatus[Node],
) -> None:
    """Run a node in its own task until ``stop`` is set (one can stop while others run)."""
    async with running(tmp_path, name) as node:
        task_status.started(node)
        await stop.wait()
    stopped.set()


async def test_nodes_bootstrapped_to_one_seed_meet_and_outlive_it(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            stop_seed, seed_stopped = trio.Event(), trio.Event()
            seed: Node = await nursery.start(_hosted, tmp_path, "seed", stop_seed, seed_stopped)
            members = [
                await stack.enter_async_context(running(tmp_path, f"m{n}", bootstrap=[addr(seed)]))
                for n in range(6)
            ]
            ids = {m.peer_id for m in members}
            started = trio.current_time()
            # Each member connects to at least 3 others besides the seed within 30 s.
            await wait_until(lambda: all(len(ids & _peers(m)) >= 3 for m in members), 30)
            assert trio.current_time() - started < 30
            assert sum(m.metrics.total("commons_peers_learned_total") for m in members) >= 6
            assert sum(m.metrics.get("commons_dials_total", source="exchange") for m in members)
            ok = seed.metrics.get("commons_peer_exchanges_total", role="answerer", outcome="ok")
            assert ok >= 6
            # The seed stops: a record authored on one member still reaches every other.
            stop_seed.set()
            await seed_stopped.wait()
            project = await members[0].author("project", {"name": "No seed needed"})
            await wait_until(lambda: all(m.store.has(project.id) for m in members), 20)


def _peers(node: object) -> set[str]:
    return {p.peer_id for p in node.transport.connected_peers()}  # type: ignore[attr-defined]


async def test_a_hostile_answer_costs_nothing_but_itself(tmp_path: Path) -> None:
    """An oversized answer is refused whole; in a well-formed one, bad addresses are dropped
    one by one and counted while the good ones are kept."""
    factory = RecordFactory()
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            node = await stack.enter_async_context(running(tmp_path, "node"))
            config = TransportConfig(seed=factory.key("mallory").seed, listen=(LOOPBACK,))
            evil = await stack.enter_async_context(open_transport(config))
            good = f"/ip4/93.184.216.34/tcp/4710/p2p/{evil.peer_id}"
            bad = [f"/ip4/0.0.0.0/tcp/1/p2p/{evil.peer_id}", "not an address", good + "/x"]
            # By the number wanted: the node's own asks (16) get an empty answer.
            answers = {4: b"\x00\x10\x00\x00" + b"\x00" * 64, 5: peers.encode_answer([*bad, good])}

            async def hostile(stream: Stream) -> None:
                length = peers.frame_length(await stream.read_exactly(4))
                ask = peers.decode_frame(await stream.read_exactly(length), allow_local=True)
                assert isinstance(ask, peers.Ask)
                await stream.write(answers.get(ask.want, peers.encode_answer([])))

            evil.set_stream_handler(peers.PROTOCOL_ID, hostile)
            await evil.connect(addr(node))
            await wait_until(lambda: evil.peer_id in _peers(node))
            ask = exchange.ask
            assert (
                await ask(node.transport, evil.peer_id, 4, node.metrics, accept_local=False) == ()
            )
            got = await ask(node.transport, evil.peer_id, 5, node.metrics, accept_local=False)
            assert got == (good,)
            count = node.metrics.get
            assert (
                count("commons_peer_exchanges_total", role="asker", outcome="frame-too-large") == 1
            )
            assert count("commons_peer_exchanges_total", role="asker", outcome="ok") >= 1
            assert node.metrics.total("commons_peer_addrs_refused_total") == len(bad)


async def test_a_node_without_peer_exchange_neither_answers_nor_asks(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            quiet = await stack.enter_async_context(running(tmp_path, "quiet", peer_exchange=False))
            asker = await stack.enter_async_context(
                running(tmp_path, "asker", bootstrap=[addr(quiet)])
            )
            unsupported = {"role": "asker", "outcome": "unsupported"}
            await wait_until(
                lambda: asker.metrics.get("commons_peer_exchanges_total", **unsupported)
            )
            assert quiet.transport.offers(asker.peer_id, peers.PROTOCOL_ID) is True
            assert asker.transport.offers(quiet.peer_id, peers.PROTOCOL_ID) is False
            assert quiet.service.config.max_pending_asks == 0
            assert not quiet.metrics.total("commons_peer_exchanges_total")
