"""Partition and heal (guarantee 4 of RELIABILITY.md), with real network namespaces.

Six ``commons node run`` processes, each in its own network namespace on a private bridge
(``netns_lab.py``), each bootstrapped to every node started before it. The bridge is then cut
in two halves, {0, 1, 2} and {3, 4, 5}; both halves author records for a while (5 s here, 60 s
in the full run), and each half is checked to hold its own side's new records and none of the
other's. The connections across the cut stall (a cut does not reset TCP): the nodes must notice
(unanswered pings) and drop them. Then the cut is healed: within 30 s all six stores must hold
identical record sets (the same digest of the sorted ids), every record of either side among
them. Figures printed: records per side, seconds from heal to convergence, API latency.

Needs root and ``ip``; it is skipped, saying why, where namespaces cannot be created. The
namespaces are removed even when the test fails.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from netns_lab import NetnsLab, NetnsUnavailable
from netns_node import NsNode
from procs import digest
from reliability_harness import FULL
from system_harness import wait_until

NODES = 6
SIDE_B = {3, 4, 5}
PARTITION_SECONDS = float(os.environ.get("COMMONS_PARTITION_SECONDS", 60 if FULL else 5))
HEAL_LIMIT = float(os.environ.get("COMMONS_HEAL_LIMIT", "30"))


@pytest.fixture
def lab() -> Any:
    if os.geteuid() != 0:
        pytest.skip("partition test: network namespaces need root (run as root, or in CI)")
    network = NetnsLab(NODES)
    try:
        network.up()
    except NetnsUnavailable as exc:
        network.down()
        pytest.skip(f"partition test: cannot create network namespaces here: {exc}")
    try:
        yield network
    finally:
        network.down()


def test_six_nodes_converge_after_a_partition_heals(lab: NetnsLab, tmp_path: Path) -> None:
    nodes = [NsNode(lab, i, tmp_path) for i in range(NODES)]
    try:
        for i, node in enumerate(nodes):
            node.start(bootstrap=nodes[:i])
        project = nodes[0].post("/api/v1/projects", {"name": "Partitioned"})["id"]
        wait_until(
            lambda: all(bytes.fromhex(project) in n.ids() for n in nodes),
            what="the project on every node",
        )

        lab.partition(SIDE_B)
        cut = time.monotonic()
        made: dict[int, set[bytes]] = {i: set() for i in range(NODES)}
        latencies: list[float] = []
        deadline = time.monotonic() + PARTITION_SECONDS
        turn = 0
        while time.monotonic() < deadline:
            for node in nodes:
                body = {"type": "code", "title": f"{node.name} while cut off #{turn}"}
                started = time.monotonic()
                record = node.post(f"/api/v1/projects/{project}/contributions", body)
                latencies.append(time.monotonic() - started)
                made[node.i].add(bytes.fromhex(record["id"]))
            turn += 1
            time.sleep(0.5)
        side_a = set().union(*(made[i] for i in range(NODES) if i not in SIDE_B))
        side_b = set().union(*(made[i] for i in SIDE_B))
        # The cut is real: each side holds its own records and none of the other side's.
        for node in nodes:
            other = side_a if node.i in SIDE_B else side_b
            held = node.ids()
            assert not other & held, f"{node.name} got records across the partition"
        wait_until(
            lambda: all((side_b if n.i in SIDE_B else side_a) <= n.ids() for n in nodes),
            what="each side to spread its own records",
        )

        # Dead connections across the cut are noticed and dropped (unanswered pings): a
        # stalled TCP connection would only come back after the kernel's backed-off timer.
        def all_noticed() -> bool:
            dropped = 'commons_peers_dropped_total{reason="unresponsive"}'
            return all(dropped in n.lab.call(n.i, n.metrics) for n in nodes)

        wait_until(all_noticed, timeout=30, what="every node to drop a dead connection")
        cut_for = time.monotonic() - cut

        lab.heal()
        healed = time.monotonic()
        everything = side_a | side_b

        def converged() -> bool:
            sets = [n.ids() for n in nodes]
            return everything <= sets[0] and all(s == sets[0] for s in sets)

        try:
            wait_until(converged, timeout=HEAL_LIMIT, interval=0.2, what="all six to converge")
        except AssertionError:
            for node in nodes:
                peers = sorted(p["peer_id"][-4:] for p in node.get("/api/v1/peers"))
                lacks = len(everything - node.ids())
                print(f"partition: {node.name} {node.info['peer_id'][-4:]} lacks {lacks}", peers)
            raise
        took = time.monotonic() - healed
        digests = {digest(n.ids()) for n in nodes}
        assert len(digests) == 1
        print(
            f"partition: {len(side_a)} + {len(side_b)} records authored apart in "
            f"{PARTITION_SECONDS:.0f} s; cut for {cut_for:.0f} s; all {NODES} identical "
            f"(digest {digests.pop()}) {took:.1f} s after the heal; API authoring while cut: "
            f"median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )
    finally:
        for node in nodes:
            node.stop()
