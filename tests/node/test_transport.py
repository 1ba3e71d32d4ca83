"""Integration tests of node.transport: real libp2p hosts in one process on 127.0.0.1.

Rules: port 0 everywhere; every I/O test runs under ``trio.fail_after``; no bare sleeps, only
polling against that deadline (``wait_until``) or waiting on channels.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.net.transport import (
    Message,
    PeerEvent,
    ProtocolUnsupported,
    PublishRejected,
    Stream,
    StreamBroken,
    Transport,
    TransportConfig,
    TransportError,
    open_transport,
)

TOPIC = "commons/test"
ECHO = "/commons/test-echo/1"
BOOM = "/commons/test-boom/1"
PING = "/ipfs/ping/1.0.0"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58btc(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def libp2p_peer_id(seed: bytes) -> str:
    """By hand: base58btc(identity multihash(protobuf PublicKey{Ed25519, key}))."""
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    protobuf_key = b"\x08\x01\x12\x20" + pub
    return base58btc(b"\x00" + bytes([len(protobuf_key)]) + protobuf_key)


def config(i: int, **overrides: Any) -> TransportConfig:
    seed = hashlib.sha256(b"transport-test-%d" % i).digest()
    return TransportConfig(**{"seed": seed, "listen": ("/ip4/127.0.0.1/tcp/0",), **overrides})


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll under the caller's fail_after deadline."""
    while not predicate():  # noqa: ASYNC110 (libp2p state has no events to wait on)
        await trio.sleep(0.01)


@asynccontextmanager
async def running(*configs: TransportConfig) -> AsyncIterator[list[Transport]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_transport(c)) for c in configs]


@asynccontextmanager
async def line(
    validator_b: Callable[[str, bytes, str], bool | None] | None = None, **b_overrides: Any
) -> AsyncIterator[tuple[Transport, Transport, Transport]]:
    """A - B - C, all subscribed to TOPIC, with the meshes formed."""
    async with running(config(1), config(2, **b_overrides), config(3)) as (a, b, c):
        if validator_b is not None:
            b.set_validator(validator_b)
        await a.connect(b.listen_addrs()[0])
        await b.connect(c.listen_addrs()[0])
        for t in (a, b, c):
            await t.subscribe(TOPIC)
        await wait_until(
            lambda: (
                a.mesh_peers(TOPIC) == [b.peer_id]
                and sorted(b.mesh_peers(TOPIC)) == sorted([a.peer_id, c.peer_id])
                and c.mesh_peers(TOPIC) == [b.peer_id]
            )
        )
        yield a, b, c


async def next_message(t: Transport) -> Message:
    return await t.messages.receive()


def test_config_checks_its_values() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TransportConfig(seed=b"short")
    with pytest.raises(ValueError, match="gossip_degree"):
        TransportConfig(seed=bytes(32), gossip_degree=2, gossip_degree_low=3)


async def test_connect_peer_id_and_connected_peers() -> None:
    with trio.fail_after(10):
        async with running(config(1), config(2)) as (a, b):
            assert a.peer_id == libp2p_peer_id(config(1).seed)
            assert a.peer_id.startswith("12D3KooW")
            addr = b.listen_addrs()[0]
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert addr.endswith(f"/p2p/{b.peer_id}")
            assert not addr.startswith("/ip4/127.0.0.1/tcp/0/")

            started = time.perf_counter()
            assert await a.connect(addr) == b.peer_id
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(f"connect took {elapsed_ms:.1f} ms")  # well under the 250 ms libp2p default

            await wait_until(lambda: [p.peer_id for p in b.connected_peers()] == [a.peer_id])
            assert [p.peer_id for p in a.connected_peers()] == [b.peer_id]
            # The peerstore learns B's listen address from the dial (and identify).
            assert addr in a.connected_peers()[0].addrs
            # Connecting again is a no-op.
            assert await a.connect(addr) == b.peer_id
            assert a.stats.connects == 2


async def _propose(stream: trio.SocketStream, protocol: str) -> str:
    """One multistream-select round: propose ``protocol``, return the listener's answer."""

    async def read_message() -> str:
        data = b""
        while len(data) < 1 or len(data) < 1 + data[0]:  # lengths here are < 128: one byte
            chunk = await stream.receive_some(1)
            assert chunk, "the listener closed the connection"
            data += chunk
        return data[1:].decode().rstrip("\n")

    line = f"{protocol}\n".encode()
    await stream.send_all(bytes([len(line)]) + line)
    return await read_message()


async def test_only_noise_is_offered_to_dialers() -> None:
    # Speak multistream-select by hand, as a dialer choosing a security protocol would.
    with trio.fail_after(10):
        async with running(config(1)) as (a,):
            port = int(a.listen_addrs()[0].split("/")[4])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                assert await _propose(stream, "/multistream/1.0.0") == "/multistream/1.0.0"
                for insecure in ("/plaintext/2.0.0", "/plaintext/1.0.0", "/tls/1.0.0"):
                    assert await _propose(stream, insecure) == "na"
                assert await _propose(stream, "/secio/1.0.0") == "na"
                assert await _propose(stream, "/noise") == "/noise"


async def test_connect_failures_raise_transport_error() -> None:
    with trio.fail_after(10):
        async with running(config(1), config(2)) as (a, b):
            port_free = b.listen_addrs()[0].split("/")[4]
            with pytest.raises(TransportError, match="/p2p/"):
                await a.connect(f"/ip4/127.0.0.1/tcp/{port_free}")
            with pytest.raises(TransportError, match="ourselves"):
                await a.connect(a.listen_addrs()[0])
        # B has stopped: its port now refuses connections.
        async with running(config(1)) as (a,):
            with pytest.raises(TransportError, match="could not connect"):
                await a.connect(f"/ip4/127.0.0.1/tcp/{port_free}/p2p/{b.peer_id}")
            assert a.stats.dial_failures == 1
            assert a.connected_peers() == []


async def test_a_port_in_use_is_refused_and_free_again_after_exit() -> None:
    with trio.fail_after(10):
        async with running(config(1)) as (a,):
            port = a.listen_addrs()[0].split("/")[4]
            fixed = config(2, listen=(f"/ip4/127.0.0.1/tcp/{port}",))
            # libp2p listens with SO_REUSEPORT: without our check, this would start and
            # share the port (and the inbound connections) with A.
            with pytest.raises(TransportError, match="in use"):
                async with running(fixed):
                    pass
        async with running(fixed) as (b,):
            assert b.listen_addrs()[0].split("/")[4] == port


async def test_gossip_crosses_a_line_and_dedups_by_content() -> None:
    with trio.fail_after(15):
        async with line() as (a, b, c):
            await a.publish(TOPIC, b"hello")
            got = await next_message(c)
            assert got == Message(TOPIC, b"hello", from_peer=b.peer_id, origin=a.peer_id)
            assert (await next_message(b)).from_peer == a.peer_id

            await a.publish(TOPIC, b"hello")  # the same id (its hash): not sent again
            await a.publish(TOPIC, b"after")
            assert (await next_message(c)).data == b"after"
            assert a.stats.messages_published == 2
            # Our own publishes are not echoed to us.
            assert a.stats.messages_delivered == 0


async def test_validator_rejects_are_not_delivered_or_forwarded() -> None:
    seen: list[tuple[str, bytes, str]] = []

    def validator_b(topic: str, data: bytes, from_peer: str) -> bool:
        seen.append((topic, data, from_peer))
        if b"raise" in data:
            raise KeyError("a bug in the validator")
        return b"forged" not in data

    with trio.fail_after(15):
        async with line(validator_b) as (a, b, c):
            await a.publish(TOPIC, b"forged record")
            await a.publish(TOPIC, b"please raise")
            await a.publish(TOPIC, b"good record")
            assert (await next_message(c)).data == b"good record"
            assert (await next_message(b)).data == b"good record"
            assert b.stats.messages_rejected == 2
            assert b.stats.validator_errors == 1
            assert c.stats.messages_rejected == 0  # C never saw the bad ones
            # GossipSub does not keep the order of messages sent together.
            assert (TOPIC, b"forged record", a.peer_id) in seen

            # Our own validator runs on our publishes too: a reject raises, nobody receives.
            with pytest.raises(PublishRejected):
                await b.publish(TOPIC, b"forged by B")
            await b.publish(TOPIC, b"good from B")
            assert (await next_message(c)).data == b"good from B"
            assert (await next_message(a)).data == b"good from B"


async def test_a_raising_validator_on_the_publisher_does_not_kill_it() -> None:
    def broken(topic: str, data: bytes, from_peer: str) -> bool:
        raise RuntimeError("boom")

    with trio.fail_after(15):
        async with line() as (a, _b, c):
            a.set_validator(broken)
            with pytest.raises(PublishRejected):
                await a.publish(TOPIC, b"x")
            a.set_validator(lambda topic, data, from_peer: True)
            await a.publish(TOPIC, b"y")
            assert (await next_message(c)).data == b"y"


async def test_burst_of_200_is_delivered_whole() -> None:
    count = 200
    with trio.fail_after(20):
        async with line() as (a, _b, c):
            started = time.perf_counter()
            sent = [b"burst %03d " % i + bytes(200) for i in range(count)]
            for data in sent:
                await a.publish(TOPIC, data)
            received = {(await next_message(c)).data for _ in range(count)}
            elapsed = time.perf_counter() - started
            print(f"{count} messages A->B->C in {elapsed:.2f} s, stats of A: {a.stats}")
            assert received == set(sent)
            assert c.stats.messages_dropped == 0


async def test_stream_round_trip_and_failing_handler() -> None:
    async def echo(stream: Stream) -> None:
        size = int.from_bytes(await stream.read_exactly(4), "big")
        await stream.write(await stream.read_exactly(size))

    async def boom(stream: Stream) -> None:
        await stream.read_exactly(1)
        raise ValueError("handler bug")

    async def round_trip(a: Transport, peer: str, payload: bytes) -> bytes:
        stream = await a.open_stream(peer, ECHO)
        assert stream.peer_id == peer
        await stream.write(len(payload).to_bytes(4, "big") + payload)
        answer = await stream.read_exactly(len(payload))
        assert await stream.read() == b""  # the handler returned: the adapter closed it
        await stream.close()
        return answer

    with trio.fail_after(15):
        async with running(config(1), config(2)) as (a, b):
            b.set_stream_handler(ECHO, echo)
            b.set_stream_handler(BOOM, boom)
            await a.connect(b.listen_addrs()[0])
            payload = bytes(range(256)) * 1000
            assert await round_trip(a, b.peer_id, payload) == payload

            stream = await a.open_stream(b.peer_id, BOOM)
            await stream.write(b"x")
            with pytest.raises(StreamBroken):
                await stream.read_exactly(1)  # reset by the adapter after the handler raised
            await wait_until(lambda: b.stats.handler_errors == 1)

            assert await round_trip(a, b.peer_id, b"still alive") == b"still alive"
            with pytest.raises(ProtocolUnsupported, match="does not serve /commons/unknown/1"):
                await a.open_stream(b.peer_id, "/commons/unknown/1")
            assert await round_trip(a, b.peer_id, b"and again") == b"and again"
            with pytest.raises(TransportError, match="not connected"):
                await a.open_stream(libp2p_peer_id(bytes(32)), ECHO)


async def test_what_a_peer_serves_and_a_probe_without_ping() -> None:
    """Identify tells which protocols a peer serves; a peer that stopped serving ping refuses
    it (an answer, not a failure); a Yamux probe is answered whatever the peer serves."""
    with trio.fail_after(15):
        async with running(config(1), config(2)) as (a, b):
            b.remove_stream_handler(PING)
            b.set_stream_handler(ECHO, lambda stream: stream.close())
            assert not await a.probe(b.peer_id)  # not connected
            assert a.offers(b.peer_id, PING) is None  # nothing heard from it yet
            await a.connect(b.listen_addrs()[0])
            await wait_until(lambda: a.offers(b.peer_id, ECHO) is not None)
            assert a.offers(b.peer_id, ECHO) is True
            assert a.offers(b.peer_id, PING) is False
            await wait_until(lambda: b.offers(a.peer_id, PING) is not None)
            assert b.offers(a.peer_id, PING) is True
            with pytest.raises(ProtocolUnsupported, match=f"does not serve {PING}"):
                await a.open_stream(b.peer_id, PING)
            for _ in range(20):
                assert await a.probe(b.peer_id)
                assert await b.probe(a.peer_id)
            # Probes interleave with traffic on the same connection.
            await a.subscribe(TOPIC)
            await b.subscribe(TOPIC)
            await wait_until(lambda: a.mesh_peers(TOPIC) == [b.peer_id])
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(a.publish, TOPIC, b"probe %d" % i)
                    nursery.start_soon(a.probe, b.peer_id)
            received = {(await next_message(b)).data for _ in range(50)}
            assert received == {b"probe %d" % i for i in range(50)}


async def test_peer_events_on_connect_and_disconnect() -> None:
    with trio.fail_after(10):
        async with running(config(1), config(2)) as (a, b):
            await a.connect(b.listen_addrs()[0])
            assert await a.peer_events.receive() == PeerEvent("connected", b.peer_id)
            assert await b.peer_events.receive() == PeerEvent("connected", a.peer_id)
            await a.disconnect(b.peer_id)
            assert await a.peer_events.receive() == PeerEvent("disconnected", b.peer_id)
            assert await b.peer_events.receive() == PeerEvent("disconnected", a.peer_id)
            assert a.connected_peers() == []


async def test_rejects_are_reported_and_a_ban_is_carried_out() -> None:
    """The transport reports each rejected message with its forwarder (whom to ban is the
    node's decision) and executes the ban it is given; an ignored message is dropped
    without a report."""

    def refuse_forged(topic: str, data: bytes, from_peer: str) -> bool | None:
        return None if data.startswith(b"ignored") else not data.startswith(b"forged")

    rejected: list[str] = []
    with trio.fail_after(15):
        async with line(refuse_forged) as (a, b, c):

            def on_reject(peer: str) -> None:
                rejected.append(peer)
                if len(rejected) == 3:
                    b.ban(peer, 600.0)

            b.set_reject_listener(on_reject)
            await a.publish(TOPIC, b"ignored")
            for i in range(3):
                await a.publish(TOPIC, b"forged %d" % i)
            await wait_until(lambda: b.banned_peers() == [a.peer_id])
            assert rejected == [a.peer_id] * 3
            assert b.stats.messages_rejected == 4
            await wait_until(lambda: a.peer_id not in {p.peer_id for p in b.connected_peers()})
            assert b.stats.bans == 1
            with pytest.raises(TransportError, match="banned"):
                await b.connect(a.listen_addrs()[0])
            # A dials back in: B closes the connection at once.
            await a.connect(b.listen_addrs()[0])
            await wait_until(lambda: b.peer_id not in {p.peer_id for p in a.connected_peers()})
            # C, which never forwarded anything bad, is unaffected.
            await b.publish(TOPIC, b"still gossiping")
            assert (await next_message(c)).data == b"still gossiping"


async def test_a_refusal_without_blame_is_not_reported() -> None:
    # None refuses a message without counting it against its forwarder (a copy of one
    # already refused, or one over the rate limit): the reject listener, which decides
    # bans, never hears of it; a refusal on the merits (False) is reported.
    judged: list[tuple[bytes, str]] = []
    reported: list[str] = []

    def judge(topic: str, data: bytes, from_peer: str) -> bool | None:
        judged.append((data, from_peer))
        if data.startswith(b"copy"):
            return None
        return not data.startswith(b"bad")

    with trio.fail_after(15):
        async with line(judge) as (a, b, _c):
            b.set_reject_listener(reported.append)
            for i in range(10):
                await a.publish(TOPIC, b"copy %d" % i)
            await a.publish(TOPIC, b"after the copies")
            assert (await next_message(b)).data == b"after the copies"
            # B judged (and refused) every copy forwarded by A, and reported none of them.
            await wait_until(
                lambda: sum(1 for d, f in judged if d.startswith(b"copy") and f == a.peer_id) >= 10
            )
            assert reported == []
            await a.publish(TOPIC, b"bad one")
            await wait_until(lambda: reported == [a.peer_id])
            assert b.stats.messages_rejected == 11
            assert a.peer_id in {p.peer_id for p in b.connected_peers()}


async def test_clean_shutdown_while_connected() -> None:
    # Unclosed sockets would surface as ResourceWarnings, which pytest turns into errors.
    with trio.fail_after(10):
        async with line() as (a, b, c):
            await a.publish(TOPIC, b"in flight")
            started = time.perf_counter()
        elapsed = time.perf_counter() - started
    print(f"three connected transports stopped in {elapsed:.2f} s")
    assert elapsed < 3
    for t in (a, b, c):
        assert t.connected_peers() == []
        leftover = [m async for m in t.messages]  # ends: the channel was closed
        assert len(leftover) <= 1


async def test_errors_in_the_block_leave_unwrapped() -> None:
    async def fail_inside() -> None:
        async with running(config(1), config(2)) as (a, b):
            await a.connect(b.listen_addrs()[0])
            raise KeyError("mine")

    with trio.fail_after(10), pytest.raises(KeyError, match="mine"):
        await fail_inside()


async def test_a_libp2p_failure_leaves_as_transport_error() -> None:
    async def crash() -> None:
        raise RuntimeError("a bug inside libp2p")

    async def run_until_libp2p_fails() -> None:
        async with running(config(1)) as (a,):
            a._pubsub.manager.run_task(crash)  # as if a libp2p task had failed
            await trio.sleep_forever()  # cancelled by the failure

    with trio.fail_after(10), pytest.raises(TransportError, match="a bug inside libp2p"):
        await run_until_libp2p_fails()


async def test_mdns_reports_peers_without_dialing() -> None:
    mdns = {"mdns": True, "mdns_interfaces": ("127.0.0.1",)}
    with trio.fail_after(15):
        async with running(config(1, **mdns), config(2, **mdns)) as (a, b):
            found = await a.discovered.receive()
            assert found.peer_id == b.peer_id
            assert any(addr.startswith("/ip4/127.0.0.1/tcp/") for addr in found.addrs)
            assert a.connected_peers() == []
            assert await a.connect(found.addrs[0]) == b.peer_id


async def test_idontwant_only_for_big_messages_and_sender_records_verified_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two of py-libp2p's per-message costs, cut (node/net/_compat/): IDONTWANT goes out
    only for messages of IDONTWANT_MIN_BYTES or more, as go-libp2p-pubsub does; a peer's
    signed peer record, attached to every RPC, is verified once, not per RPC. Gossip still
    arrives, and a record that fails verification is still refused."""
    from node.net import _compat as compat
    from node.net._compat import sender_record

    verified: list[bytes] = []
    real_consume = sender_record.maybe_consume_signed_record

    def counting(msg: Any, host: Any, peer_id: Any) -> bool:
        verified.append(msg.senderRecord)
        return real_consume(msg, host, peer_id)

    monkeypatch.setattr(sender_record, "maybe_consume_signed_record", counting)
    sender_record._trusted_records.clear()
    with trio.fail_after(20):
        async with line() as (a, b, c):
            sent_idontwant: list[int] = []
            router = b._pubsub.router
            real_emit = router.emit_idontwant

            async def emit(msg_ids: Any, peer: Any) -> None:
                sent_idontwant.append(len(msg_ids))
                await real_emit(msg_ids, peer)

            monkeypatch.setattr(router, "emit_idontwant", emit)
            before = len(verified)
            for i in range(20):
                await a.publish(TOPIC, b"small %d" % i)
                assert (await next_message(c)).data == b"small %d" % i
            assert sent_idontwant == []
            # Twenty RPCs A -> B and B -> C, but each sender's record is verified at most once.
            assert len(verified) - before <= 2
            big = b"x" * compat.IDONTWANT_MIN_BYTES
            await a.publish(TOPIC, big)
            assert (await next_message(c)).data == big
            await wait_until(lambda: sent_idontwant != [])

    # A record that does not verify is refused every time, never remembered.
    from libp2p.peer.id import ID
    from libp2p.pubsub.pb import rpc_pb2

    bad = rpc_pb2.RPC(senderRecord=b"\x0a\x03not an envelope")
    peer = ID.from_base58(libp2p_peer_id(config(9).seed))
    host = type("Host", (), {"get_peerstore": lambda self: None})()
    assert not sender_record._consume_sender_record(bad, host, peer)
    assert not sender_record._consume_sender_record(bad, host, peer)
    assert (peer, bad.senderRecord) not in sender_record._trusted_records
    assert sender_record._consume_sender_record(rpc_pb2.RPC(), host, peer)  # none attached: fine
