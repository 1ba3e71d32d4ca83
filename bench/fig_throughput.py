"""Figure 5: sustained throughput along a line A - B - C of node processes, and CPU per record.

Records are pre-signed (seeded keys) and submitted to A's API (``POST /api/v1/records``, two
keep-alive connections) at an offered rate for the duration; A validates, stores and gossips
each; B relays; C stores. The rate reaching C is counted in six windows (10 s each in the
full run) from C's ``received_at`` (read from its store after the run); CPU seconds of each
process (utime + stime from /proc) over the run are divided by the records it took. After the
load, B and then C are asked to reconcile (``POST /api/v1/sync``); C must then hold every
record.

The nodes run with their default configuration (sync interval raised, so that only gossip
moves records during the load).

The relayed variant (issue 14): A sits behind a circuit relay at B (``[relay]``: A says it is
private and reserves a slot on B; hole punching off), C dials A through B, and B hosts
another project only: A's records reach C over the circuit, B carrying bytes it neither
reads nor stores. The same offered rate; the relay's overhead is this variant against the
gossip line.

The bare limit: :mod:`bench.bare_gossip` A - B - C at the same offered rate, publishing
250-byte messages from A's own process; rate at C and CPU per message per node.
"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import data
from bench.common import (
    PROCS,
    PYTHON,
    REPO,
    cpu_seconds,
    free_port,
    log,
    make_home,
    ratio,
    start_node,
    stop_nodes,
    summary,
    wait_ready,
    wait_until,
)
from node.store.schema import CONTRIBUTION, PROFILE

WINDOWS = 6  # the run is cut into this many windows (10 s each for 60 s)
LOADERS = 2


def _load(api: str, token: str, raws: list[bytes], rate: float, start: float) -> list[int]:
    """Submit raws[k] at start + k/rate from LOADERS threads; returns per-thread failures."""
    url = urlparse(api)
    failures = [0] * LOADERS

    def worker(t: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        for k in range(t, len(raws), LOADERS):
            delay = start + k / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("POST", "/api/v1/records", body=raws[k], headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 300:
                    failures[t] += 1
            except (OSError, http.client.HTTPException):
                failures[t] += 1
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(LOADERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return failures


#: The batched variant posts what is due every this many seconds as one bundle.
BATCH_SECONDS = 0.05


def _load_batches(api: str, token: str, raws: list[bytes], rate: float, start: float) -> list[int]:
    """Every BATCH_SECONDS, POST the records due by then as one bundle (/api/v1/bundles):
    the same offered rate, one request per batch. Returns the failures (records refused)."""
    from protocol.bundle import encode_bundle

    url = urlparse(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    failures = 0
    sent = 0
    tick = 0
    while sent < len(raws):
        tick += 1
        delay = start + tick * BATCH_SECONDS - time.time()
        if delay > 0:
            time.sleep(delay)
        due = min(len(raws), int((time.time() - start) * rate) + 1)
        if due <= sent:
            continue
        batch = raws[sent:due]
        sent = due
        try:
            conn.request("POST", "/api/v1/bundles", body=encode_bundle(batch), headers=headers)
            response = conn.getresponse()
            body = response.read()
            if response.status >= 300:
                failures += len(batch)
            else:
                failures += len(json.loads(body)["rejected"])
        except (OSError, http.client.HTTPException):
            failures += len(batch)
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.close()
    return [failures]


def _windows(times_s: list[float], start: float, duration: float) -> list[float]:
    window = duration / WINDOWS
    counts = [0] * WINDOWS
    for t in times_s:
        w = int((t - start) // window)
        if 0 <= w < WINDOWS:
            counts[w] += 1
    return [c / window for c in counts]


#: What the relayed variant changes in each node's config.toml (A, B, C).
_NO_PUNCH = {"hole_punch = true": "hole_punch = false"}
RELAYED_CONFIG = (
    {'reachability = "auto"': 'reachability = "private"', **_NO_PUNCH},
    {'hop = "auto"': "hop = true", 'host = "all"': f'host = ["{"ab" * 32}"]'},
    {'reachability = "auto"': 'reachability = "public"', **_NO_PUNCH},
)


def _configure(node: Any, changes: dict[str, str]) -> None:
    path = node.home / "config.toml"
    text = path.read_text()
    for old, new in changes.items():
        assert old in text, f"config.toml lacks {old!r}"
        text = text.replace(old, new)
    path.write_text(text)


def _start_relayed(a: Any, b: Any, c: Any) -> None:
    """B relays; A reserves a slot on it; C dials A's relayed address."""
    for node, changes in zip((a, b, c), RELAYED_CONFIG, strict=True):
        _configure(node, changes)
    start_node(b)
    start_node(a, bootstrap=[b.addr])
    wait_ready([a, b])

    def relayed() -> list[str]:
        return [x for x in a.get("/api/v1/status")["addrs"] if "/p2p-circuit/" in x]

    wait_until(lambda: bool(relayed()), 60, 0.2, what="A's relay slot on B")
    start_node(c, bootstrap=relayed()[:1])
    wait_ready([c])
    wait_until(lambda: len(c.get("/api/v1/peers")) >= 2, 60, 0.2, what="C's circuit to A")


def run_nodes(
    root: Path,
    rate: float,
    duration: float,
    settle: float,
    *,
    batched: bool = False,
    relayed: bool = False,
) -> dict[str, Any]:
    count = int(rate * duration)
    raws = data.project_records("tput", count)
    genesis, records = raws[0], raws[1:]
    names = ["tput-a", "tput-b", "tput-c"]
    if batched or relayed:
        names = [f"{n}-{'batched' if batched else 'relayed'}" for n in names]
    nodes = [make_home(root, nm, sync_interval=3600) for nm in names]
    a, b, c = nodes
    for nd in nodes:
        nd.port = free_port()
    try:
        if relayed:
            _start_relayed(a, b, c)
        else:
            start_node(a)
            start_node(b, bootstrap=[a.addr])
            start_node(c, bootstrap=[b.addr])
        wait_ready(nodes)
        wait_until(lambda: len(b.get("/api/v1/peers")) >= 2, 60, 0.2, what="the line")
        a.post("/api/v1/records", raw=genesis)
        wait_until(lambda: c.records() >= 1 + _profiles(c), 60, 0.2, what="the project at C")
        time.sleep(settle)  # subscriptions and meshes for the project's topic
        cpu0 = [cpu_seconds(nd.pid) for nd in nodes]
        start = time.time() + 0.5
        failures = (_load_batches if batched else _load)(a.api, a.token, records, rate, start)
        loaded = time.time()
        # Drain: until C stops receiving (or 20 s).
        last, stable = -1, 0
        deadline = time.time() + 20
        while time.time() < deadline and stable < 4:
            now_count = _count(c)
            stable = stable + 1 if now_count == last else 0
            last = now_count
            time.sleep(0.25)
        cpu1 = [cpu_seconds(nd.pid) for nd in nodes]
        at = [_arrivals(nd) for nd in nodes]
        before_sync = len(at[2])
        sync_errors = [err for nd in ((c,) if relayed else (b, c)) if (err := _sync(nd))]
        after_sync = _count(c)
    finally:
        stop_nodes(nodes)
    got_c = sorted(at[2])
    windows = _windows(got_c, start, duration)
    span = (got_c[-1] - start) if got_c else None
    return {
        "offered_per_s": rate,
        "submitted": count,
        "submit_failures": sum(failures),
        "submit_s": loaded - start,
        "at_c_by_gossip": before_sync,
        "missing_at_c_after_sync": count - after_sync,
        "sync_errors": sync_errors,
        "rate_at_c_windows": windows,
        "rate_at_c": (before_sync / span) if span else None,
        # A relay stores nothing: its CPU is per record carried, those C received.
        "cpu_ms_per_record": {
            nm: 1000 * (c1 - c0) / max(1, len(at[2] if relayed and nm == "B" else got))
            for nm, c0, c1, got in zip("ABC", cpu0, cpu1, at, strict=True)
        },
    }


def _sync(node: Any) -> str | None:
    """Ask a node to reconcile with its peers now; the error text if it could not."""
    import urllib.error

    for attempt in range(3):
        try:
            node.post("/api/v1/sync", {}, timeout=300)
            return None
        except urllib.error.HTTPError as exc:
            error = f"{exc.code}: {exc.read().decode(errors='replace')[:300]}"
            log(f"sync at {node.name} failed (attempt {attempt + 1}): {error}")
            time.sleep(2)
    return error


def _profiles(node: Any) -> int:
    with node.db() as conn:
        query = f"SELECT count(*) FROM records WHERE kind = {PROFILE}"
        return int(conn.execute(query).fetchone()[0])


def _count(node: Any) -> int:
    with node.db() as conn:
        query = f"SELECT count(*) FROM records WHERE kind = {CONTRIBUTION}"
        return int(conn.execute(query).fetchone()[0])


def _arrivals(node: Any) -> list[float]:
    with node.db() as conn:
        rows = conn.execute(f"SELECT received_at FROM records WHERE kind = {CONTRIBUTION}")
        return [at / 1000 for (at,) in rows]


def run_bare(root: Path, rate: float, duration: float, settle: float) -> dict[str, Any]:
    from bench.bare_gossip import peer_id_of

    names = ["tbare-a", "tbare-b", "tbare-c"]
    ports = [free_port() for _ in names]
    ids = [peer_id_of(nm) for nm in names]
    out = root / "tbare"
    out.mkdir()
    procs = []
    try:
        for i, nm in enumerate(names):
            argv = [PYTHON, str(REPO / "bench" / "bare_gossip.py"), "--name", nm]
            argv += ["--port", str(ports[i]), "--dir", str(out)]
            if i:
                argv += ["--peer", f"/ip4/127.0.0.1/tcp/{ports[i - 1]}/p2p/{ids[i - 1]}"]
            if i == 0:
                argv += ["--rate", str(rate), "--duration", str(duration)]
            procs.append(PROCS.start(argv, log_path=out / f"{nm}.log"))
        wait_until(lambda: all((out / f"{nm}.ready").exists() for nm in names), 120, 0.2)
        time.sleep(settle)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        start = time.time() + 0.5
        (out / "go").write_text(repr(start))
        wait_until(lambda: (out / f"{names[0]}.done").exists(), duration * 10 + 30, 0.2)
        published_s = time.time() - start
        time.sleep(settle)
        cpu1 = [cpu_seconds(p.pid) for p in procs]
    finally:
        PROCS.stop_many(procs)
    got = []
    for nm in names:
        path = out / f"{nm}.json"
        got.append(json.loads(path.read_text())["received"] if path.exists() else {})
    at_c = sorted(t / 1e9 for t in got[2].values())
    count = int(rate * duration)
    span = (at_c[-1] - start) if at_c else None
    return {
        "offered_per_s": rate,
        "published": count,
        "publish_s": published_s,
        "at_c": len(at_c),
        "rate_at_c_windows": _windows(at_c, start, duration),
        "rate_at_c": (len(at_c) / span) if span else None,
        "cpu_ms_per_record": {
            nm: 1000 * (c1 - c0) / max(1, len(g))
            for nm, c0, c1, g in zip("ABC", cpu0, cpu1, got, strict=True)
        },
    }


def run(size: dict[str, Any]) -> dict[str, Any]:
    rate, duration = size["tput_rate"], size["tput_seconds"]
    root = Path(tempfile.mkdtemp(prefix="commons-bench-tput-"))
    try:
        bare = run_bare(root, rate, duration, size["settle"])
        log(f"throughput bare: {bare['rate_at_c']:.0f}/s at C, CPU {bare['cpu_ms_per_record']}")
        node = run_nodes(root, rate, duration, size["settle"])
        log(
            f"throughput node: {node['rate_at_c'] or 0:.0f}/s at C, CPU {node['cpu_ms_per_record']}"
            f", missing after sync {node['missing_at_c_after_sync']}"
        )
        batched = run_nodes(root, rate, duration, size["settle"], batched=True)
        log(
            f"throughput node, batched API: {batched['rate_at_c'] or 0:.0f}/s at C, CPU"
            f" {batched['cpu_ms_per_record']}, missing after sync"
            f" {batched['missing_at_c_after_sync']}"
        )
        relayed = run_nodes(root, rate, duration, size["settle"], relayed=True)
        log(
            f"throughput node, A behind a relay at B: {relayed['rate_at_c'] or 0:.0f}/s at C,"
            f" CPU {relayed['cpu_ms_per_record']}, missing after sync"
            f" {relayed['missing_at_c_after_sync']}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    node_windows = summary(node["rate_at_c_windows"])
    bare_windows = summary(bare["rate_at_c_windows"])
    return {
        "seconds": duration,
        "node": {**node, "rate_at_c_summary": node_windows},
        "node_batched": {**batched, "rate_at_c_summary": summary(batched["rate_at_c_windows"])},
        "bare": {**bare, "rate_at_c_summary": bare_windows},
        "node_relayed": {**relayed, "rate_at_c_summary": summary(relayed["rate_at_c_windows"])},
        "relayed_rate_ratio": ratio(relayed["rate_at_c"], node["rate_at_c"]),
        "rate_ratio": ratio(node["rate_at_c"], bare["rate_at_c"]),
        "batched_rate_ratio": ratio(batched["rate_at_c"], bare["rate_at_c"]),
        "relay_cpu_ratio": ratio(node["cpu_ms_per_record"]["B"], bare["cpu_ms_per_record"]["B"]),
        "target": ">= 300 records/s at C, <= 1 ms CPU per record at the relay",
    }
