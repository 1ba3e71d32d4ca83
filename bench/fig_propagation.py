"""Figure 4: propagation from authoring to arrival at every node, N node processes.

Topology: a ring plus random chords (seeded), every node with 3 or 4 links; each link is
dialled by its higher-numbered end (``--bootstrap``). Records: one project is created at node
0 and reaches every node first; then R contributions a second network-wide, each authored
through the API of a node picked at random (seeded). A record's latency is the latest
``received_at`` over all nodes minus its ``ts`` (both milliseconds of the same clock, the
origin sets ``ts`` when it signs), read from every node's store (read-only) after the run, so
nothing polls the nodes while they work. A record some node never got counts as missing.

The bare limit: the same topology and schedule with :mod:`bench.bare_gossip` processes
(py-libp2p GossipSub alone), in the same run.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PROCS,
    PYTHON,
    REPO,
    free_port,
    log,
    make_home,
    percentile,
    ratio,
    start_node,
    stop_nodes,
    summary,
    wait_ready,
    wait_until,
)
from node.store.schema import CONTRIBUTION


def topology(n: int, seed: int = 4) -> list[tuple[int, int]]:
    """Ring plus chords: every node ends with 3 or 4 links (n >= 5); fewer nodes: a ring."""
    rng = random.Random(seed)
    edges = {(i, (i + 1) % n) if i < (i + 1) % n else ((i + 1) % n, i) for i in range(n)}
    if n < 3:
        return sorted({(0, 1)}) if n == 2 else []
    degree = [2] * n
    for _ in range(1000):
        low = [i for i in range(n) if degree[i] < 3]
        if not low:
            break
        a = rng.choice(low)
        options = [b for b in range(n) if b != a and degree[b] < 4]
        options = [b for b in options if (min(a, b), max(a, b)) not in edges]
        if not options:
            break
        options.sort(key=lambda b: (degree[b] >= 3, rng.random()))
        b = options[0]
        edges.add((min(a, b), max(a, b)))
        degree[a] += 1
        degree[b] += 1
    return sorted(edges)


def schedule(count: int, rate: float, n: int, seed: int = 5) -> list[tuple[float, int, int]]:
    """(offset seconds, message index, authoring node)."""
    rng = random.Random(seed)
    return [(k / rate, k, rng.randrange(n)) for k in range(count)]


def _latencies(per_record: dict[int, list[float | None]]) -> dict[str, Any]:
    complete = [max(v) for v in per_record.values() if v and all(x is not None for x in v)]
    missing = sum(1 for v in per_record.values() if not v or any(x is None for x in v))
    return {
        "p50_ms": percentile(complete, 50),
        "p99_ms": percentile(complete, 99),
        "max_ms": max(complete) if complete else None,
        "records": len(per_record),
        "missing": missing,
    }


def run_nodes(root: Path, n: int, count: int, rate: float, settle: float) -> dict[str, Any]:
    edges = topology(n)
    nodes = [make_home(root, f"prop-{i}") for i in range(n)]
    for node in nodes:
        node.port = free_port()
    try:
        for i, node in enumerate(nodes):
            peers = [nodes[a].addr for a, b in edges if b == i]
            start_node(node, bootstrap=peers)
        wait_ready(nodes, timeout=120)
        links = {i: sum(1 for e in edges if i in e) for i in range(n)}
        wait_until(
            lambda: all(len(nd.get("/api/v1/peers")) >= links[i] for i, nd in enumerate(nodes)),
            60,
            0.5,
            what="the topology",
        )
        project = nodes[0].post("/api/v1/projects", {"name": "Propagation"})
        pid = project["id"]

        def everywhere() -> bool:
            for nd in nodes:
                with nd.db() as conn:
                    query = "SELECT 1 FROM records WHERE substr(id, 1, 8) = substr(?1, 1, 8)"
                    row = conn.execute(query + " AND id = ?1", (bytes.fromhex(pid),))
                    if row.fetchone() is None:
                        return False
            return True

        wait_until(everywhere, 60, 0.2, what="the project everywhere")
        time.sleep(settle)  # subscriptions and GossipSub meshes for the project's topic
        plan = schedule(count, rate, n)
        start = time.time() + 0.5
        for offset, k, origin in plan:
            delay = start + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            nodes[origin].post(
                f"/api/v1/projects/{pid}/contributions", {"type": "code", "title": f"Record {k}"}
            )
        time.sleep(settle)
        ts_of: dict[bytes, int] = {}
        received = []
        for nd in nodes:
            with nd.db() as conn:
                rows = conn.execute(
                    f"SELECT id, ts, received_at FROM records WHERE kind = {CONTRIBUTION}"
                ).fetchall()
            received.append({bytes(i): at for i, _, at in rows})
            for i, ts, _ in rows:
                ts_of[bytes(i)] = ts
        per_record: dict[int, list[float | None]] = {}
        for k, (rid, ts) in enumerate(sorted(ts_of.items(), key=lambda kv: kv[1])):
            per_record[k] = [(got[rid] - ts) if rid in got else None for got in received]
        result = _latencies(per_record)
        result["authored"] = count
        result["stored_somewhere"] = len(ts_of)
        return result
    finally:
        stop_nodes(nodes)


def run_bare(root: Path, n: int, count: int, rate: float, settle: float) -> dict[str, Any]:
    edges = topology(n)
    names = [f"bare-{i}" for i in range(n)]
    ports = [free_port() for _ in range(n)]
    from bench.bare_gossip import peer_id_of

    ids = [peer_id_of(name) for name in names]
    out = root / "bare"
    out.mkdir()
    plan = schedule(count, rate, n)
    procs = []
    try:
        for i, name in enumerate(names):
            mine = [[offset, k] for offset, k, origin in plan if origin == i]
            sched = out / f"{name}.schedule.json"
            sched.write_text(json.dumps(mine))
            argv = [PYTHON, str(REPO / "bench" / "bare_gossip.py"), "--name", name]
            argv += ["--port", str(ports[i]), "--dir", str(out), "--schedule", str(sched)]
            for a, b in edges:
                if b == i:
                    argv += ["--peer", f"/ip4/127.0.0.1/tcp/{ports[a]}/p2p/{ids[a]}"]
            procs.append(PROCS.start(argv, log_path=out / f"{name}.log"))
        wait_until(
            lambda: all((out / f"{nm}.ready").exists() for nm in names), 120, 0.2, what="bare"
        )
        time.sleep(settle)  # meshes
        (out / "go").write_text(repr(time.time() + 0.5))
        time.sleep(0.5 + count / rate)
        wait_until(lambda: all((out / f"{nm}.done").exists() for nm in names), 120, 0.1)
        time.sleep(settle)
    finally:
        PROCS.stop_many(procs)
    received = []
    for name in names:
        path = out / f"{name}.json"
        received.append(
            {int(k): v for k, v in json.loads(path.read_text())["received"].items()}
            if path.exists()
            else {}
        )
    per_record: dict[int, list[float | None]] = {}
    # The publish time is in the payload; the origin's own validator saw it at publish time.
    for _offset, k, origin in plan:
        sent = received[origin].get(k)
        per_record[k] = [
            None if sent is None or k not in got else (got[k] - sent) / 1e6 for got in received
        ]
    return {**_latencies(per_record), "authored": count}


def run(size: dict[str, Any]) -> dict[str, Any]:
    n, count, rate = size["prop_nodes"], size["prop_records"], size["prop_rate"]
    node_runs, bare_runs = [], []
    for rep in range(size["prop_reps"]):
        root = Path(tempfile.mkdtemp(prefix="commons-bench-prop-"))
        try:
            bare_runs.append(run_bare(root, n, count, rate, size["settle"]))
            node_runs.append(run_nodes(root, n, count, rate, size["settle"]))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        log(
            f"propagation rep {rep + 1}: node p50 {node_runs[-1]['p50_ms']} p99"
            f" {node_runs[-1]['p99_ms']} ms (missing {node_runs[-1]['missing']}); bare p50"
            f" {bare_runs[-1]['p50_ms']} p99 {bare_runs[-1]['p99_ms']} ms"
            f" (missing {bare_runs[-1]['missing']})"
        )
    node_p99 = summary([r["p99_ms"] for r in node_runs])
    bare_p99 = summary([r["p99_ms"] for r in bare_runs])
    return {
        "nodes": n,
        "records": count,
        "rate_per_s": rate,
        "links": len(topology(n)),
        "node": {
            "p50_ms": summary([r["p50_ms"] for r in node_runs]),
            "p99_ms": node_p99,
            "missing": summary([r["missing"] for r in node_runs]),
        },
        "bare": {
            "p50_ms": summary([r["p50_ms"] for r in bare_runs]),
            "p99_ms": bare_p99,
            "missing": summary([r["missing"] for r in bare_runs]),
        },
        "p99_ratio": ratio(node_p99["median"], bare_p99["median"]),
        "runs": {"node": node_runs, "bare": bare_runs},
        "target": "p99 <= 100 ms",
    }
