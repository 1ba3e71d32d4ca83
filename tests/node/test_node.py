"""Several real nodes in one process on 127.0.0.1: gossip, validation, reconciliation, follows.

Rules: port 0 everywhere, `trio.fail_after` around every test, waits are polls with a deadline.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from node import gossip
from node.home import Home
from node.net.transport import TransportConfig, open_transport
from node.runtime import Node, NodeOptions, open_node
from node.service import ServiceConfig
from node.sync import syncer
from protocol import sync
from protocol.errors import InvalidRecord
from protocol.record import Record
from protocol.testing import RecordFactory
from protocol.validation import META_TOPIC, parse_record, project_topic

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


async def wait_until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``seconds``."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - state changes in other tasks, no event
            await trio.sleep(0.05)


@asynccontextmanager
async def running(
    tmp_path: Path, name: str, *, bootstrap: list[str] = (), **options: object
) -> AsyncIterator[Node]:
    home = Home(tmp_path / name)
    home.init()
    opts = NodeOptions(
        listen=[LOOPBACK], bootstrap=list(bootstrap), api=None, mdns=False, **options
    )
    async with open_node(home, opts) as node:
        yield node


def addr(node: Node) -> str:
    return node.transport.listen_addrs()[0]


def ids(node: Node) -> set[bytes]:
    return {i for scope in node.store.scopes() for _, i in node.store.items(scope)}


async def test_gossip_reaches_a_line_of_nodes(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(b)]))
            await wait_until(lambda: len(b.transport.connected_peers()) == 2)
            await wait_until(lambda: a.transport.mesh_peers(META_TOPIC) != [])
            await wait_until(lambda: c.transport.mesh_peers(META_TOPIC) != [])
            project = await a.author("project", {"name": "Wikispeed"})
            await wait_until(lambda: c.store.has(project.id))
            # The new project's topic is subscribed on every node; a contribution follows it.
            topic = project_topic(project.id)
            await wait_until(lambda: all(n.service.subscribed(topic) for n in (a, b, c)))
            await wait_until(
                lambda: c.transport.mesh_peers(topic) != [],
            )
            contribution = await c.author(
                "contribution",
                {"project": project.id.hex(), "type": "code", "title": "Engine", "minutes": 90},
            )
            await wait_until(lambda: a.store.has(contribution.id))
            assert a.views.ledger(project.id.hex())[0]["id"] == contribution.id.hex()
            assert a.metrics.total("commons_published_total") >= 1


async def test_forged_record_is_refused_and_not_forwarded(tmp_path: Path) -> None:
    """A hostile peer gossips a record with a broken signature to B; C never sees it."""
    factory = RecordFactory()
    good = factory.project("mallory", name="Honest")
    raw = bytearray(factory.project("mallory", name="Forged").raw)
    sig_at = raw.find(b"\xa3sig\xc4\x40") + 6  # the 64 signature bytes follow this header
    raw[sig_at + 10] ^= 0x01
    forged = bytes(raw)
    with pytest.raises(InvalidRecord) as info:
        parse_record(forged, now_ms=None)
    assert info.value.code == "bad-signature"

    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            b = await stack.enter_async_context(running(tmp_path, "b"))
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(b)]))
            config = TransportConfig(seed=factory.key("mallory").seed, listen=(LOOPBACK,))
            evil = await stack.enter_async_context(open_transport(config))
            await evil.subscribe(META_TOPIC)
            await evil.connect(addr(b))
            await wait_until(lambda: len(b.transport.connected_peers()) == 2)
            await wait_until(lambda: evil.peer_id in b.transport.mesh_peers(META_TOPIC), 15)
            await wait_until(lambda: b.peer_id in c.transport.mesh_peers(META_TOPIC), 15)
            await evil.publish(META_TOPIC, forged)
            await evil.publish(META_TOPIC, good.raw)
            await wait_until(lambda: c.store.has(good.id))
            assert not b.store.has(_id(forged))
            assert not c.store.has(_id(forged))
            assert b.metrics.get("commons_gossip_rejected_total", reason="bad-signature") == 1
            # The node keeps serving: a record authored on B still reaches C.
            project = await b.author("project", {"name": "Still here"})
            await wait_until(lambda: c.store.has(project.id))


def _id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


async def test_partition_heals_by_reconciliation(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            await wait_until(lambda: len(a.transport.connected_peers()) == 1)
            project = await a.author("project", {"name": "Shared"})
            await wait_until(lambda: b.store.has(project.id))
            # Partition: no connection, and no redialling meanwhile on either side (a node
            # short of peers redials the addresses it knows); both ends close at once.
            for node in (a, b):
                node.service.config = replace(node.service.config, target_peers=0)
            await b.transport.disconnect(a.peer_id)
            await a.transport.disconnect(b.peer_id)
            await wait_until(
                lambda: not a.transport.connected_peers() and not b.transport.connected_peers()
            )
            made: list[Record] = []
            for i in range(20):
                for node in (a, b):
                    made.append(
                        await node.author(
                            "contribution",
                            {
                                "project": project.id.hex(),
                                "type": "docs",
                                "title": f"{node.peer_id[-4:]} #{i}",
                            },
                        )
                    )
            assert ids(a) != ids(b)
            # Heal: reconnect; the dialling side reconciles at once.
            await b.transport.connect(addr(a))
            for node in (a, b):
                node.service.config = replace(node.service.config, target_peers=8)
            result = await b.sync_now()
            assert result["peers"] == 1
            await wait_until(lambda: ids(a) == ids(b))
            assert all(a.store.has(r.id) and b.store.has(r.id) for r in made)
            # Views may answer from answers made a moment before the last records arrived
            # (docs/INTERFACES.md, "Freshness of a running node's views"): they agree soon.
            pid = project.id.hex()
            await wait_until(lambda: a.views.shares(pid) == b.views.shares(pid))
            assert sum(s["contributions"] for s in a.views.shares(pid)) == len(made)


async def test_follow_only_some_projects(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            p1 = await a.author("project", {"name": "One"})
            p2 = await a.author("project", {"name": "Two"})
            c1 = await a.author(
                "contribution", {"project": p1.id.hex(), "type": "code", "title": "in one"}
            )
            c2 = await a.author(
                "contribution", {"project": p2.id.hex(), "type": "code", "title": "in two"}
            )
            f = await stack.enter_async_context(
                running(tmp_path, "f", bootstrap=[addr(a)], follow=[p1.id])
            )
            await wait_until(lambda: f.store.has(c1.id), 15)
            # Both genesis records travel in the meta scope; only project one's records come.
            assert f.store.has(p1.id)
            assert f.store.has(p2.id)
            assert not f.store.has(c2.id)
            # Live gossip respects the follow list too.
            await wait_until(lambda: f.service.subscribed(project_topic(p1.id)))
            assert not f.service.subscribed(project_topic(p2.id))
            await wait_until(lambda: f.peer_id in a.transport.mesh_peers(project_topic(p1.id)), 15)
            c3 = await a.author(
                "contribution", {"project": p1.id.hex(), "type": "docs", "title": "later"}
            )
            c4 = await a.author(
                "contribution", {"project": p2.id.hex(), "type": "docs", "title": "later"}
            )
            await wait_until(lambda: f.store.has(c3.id))
            result = await f.sync_now()
            assert result["peers"] == 1
            assert not f.store.has(c4.id)
            # status says what the node follows, where it listens, and that it is caught up.
            status = f.status()
            assert status["follow"] == [p1.id.hex()]
            assert status["seed"] is False
            assert status["listen"] == f.transport.listen_addrs()
            assert status["api"] is None
            assert status["version"]
            assert 0 <= status["uptime_seconds"] < 60
            assert (status["syncing"], status["catching_up"]) == (0, False)
            f._syncing = 1  # a session under way after one that brought nothing: caught up
            assert not f.catching_up
            f._last_sync_received = 3  # ... after one that brought records: catching up
            assert f.catching_up
            f._syncing = 0


@pytest.mark.parametrize("case", ["forged", "oversized"])
async def test_a_sync_peer_sending_garbage_is_dropped(tmp_path: Path, case: str) -> None:
    """A pushed record that is invalid ends the session and bans the peer. An oversized one
    inside a well-formed frame is refused on its own (the frame cannot be out of step), so
    the valid record pushed beside it is stored first."""
    factory = RecordFactory()
    if case == "forged":
        raw = bytearray(factory.project("mallory", name="Forged").raw)
        raw[raw.find(b"\xa3sig\xc4\x40") + 16] ^= 0x01
        pushed, reason, kept = (bytes(raw),), "bad-signature", []
    else:
        valid = factory.project("mallory", name="Beside")
        pushed, reason, kept = (valid.raw, bytes(70_000)), "too-large", [valid.id]
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            b = await stack.enter_async_context(running(tmp_path, "b"))
            config = TransportConfig(seed=factory.key("mallory").seed, listen=(LOOPBACK,))
            evil = await stack.enter_async_context(open_transport(config))
            await evil.connect(addr(b))
            stream = await evil.open_stream(b.peer_id, sync.PROTOCOL_ID)
            await stream.write(sync.encode_frame(sync.Hello(follow_all=True, scopes=("meta",))))
            reader = sync.FrameReader()

            async def frame() -> sync.Frame:
                while (f := reader.next_frame()) is None:
                    reader.feed(await stream.read(65536))
                return f

            assert isinstance(await frame(), sync.Hello)
            await stream.write(sync.encode_frame(sync.Push(records=pushed)))
            reply = await frame()
            assert isinstance(reply, sync.ErrorFrame)
            assert reply.code == "invalid-record"
            assert reason in reply.message
            await wait_until(lambda: not b.transport.connected_peers())
            assert evil.peer_id in b.transport.banned_peers()
            assert b.store.count() == len(kept)
            assert all(b.store.has(i) for i in kept)
            # B keeps serving honest peers.
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(b)]))
            project = await c.author("project", {"name": "Honest"})
            await wait_until(lambda: b.store.has(project.id))


async def test_sync_skips_records_from_the_future_without_blaming_the_peer(
    tmp_path: Path,
) -> None:
    """A peer whose clock runs ahead holds a record we must refuse *now*: we skip it, keep
    the rest, and stay friends; once our clock catches up it would be accepted."""
    factory = RecordFactory(now_ms=_now_ms())
    project = factory.project("alice", name="Clocks")
    early = factory.contribution("alice", project, title="on time")
    ahead = factory.contribution("alice", project, title="ahead", ts=_now_ms() + 3_600_000)
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            # A's own clock was ahead when it accepted the record: store it directly.
            a.store.add([project, early, ahead], published=True)
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            await wait_until(lambda: b.store.has(early.id))
            result = await b.sync_now()
            assert result["peers"] == 1
            assert not b.store.has(ahead.id)
            assert b.transport.banned_peers() == []
            assert [p.peer_id for p in b.transport.connected_peers()] == [a.peer_id]


def _now_ms() -> int:
    return int(time.time() * 1000)


async def test_liveness_pings_reuse_one_stream_per_connection(tmp_path: Path) -> None:
    # Rounds of 0.5 s, as in test_liveness.py: shorter ones made a loaded machine miss pings
    # while the connection was still being set up.
    fast = ServiceConfig(liveness_interval=0.5)
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a", tuning=fast))
            b = await stack.enter_async_context(
                running(tmp_path, "b", bootstrap=[addr(a)], tuning=fast)
            )
            await wait_until(lambda: a.metrics.get("commons_pings_total", outcome="ok") >= 6)
            await wait_until(lambda: b.metrics.get("commons_pings_total", outcome="ok") >= 6)
            for node in (a, b):
                assert node.metrics.get("commons_pings_total", outcome="missed") == 0
                assert node.metrics.get("commons_ping_streams_opened_total") == 1
            # A ping stream the peer closed is replaced at once, and that is not a miss.
            (stream,) = b.liveness.ping_streams()
            await stream.reset()
            ok = b.metrics.get("commons_pings_total", outcome="ok")
            await wait_until(lambda: b.metrics.get("commons_pings_total", outcome="ok") > ok + 2)
            assert b.metrics.get("commons_pings_total", outcome="missed") == 0
            assert b.metrics.get("commons_ping_streams_opened_total") == 2
            # A new connection gets a new stream; the old one is let go.
            await b.transport.disconnect(a.peer_id)
            await wait_until(lambda: b.metrics.get("commons_ping_streams_opened_total") >= 3)
            assert len(b.liveness.ping_streams()) <= 1


async def test_neg_answers_for_many_scopes_fit_one_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty node reconciling several big scopes at once: the responder shares the frame
    between its replies, so no answer outgrows a frame (here shrunk to 16 KiB, so that a few
    hundred records a scope are big), and everything arrives."""
    budget = 16 * 1024
    monkeypatch.setattr(syncer, "NEG_FRAME_BUDGET", budget)
    monkeypatch.setattr(syncer, "NEG_FRAME_LIMIT", budget - syncer.NEG_ITEM_OVERHEAD)
    monkeypatch.setattr(syncer, "NEG_MAX_SCOPES", budget // (4096 + syncer.NEG_ITEM_OVERHEAD))
    sizes: list[tuple[str, int]] = []
    real_encode = syncer.encode_frame

    def encode(frame: sync.Frame) -> bytes:
        data = real_encode(frame)
        sizes.append((type(frame).__name__, len(data)))
        return data

    monkeypatch.setattr(syncer, "encode_frame", encode)
    factory = RecordFactory(now_ms=_now_ms())
    records = []
    for n in range(5):
        project = factory.project("alice", name=f"P{n}")
        records += [project, *factory.many_contributions("bob", project, 700)]
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            a.store.add(records, published=True)
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            await wait_until(lambda: b.store.count() == len(records), 40)
    negs = [size for name, size in sizes if name == "Neg"]
    assert max(negs) <= budget + 64
    assert max(negs) > budget // 2  # the replies did need sharing


async def test_own_publishes_are_not_validated_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libp2p runs the validator on local publishes too; a record the node publishes from its
    store was validated when it was stored, so only the receiving node validates it."""
    calls: list[str] = []
    real = gossip.validate_message

    def counting(topic: str, data: bytes, *, now_ms: int) -> Record:
        calls.append(topic)
        return real(topic, data, now_ms=now_ms)

    monkeypatch.setattr(gossip, "validate_message", counting)
    with trio.fail_after(30):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            await wait_until(lambda: a.transport.mesh_peers(META_TOPIC) != [])
            before = len(calls)
            project = await a.author("project", {"name": "Once"})
            await wait_until(lambda: b.store.has(project.id))
            assert len(calls) - before == 1  # at b only
            # A message from elsewhere carrying the same bytes is still validated.
            assert a.gossip.validate(META_TOPIC, project.raw, b.peer_id)
            assert len(calls) - before == 2


async def test_gossip_refused_for_good_is_refused_again_without_a_second_look(
    tmp_path: Path,
) -> None:
    """GossipSub does not mark refused messages seen, so a peer's IHAVE brings them back: the
    same bytes on the same topic are refused at once and counted apart. A valid record first
    sent on a wrong topic is still accepted on its own; a record from the future is judged
    again each time (the clock may catch up)."""
    factory = RecordFactory(now_ms=_now_ms())
    project = factory.project("alice", name="Refusals")
    forged = bytearray(factory.project("mallory", name="Forged").raw)
    forged[forged.find(b"\xa3sig\xc4\x40") + 16] ^= 0x01
    ahead = factory.project("alice", name="Later", ts=_now_ms() + 3_600_000)
    topic = project_topic(project.id)
    async with running(tmp_path, "b") as b:
        peer = "12D3KooWPeerThatAsksAgain"
        assert not b.gossip.validate(META_TOPIC, bytes(forged), peer)
        assert not b.gossip.validate(META_TOPIC, bytes(forged), peer)
        assert b.metrics.get("commons_gossip_rejected_total", reason="bad-signature") == 1
        assert b.metrics.get("commons_gossip_refused_again_total") == 1
        assert not b.gossip.validate(topic, project.raw, peer)  # a project is a meta record
        assert b.gossip.validate(META_TOPIC, project.raw, peer)
        for _ in range(2):
            assert not b.gossip.validate(META_TOPIC, ahead.raw, peer)
        assert b.metrics.get("commons_gossip_rejected_total", reason="future-timestamp") == 2
        assert b.metrics.get("commons_gossip_refused_again_total") == 1
