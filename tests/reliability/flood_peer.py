"""A misbehaving libp2p peer, as a separate process (so it cannot slow the test that measures).

    python tests/reliability/flood_peer.py MODE --target MADDR [--target MADDR]...
        --seconds N --report FILE [--bundle FILE] [--project HEX]

MODE:
  invalid  one identity publishes invalid records as fast as it can (random garbage on the
           meta topic, and well-formed contributions with a bad signature on the project's
           topic, each unique); when it has no peer left it redials its targets every 0.2 s.
  sybil    like invalid, but a fresh identity for every connection (full runs only).
  replay   one identity publishes the valid old records of --bundle as fast as it can, over
           and over (its own seen-cache lets each through again every 120 s).

At the end it writes a JSON report: messages published, dials tried and how many connected,
the identities used, seconds spent with at least one peer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from hostile_records import ALICE, loose  # noqa: E402

from node.net.transport import Transport, TransportConfig, TransportError, open_transport  # noqa: E402
from protocol.bundle import iter_bundle  # noqa: E402
from protocol.record import decode_trusted  # noqa: E402
from protocol.validation import META_TOPIC, project_topic, topic_of  # noqa: E402

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


class Report:
    def __init__(self) -> None:
        self.published = 0
        self.dials = 0
        self.dials_ok = 0
        self.identities: list[str] = []
        self.connected_seconds = 0.0

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


def invalid_messages(project: bytes | None) -> list[tuple[str, bytes]]:
    """A batch of unique invalid messages: cheap to refuse and expensive to refuse."""
    out = [(META_TOPIC, os.urandom(120))]
    if project is not None:
        now = int(time.time() * 1000)
        value = {
            "v": 1,
            "kind": "contribution",
            "author": ALICE.public_key,
            "ts": now - 1000,
            "project": project,
            "body": {"type": "code", "title": os.urandom(8).hex()},
            "sig": os.urandom(64),
        }
        out.append((project_topic(project), loose(value)))
    return out


async def connect_all(transport: Transport, targets: list[str], report: Report) -> int:
    ok = 0
    for target in targets:
        report.dials += 1
        try:
            await transport.connect(target)
        except TransportError:
            continue
        ok += 1
        report.dials_ok += 1
    return ok


async def wait_subscribed(transport: Transport, topics: set[str], seconds: float = 3.0) -> None:
    """Wait (a little) until a connected peer is known to subscribe to ``topics``."""
    with trio.move_on_after(seconds):
        while not all(transport._pubsub.peer_topics.get(t) for t in topics):  # noqa: ASYNC110
            await trio.sleep(0.02)


def load_replay(bundle: str | None) -> list[tuple[str, bytes]]:
    if bundle is None:
        return []
    data = Path(bundle).read_bytes()
    # A replay bundle is written by the project's own tools: it holds no oversized record.
    raws = [raw for raw in iter_bundle([data]) if isinstance(raw, bytes)]
    return [(topic_of(decode_trusted(raw)), raw) for raw in raws]


async def flood(
    transport: Transport,
    args: argparse.Namespace,
    report: Report,
    until: float,
    replay: list[tuple[str, bytes]],
) -> str:
    """Publish until ``until`` or until no peer is left; returns why it stopped."""
    project = bytes.fromhex(args.project) if args.project else None
    await wait_subscribed(transport, {t for t, _ in replay[:50]} or {META_TOPIC})
    index = 0
    last_check = time.monotonic()
    while time.monotonic() < until:
        if args.mode == "replay":
            batch = replay[index : index + 20]
            index = (index + 20) % max(1, len(replay))
            if index < 20:
                # Our own seen-cache would keep us from sending a record twice in 120 s.
                transport._pubsub.seen_messages.cache.clear()
        else:
            batch = invalid_messages(project)
        for topic, data in batch:
            try:
                await transport.publish(topic, data)
            except (TransportError, ValueError):
                continue
            report.published += 1
        now = time.monotonic()
        if now - last_check > 0.1:
            report.connected_seconds += now - last_check
            last_check = now
            if not transport.connected_peers():
                return "disconnected"
    return "time"


async def main(args: argparse.Namespace) -> Report:
    report = Report()
    replay = load_replay(args.bundle) if args.mode == "replay" else []
    until = time.monotonic() + args.seconds
    seed = os.urandom(32)
    while time.monotonic() < until:
        if args.mode == "sybil":
            seed = os.urandom(32)
        config = TransportConfig(seed=seed, listen=(LOOPBACK,))
        async with open_transport(config) as transport:
            if transport.peer_id not in report.identities:
                report.identities.append(transport.peer_id)
            while time.monotonic() < until:
                if not await connect_all(transport, args.target, report):
                    await trio.sleep(0.2)
                    continue
                why = await flood(transport, args, report, until, replay)
                if why == "disconnected" and args.mode == "sybil":
                    break  # a new identity
    return report


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["invalid", "sybil", "replay"])
    parser.add_argument("--target", action="append", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--bundle")
    parser.add_argument("--project")
    args = parser.parse_args()
    report = trio.run(main, args)
    args.report.write_text(json.dumps(report.as_dict()) + "\n")


if __name__ == "__main__":
    cli()
