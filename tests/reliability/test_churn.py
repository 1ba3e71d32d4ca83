"""Churn (guarantee 6 of RELIABILITY.md): nodes come and go, no record is lost.

Five ``commons node run`` processes (ten in the full run), each on its own fixed port as real
nodes are. For 10 s (two minutes in the full run), every 2 s (3 s) a random running node stops
(SIGTERM, or SIGKILL one time in four) and a stopped one starts again, bootstrapped to a random
running node, while records are authored on random running nodes four times a second. At the
end every node is started once more, and every one of them must hold every record that was
acknowledged anywhere (the same digest of sorted ids everywhere).

The restarted node waits to be connected before the next change, so the churn tests the loss
of records rather than how fast the overlay heals. The second test pins down the bug this one
first found: py-libp2p refused for 60 s to redial a peer whose dial had failed, so nodes that
restarted together stayed apart for a minute or more.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
import trio
from procs import digest, store_ids
from reliability_harness import FULL, running
from system_harness import NodeProcess, Nodes, wait_until

from node.home import Home
from node.net.transport import TransportError

NODES = 10 if FULL else 5
DURATION = 120.0 if FULL else 10.0
CHANGE_EVERY = 3.0 if FULL else 2.0
AUTHOR_EVERY = 0.25
SETTLE = 150.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Ports:
    """Each home keeps one TCP port across restarts, as a real node does (its config's
    ``listen``): the addresses its peers remember stay valid when it comes back."""

    def __init__(self, homes: list[NodeProcess]) -> None:
        self.port = {n.name: _free_port() for n in homes}

    def extra(self, node: NodeProcess) -> tuple[str, ...]:
        return ("--listen", f"/ip4/127.0.0.1/tcp/{self.port[node.name]}")

    def addr(self, node: NodeProcess) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port[node.name]}/p2p/{node.peer_id}"

    def start(self, node: NodeProcess, *bootstrap: NodeProcess) -> None:
        node.start(*(self.addr(b) for b in bootstrap), extra=self.extra(node))


def _stop(node: NodeProcess, rng: random.Random) -> None:
    if rng.random() < 0.25:
        assert node.proc is not None
        node.unclean_ok = True
        os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(10)
        node._close_http()
    else:
        node.stop()


def test_every_record_survives_churn(nodes: Nodes) -> None:
    rng = random.Random(os.environ.get("COMMONS_RELIABILITY_SEED", "churn"))
    homes = [nodes.home(f"n{i}") for i in range(NODES)]
    ports = Ports(homes)
    first = homes[0]
    ports.start(first)
    for node in homes[1:-1]:
        ports.start(node, first, rng.choice([n for n in homes if n.running]))
    project = first.post("/api/v1/projects", {"name": "Churning"})["id"]
    acked: set[bytes] = {bytes.fromhex(project)}
    changes = 0
    next_change = time.monotonic() + CHANGE_EVERY
    deadline = time.monotonic() + DURATION
    while time.monotonic() < deadline:
        live = [n for n in homes if n.running]
        author = rng.choice(live)
        body = {"type": "code", "title": f"by {author.name} under churn"}
        try:
            record = author.post(f"/api/v1/projects/{project}/contributions", body)
        except Exception:  # the project may not have reached a freshly started node yet
            pass
        else:
            acked.add(bytes.fromhex(record["id"]))
        if time.monotonic() >= next_change:
            next_change += CHANGE_EVERY
            changes += 1
            _stop(rng.choice(live), rng)
            stopped = [n for n in homes if not n.running]
            back = rng.choice(stopped)
            ports.start(back, rng.choice([n for n in homes if n.running]))
            # It rejoins through its bootstrap peer, which is up.
            wait_until(back.peer_ids, timeout=15, what=f"{back.name} to rejoin")
        time.sleep(AUTHOR_EVERY)

    # Everyone back; every acknowledged record everywhere.
    churned = time.monotonic()
    for node in homes:
        if not node.running:
            ports.start(node, rng.choice([n for n in homes if n.running]))
    try:
        wait_until(
            lambda: all(acked <= store_ids(n.home) for n in homes),
            timeout=SETTLE,
            interval=0.5,
            what="every node to hold every acknowledged record",
        )
    except AssertionError:
        for node in homes:
            peers = sorted(p[-4:] for p in node.peer_ids())
            print(node.name, node.peer_id[-4:], "lacks", len(acked - store_ids(node.home)), peers)
        raise
    settled = time.monotonic() - churned
    digests = {digest(store_ids(n.home)) for n in homes}
    assert len(digests) == 1
    print(
        f"churn: {NODES} nodes, {changes} stop/starts, {len(acked)} records; all held by all "
        f"{settled:.1f} s after the churn ended"
    )


def test_a_peer_that_came_back_can_be_dialled_at_once(tmp_path: Path) -> None:
    # Run outside pytest-trio, whose nursery would wrap the error in an ExceptionGroup.
    trio.run(_dial_a_peer_that_came_back, tmp_path)


async def _dial_a_peer_that_came_back(tmp_path: Path) -> None:
    port = _free_port()
    home = Home(tmp_path / "b")
    home.init()
    b_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{home.signing_key().peer_id}"
    refused: TransportError | None = None
    with trio.fail_after(30):
        async with running(tmp_path, "a") as a:
            with pytest.raises(TransportError):
                await a.transport.connect(b_addr)  # b is not there yet
            async with running(tmp_path, "b", listen=[f"/ip4/127.0.0.1/tcp/{port}"]) as b:
                try:
                    assert await a.transport.connect(b_addr) == b.peer_id
                except TransportError as exc:
                    refused = exc
    if refused is not None:
        raise refused
