"""Dial a running node repeatedly with the node's own transport; print timings as JSON.

    connect_probe.py --seed-name NAME --addr MADDR --count K --out FILE

For each dial: ``connect`` (TCP, Noise, Yamux: ``node.net.transport.Transport.connect``, the call
the node makes), then the first use of the connection (open ``/commons/sync/1``, exchange
``hello``, say ``bye``), then disconnect. Also K bare TCP connects to the same port from this
process, the limit the dial is compared with.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.net.transport import TransportConfig, open_transport
from protocol.sync import Bye, FrameReader, Hello, encode_frame
from protocol.testing import seed


def bare_tcp(args: argparse.Namespace) -> list[float]:
    host, port = args.addr.split("/")[2], int(args.addr.split("/")[4])
    out = []
    for _ in range(args.count):
        started = time.perf_counter()
        with socket.create_connection((host, port), timeout=5):
            out.append(1000 * (time.perf_counter() - started))
        time.sleep(0.02)
    return out


async def main(args: argparse.Namespace) -> dict[str, list[float]]:
    config = TransportConfig(
        seed=seed(f"bench-node:{args.seed_name}"), listen=("/ip4/127.0.0.1/tcp/0",)
    )
    out: dict[str, list[float]] = {"connect_ms": [], "usable_ms": []}
    async with open_transport(config) as transport:
        for _ in range(args.count):
            started = time.perf_counter()
            peer = await transport.connect(args.addr)
            connected = time.perf_counter()
            stream = await transport.open_stream(peer, "/commons/sync/1")
            await stream.write(encode_frame(Hello(follow_all=True, scopes=("meta",))))
            reader = FrameReader()
            frame = None
            while frame is None:
                reader.feed(await stream.read(65536))
                frame = reader.next_frame()
            usable = time.perf_counter()
            await stream.write(encode_frame(Bye()))
            await stream.close()
            out["connect_ms"].append(1000 * (connected - started))
            out["usable_ms"].append(1000 * (usable - started))
            await transport.disconnect(peer)
            await trio.sleep(0.2)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--seed-name", required=True)
    p.add_argument("--addr", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--out", required=True)
    arguments = p.parse_args()
    result = trio.run(main, arguments)
    result["tcp_ms"] = bare_tcp(arguments)
    Path(arguments.out).write_text(json.dumps(result))
