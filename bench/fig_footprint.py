"""Figure 7: an idle node holding N records with P connected peers: CPU %, RSS, disk.

The node and its P peers all start from copies of the same store (so reconciliation finds
nothing to move) with the default sync interval (30 s): the periodic sessions are part of
being idle. After every peer is connected and the first sessions have settled, the node's
CPU time (utime + stime) over the window and its RSS at the end are read from /proc, its API
front process's (and any helper's at work) added: a node is all of its processes.

The bare limit: the same star of P + 1 :mod:`bench.bare_gossip` processes (py-libp2p with
GossipSub, no node code), idle for the same window. Disk: the store's bytes (database and
WAL) per record, against the records' own canonical bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.common import (
    PROCS,
    PYTHON,
    REPO,
    cpu_seconds,
    dir_size,
    free_port,
    log,
    make_home,
    ratio,
    rss_bytes,
    start_node,
    stop_nodes,
    tree_cpu_rss,
    wait_ready,
    wait_until,
)

MB = 1 << 20


def run_node(root: Path, n: int, peers: int, window: float, settle: float) -> dict[str, Any]:
    template = data.template_store("big", n - 1)
    center = make_home(root, "idle-center", template_db=template)
    others = [make_home(root, f"idle-peer-{i}", template_db=template) for i in range(peers)]
    nodes = [center, *others]
    try:
        start_node(center)
        wait_ready([center])
        for nd in others:
            start_node(nd, bootstrap=[center.addr])
        wait_ready(others, timeout=180)
        wait_until(lambda: len(center.get("/api/v1/peers")) >= peers, 120, 0.5, what="the peers")
        time.sleep(settle)
        # The node and its API front process (and any helper at work): one node's cost.
        cpu0, t0 = tree_cpu_rss(center.pid)[0], time.monotonic()
        time.sleep(window)
        (cpu1, rss), t1 = tree_cpu_rss(center.pid), time.monotonic()
        connected = len(center.get("/api/v1/peers"))
        records = center.records()
    finally:
        stop_nodes(nodes)
    disk = dir_size(center.home, ["ledger.db", "ledger.db-wal"])
    return {
        "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss_mb": rss / MB,
        "peers": connected,
        "disk_bytes_per_record": disk / records,
    }


def rss_target_mb(records: int) -> int:
    """The idle RSS target: 100 MB up to 100,000 records (issue 4), 150 MB for a node holding
    a million (issue 16: a project of the Linux kernel's history)."""
    return 100 if records <= 100_000 else 150


def run_bare(root: Path, peers: int, window: float, settle: float) -> dict[str, Any]:
    from bench.bare_gossip import peer_id_of

    out = root / "idle-bare"
    out.mkdir()
    names = ["ibare-center"] + [f"ibare-{i}" for i in range(peers)]
    port = free_port()
    center = f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(names[0])}"
    procs = []
    try:
        for i, nm in enumerate(names):
            argv = [PYTHON, str(REPO / "bench" / "bare_gossip.py"), "--name", nm]
            argv += ["--port", str(port if i == 0 else free_port()), "--dir", str(out)]
            if i:
                argv += ["--peer", center]
            procs.append(PROCS.start(argv, log_path=out / f"{nm}.log"))
        wait_until(lambda: all((out / f"{nm}.ready").exists() for nm in names), 180, 0.2)
        time.sleep(settle)
        cpu0, t0 = cpu_seconds(procs[0].pid), time.monotonic()
        time.sleep(window)
        cpu1, t1 = cpu_seconds(procs[0].pid), time.monotonic()
        rss = rss_bytes(procs[0].pid)
    finally:
        PROCS.stop_many(procs)
    return {"cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "rss_mb": rss / MB}


def run(size: dict[str, Any]) -> dict[str, Any]:
    n, peers = size["idle_records"], size["idle_peers"]
    window, settle = size["idle_seconds"], size["idle_settle"]
    raws = data.project_records("big", n - 1)
    root = Path(tempfile.mkdtemp(prefix="commons-bench-idle-"))
    try:
        bare = run_bare(root, peers, window, settle)
        node = run_node(root, n, peers, window, settle)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    raw_per_record = sum(map(len, raws)) / len(raws)
    log(
        f"footprint: node {node['cpu_percent']:.2f} % CPU, {node['rss_mb']:.0f} MB,"
        f" {node['disk_bytes_per_record']:.0f} B/record; bare {bare['cpu_percent']:.2f} %,"
        f" {bare['rss_mb']:.0f} MB"
    )
    return {
        "records": n,
        "peers": peers,
        "seconds": window,
        "node": node,
        "bare": {**bare, "raw_bytes_per_record": raw_per_record},
        "cpu_ratio": ratio(node["cpu_percent"], bare["cpu_percent"]),
        "rss_ratio": ratio(node["rss_mb"], bare["rss_mb"]),
        "disk_ratio": ratio(node["disk_bytes_per_record"], raw_per_record),
        "rss_target_mb": rss_target_mb(n),
        "target": f"<= 1 % CPU, <= {rss_target_mb(n)} MB RSS",
    }
