"""A bare py-libp2p GossipSub node, the limit the node's gossip figures are compared with.

One process per node, configured like the Commons node's transport (Noise only, Yamux only,
one connection per peer, no AutoConnector, GossipSub 1.2/1.1 with D=6/4/12, 1 s heartbeat,
spam and eclipse protection off, strict signing, content-addressed message ids) but with no
node code: no records, no validation, no store. A sync validator notes when each message first
arrives (before forwarding, like the node's), so libp2p's 32-slot subscription buffer cannot
hide arrivals.

    bare_gossip.py --name N --port P --peer MADDR ... --topic T --dir DIR
                   [--schedule FILE] [--rate R --duration S]

Writes DIR/N.ready once listening and connected to every --peer; waits for DIR/go (a start
time, seconds since the epoch); publishes what the schedule says (a JSON list of
[offset seconds, message index]) or, with --rate, R messages a second for S seconds, then
writes DIR/N.done; on
SIGTERM writes DIR/N.json: {"received": {index: arrival ns}, "published": count}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

PAYLOAD_SIZE = 250  # about a contribution record
HEADER = struct.Struct(">QQ")  # message index, publish time (ns)


def seed_of(name: str) -> bytes:
    return hashlib.sha256(b"commons-test-key:bench-node:" + name.encode()).digest()


def peer_id_of(name: str) -> str:
    from libp2p.peer.id import ID

    private = Ed25519PrivateKey.from_bytes(seed_of(name))
    return str(ID.from_pubkey(private.get_public_key()))


async def _nothing() -> None:
    return None


def _wait_for_go(path: Path) -> float:
    """Block (in a worker thread) until the benchmark writes the start time."""
    while not path.exists():
        time.sleep(0.02)
    time.sleep(0.01)
    return float(path.read_text())


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _plan(args: argparse.Namespace) -> list[tuple[float, int]]:
    if args.schedule:
        return [(float(t), int(i)) for t, i in json.loads(Path(args.schedule).read_text())]
    if args.rate:
        return [(k / args.rate, k) for k in range(int(args.rate * args.duration))]
    return []


async def main(args: argparse.Namespace, plan: list[tuple[float, int]]) -> None:
    out_dir = Path(args.dir)
    private = Ed25519PrivateKey.from_bytes(seed_of(args.name))
    kp = KeyPair(private, private.get_public_key())
    host = new_host(
        key_pair=kp,
        sec_opt={TProtocol(NOISE): Noise(kp, noise_privkey=new_x25519().private_key)},
        muxer_opt={TProtocol(YAMUX): Yamux},
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            min_connections=0,
            low_watermark=0,
            high_watermark=64,
            max_connections=64,
        ),
    )
    host.get_network().auto_connector.maybe_connect = _nothing  # type: ignore[attr-defined]
    gossip = GossipSub(
        protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )
    pubsub = Pubsub(
        host,
        gossip,
        strict_signing=True,
        msg_id_constructor=lambda m: hashlib.sha256(m.data).digest(),
    )
    received: dict[int, int] = {}
    published = 0

    def validator(forwarder: object, msg: object) -> bool:
        now = time.time_ns()
        data = msg.data  # type: ignore[attr-defined]
        if len(data) >= HEADER.size:
            index, _ = HEADER.unpack_from(data)
            received.setdefault(index, now)
        return True

    def payload(index: int) -> bytes:
        head = HEADER.pack(index, time.time_ns())
        return head + bytes(PAYLOAD_SIZE - len(head))

    listen = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{args.port}")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with (
            host.run([listen]),
            background_trio_service(pubsub),
            background_trio_service(gossip),
        ):
            await pubsub.wait_until_ready()
            pubsub.set_topic_validator(args.topic, validator, False)
            subscription = await pubsub.subscribe(args.topic)

            async def drain(sub: object) -> None:
                async for _ in sub:  # type: ignore[attr-defined]
                    pass

            async def connect(addr: str) -> None:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
                while info.peer_id not in host.get_connected_peers():
                    try:
                        with trio.fail_after(5):
                            await host.connect(info)
                    except Exception:
                        await trio.sleep(0.5)

            async def work(nursery: trio.Nursery) -> None:
                nonlocal published
                async with trio.open_nursery() as dials:
                    for addr in args.peer:
                        dials.start_soon(connect, addr)
                (out_dir / f"{args.name}.ready").write_text("1")
                start = await trio.to_thread.run_sync(_wait_for_go, out_dir / "go")
                for offset, index in plan:
                    delay = start + offset - time.time()
                    if delay > 0:
                        await trio.sleep(delay)
                    await pubsub.publish(args.topic, payload(index))
                    published += 1
                await trio.to_thread.run_sync(_write, out_dir / f"{args.name}.done", published)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, subscription)
                nursery.start_soon(work, nursery)
                async for _ in signals:
                    break
                result = {"received": received, "published": published}
                tmp = out_dir / f"{args.name}.json.tmp"
                tmp.write_text(json.dumps(result))
                tmp.replace(out_dir / f"{args.name}.json")
                # The results are out; py-libp2p's teardown can take seconds: skip it.
                os._exit(0)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--peer", action="append", default=[])
    p.add_argument("--topic", default="/bench/1")
    p.add_argument("--dir", required=True)
    p.add_argument("--schedule")
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--duration", type=float, default=0.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        arguments = parse(sys.argv[1:])
        trio.run(main, arguments, _plan(arguments))
    except KeyboardInterrupt:
        sys.exit(0)
