"""Floods (guarantee 5 of RELIABILITY.md): misbehaving peers cannot take the network down.

Three honest ``commons node run`` processes in a line, A - B - C. For 8 s (120 s in the full
run) one peer floods B with invalid records as fast as it can and redials whenever it is
dropped, and another replays 3,000 valid old records to B and C as fast as it can (in the full
run a third one also floods B with a fresh identity each time it is dropped). Meanwhile the
test reads each honest node's API every 10 ms, A and C author a contribution every half
second, and B's memory is sampled. Then:

- every honest API answered every probe, none after more than 2 s (a stall guard); the p99
  latency is a figure, printed with the others, and held to 200 ms only in the full run that
  scripts/reliability makes on a quiet machine (a loaded 2-core CI machine measured 373 ms);
- every honest record reached all three nodes (A's cross B to reach C): by gossip, or, for
  what the flood pushed out of libp2p's queues, by reconciliation within a sync interval;
- B banned the invalid flooder (it is disconnected and stays out); no honest node banned
  another (the replayed records are valid: forwarding them is no offence);
- B's resident memory grew by less than 100 MiB.

Two smaller tests pin down bugs the flood found in py-libp2p's connection handling: inbound
connection slots must be freed when peers leave, and banning a peer twice must not stop the
node.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import trio
from procs import store_ids
from reliability_harness import FULL, addr, open_attacker, running, wait_until
from system_harness import NodeProcess, Nodes, run_cli
from system_harness import wait_until as wait_for

from node.net.transport import TransportError
from protocol.bundle import encode_bundle
from protocol.testing import RecordFactory

FLOOD_SECONDS = 120 if FULL else 8
OLD_RECORDS = 3000
#: The p99 of the honest APIs' answers during the flood: held in the full run only.
P99_LIMIT = 0.200
#: No honest API answer may take longer than this, in any run: a node that stalls fails.
STALL_LIMIT = 2.0
MAX_RSS_GROWTH = 100 << 20
#: The honest nodes' reconciliation interval, in seconds: the default (30) in the full run,
#: shorter here so that the suite need not wait half a minute for it.
SYNC_INTERVAL = 30 if FULL else 5
HERE = Path(__file__).resolve().parent


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class Probe:
    """Reads one node's status every ``interval`` seconds from a thread; keeps latencies."""

    def __init__(self, node: NodeProcess, interval: float = 0.01) -> None:
        self.api = node.api
        self.interval = interval
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.api, timeout=5) as http:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    ok = http.get("/api/v1/status").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.latencies.append(time.monotonic() - start)
                else:
                    self.errors += 1
                time.sleep(self.interval)

    def p99(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98]


def _set_sync_interval(node: NodeProcess, seconds: int) -> None:
    config = node.home / "config.toml"
    text = config.read_text()
    assert "sync_interval = 30" in text
    config.write_text(text.replace("sync_interval = 30", f"sync_interval = {seconds}"))


def banned_in_log(node: NodeProcess, peer: str) -> bool:
    return f"banning peer {peer}" in node.log(limit=10_000_000)


def test_flood_of_invalid_and_replayed_records(nodes: Nodes, tmp_path: Path) -> None:
    a, b, c = (nodes.home(name) for name in "abc")
    for node in (a, b, c):
        _set_sync_interval(node, SYNC_INTERVAL)
    a.start()
    b.start(a)
    c.start(b)
    project = a.post("/api/v1/projects", {"name": "Flooded"})["id"]
    first = a.post(f"/api/v1/projects/{project}/contributions", {"type": "code", "title": "x"})
    wait_for(lambda: c.has_record(first["id"]), what="gossip from a to reach c")

    # Valid old records, held by every honest node already (imported), to be replayed.
    factory = RecordFactory()
    old = list(factory.many_contributions("old-timer", bytes.fromhex(project), OLD_RECORDS))
    bundle = tmp_path / "old.bundle"
    bundle.write_bytes(encode_bundle([r.raw for r in old]))
    for node in (a, b, c):
        run_cli(node.home, "import", str(bundle))

    probes = [Probe(n).start() for n in (a, b, c)]
    rss_before = rss(b.pid)
    attackers = [
        ("invalid", [b.addr]),
        ("replay", [b.addr, c.addr]),
        *([("sybil", [b.addr])] if FULL else []),
    ]
    procs = []
    for mode, targets in attackers:
        argv = [sys.executable, str(HERE / "flood_peer.py"), mode, "--seconds", str(FLOOD_SECONDS)]
        argv += ["--report", str(tmp_path / f"{mode}.json"), "--project", project]
        argv += ["--bundle", str(bundle)]
        for target in targets:
            argv += ["--target", target]
        with (tmp_path / f"{mode}.log").open("wb") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    honest: list[str] = []
    rss_peak = rss_before
    try:
        deadline = time.monotonic() + FLOOD_SECONDS
        turn = 0
        while time.monotonic() < deadline:
            author = (a, c)[turn % 2]
            turn += 1
            body = {"type": "docs", "title": f"honest #{turn} during the flood"}
            honest.append(author.post(f"/api/v1/projects/{project}/contributions", body)["id"])
            rss_peak = max(rss_peak, rss(b.pid))
            time.sleep(0.5)
    finally:
        for proc in procs:
            try:
                proc.wait(FLOOD_SECONDS + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for probe in probes:
            probe.stop()
    reports = {mode: json.loads((tmp_path / f"{mode}.json").read_text()) for mode, _ in attackers}
    wanted = {bytes.fromhex(i) for i in honest}
    # Gossip is best effort: a flood of valid replays fills libp2p's 32-RPC queues between
    # honest nodes, which drop what does not fit. Reconciliation completes within a sync
    # interval (30 s) and then some.
    late = {n.name: len(wanted - store_ids(n.home)) for n in (a, b, c)}
    wait_for(
        lambda: all(wanted <= store_ids(n.home) for n in (a, b, c)),
        timeout=SYNC_INTERVAL + 15,
        what="every honest record on every honest node",
    )
    summary = {
        "published": {m: r["published"] for m, r in reports.items()},
        "dials": {m: (r["dials_ok"], r["dials"]) for m, r in reports.items()},
        "p99_ms": [round(p.p99() * 1000, 1) for p in probes],
        "max_ms": [round(max(p.latencies) * 1000, 1) for p in probes],
        "probes": [len(p.latencies) for p in probes],
        "rss_mb": (rss_before >> 20, rss_peak >> 20, rss(b.pid) >> 20),
        "honest": len(honest),
        "not_yet_by_gossip": late,
    }
    print(f"flood: {json.dumps(summary)}")

    for probe, node in zip(probes, (a, b, c), strict=True):
        assert probe.errors == 0, node.name
        assert max(probe.latencies) < STALL_LIMIT, (node.name, summary)
        if FULL:
            assert probe.p99() < P99_LIMIT, (node.name, summary)
    invalid = reports["invalid"]["identities"][0]
    assert banned_in_log(b, invalid), "b never banned the invalid flooder"
    assert invalid not in b.peer_ids()
    for node in (a, b, c):
        for other in (a, b, c):
            assert not banned_in_log(node, other.peer_id), f"{node.name} banned {other.name}"
    assert rss(b.pid) - rss_before < MAX_RSS_GROWTH, summary


def test_inbound_slots_are_released_when_peers_leave(tmp_path: Path) -> None:
    # Run outside pytest-trio, whose nursery would wrap the error in an ExceptionGroup.
    trio.run(_visitors_come_and_go, tmp_path)


async def _visitors_come_and_go(tmp_path: Path) -> None:
    """Peers that come and go must not use up a node's room for inbound connections."""
    refused: TransportError | None = None
    with trio.fail_after(60):
        async with running(tmp_path, "b", max_peers=4) as b:
            for i in range(12):
                async with open_attacker(f"visitor-{i}", lying_server=False) as visitor:
                    try:
                        await visitor.transport.connect(addr(b))
                    except TransportError as exc:
                        refused = exc
                        break
                    await wait_until(lambda: len(b.transport.connected_peers()) == 1)
                await wait_until(lambda: not b.transport.connected_peers())
    if refused is not None:
        raise refused


def test_banning_a_peer_twice_leaves_the_node_running(tmp_path: Path) -> None:
    """A peer banned twice at once (two failures judged together) must cost only the peer.

    The scenario is ``ban_twice.py``, in its own process: a node that dies this way leaves
    sockets behind that would trouble later tests.
    """
    result = subprocess.run(
        [sys.executable, str(HERE / "ban_twice.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise TransportError(result.stderr.strip().splitlines()[-1])
