"""A seed's operations, with real ``commons node run`` processes (guarantee 8 of RELIABILITY.md).

- ``commons backup``, a separate process, copies the store of a node taking a steady stream
  of writes: the copy passes ``integrity_check`` and holds every record acknowledged before
  the backup started, the writes go on meanwhile, and ``commons restore`` of it gives an
  identical ledger in a new home.
- A member catching up from a seed answers ``/healthz`` throughout and ``/readyz`` 200 only
  once it holds what the seed held.
- The seed soak (opt-in, ``scripts/reliability --soak``: ``COMMONS_SEED_SOAK=SECONDS``): 20
  member homes join and leave a seed for SECONDS (600 in the documented run) while records
  are authored on them; at the end the seed and every member hold every acknowledged record,
  and the seed's memory stayed flat.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import pytest
from procs import Writer, digest, store_ids, store_raws
from reliability_harness import FULL
from system_harness import NodeProcess, Nodes, run_cli, wait_until

from node.store.backup import check_backup
from node.store.sqlite import Store
from protocol.testing import RecordFactory

#: Records the seed holds before the tests start (so that a backup and a catch-up take time).
PRELOAD = 20_000 if FULL else 5_000


def preload(node: NodeProcess, count: int = PRELOAD) -> set[bytes]:
    """Fill the (stopped) node's store directly; the ids stored."""
    f = RecordFactory()
    project = f.project("preloaded")
    records = [project, *f.many_contributions("preloaded", project, count - 1)]
    with Store.open(node.home / "ledger.db") as store:
        for start in range(0, len(records), 5000):
            store.add(records[start : start + 5000], published=True)
    return {r.id for r in records}


def held(path: Path) -> dict[bytes, bytes]:
    """Every record of the store or backup at ``path``: id -> bytes."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        return {bytes(i): bytes(raw) for i, raw in conn.execute("SELECT id, raw FROM records")}
    finally:
        conn.close()


def test_a_backup_under_write_load_restores_an_identical_ledger(
    nodes: Nodes, tmp_path: Path
) -> None:
    seed = nodes.home("seed")
    preload(seed)
    seed.start()
    project = seed.post("/api/v1/projects", {"name": "Backed up"})["id"]
    writer = Writer(seed.api, seed.token, project, RecordFactory()).start()
    try:
        wait_until(lambda: len(writer.acked) >= 100, timeout=60, what="writes to flow")
        with writer._lock:
            before = set(writer.acked)
        target = tmp_path / "seed.backup"
        started = time.monotonic()
        summary = run_cli(seed.home, "backup", str(target), log=nodes.cli_log).value
        took = time.monotonic() - started
        with writer._lock:
            during = len(writer.acked) - len(before)
    finally:
        writer.stop()
    assert writer.failures == 0
    assert check_backup(target) == summary["records"]
    copy = held(target)
    assert before <= set(copy)
    assert len(copy) >= PRELOAD + len(before)
    assert during > 0, "no write was acknowledged while the backup ran"
    # Restored into a new home (by another process), the backup is the same ledger.
    fresh = tmp_path / "restored"
    run_cli(fresh, "restore", str(target), log=nodes.cli_log)
    assert held(fresh / "ledger.db") == copy
    # Once the writes stopped: a backup of the node, restored, is identical to its store.
    second = tmp_path / "seed-idle.backup"
    run_cli(seed.home, "backup", str(second), log=nodes.cli_log)
    seed.stop()
    again = tmp_path / "restored-again"
    run_cli(again, "restore", str(second), log=nodes.cli_log)
    assert held(again / "ledger.db") == held(seed.home / "ledger.db")
    print(
        f"seed: backup of {summary['records']} records ({summary['bytes']} bytes) under write "
        f"load in {took:.2f} s, {summary['steps']} steps, longest {summary['longest_step_ms']} "
        f"ms; {during} writes acknowledged meanwhile, none failed"
    )


def test_a_member_is_ready_only_once_caught_up(nodes: Nodes) -> None:
    seed = nodes.home("seed")
    ids = preload(seed)
    seed.start()
    member = nodes.start("member", seed)
    seen: list[int] = []

    def ready() -> bool:
        assert member.request("GET", "/healthz").status_code == 200
        answer = member.request("GET", "/readyz")
        seen.append(answer.status_code)
        state = answer.json()
        assert answer.status_code == (200 if state["ready"] else 503)
        assert state["ready"] == (state["synced"] and state["store"] and state["listening"])
        return answer.status_code == 200

    wait_until(ready, timeout=120, interval=0.02, what="the member to be ready")
    # Ready means a reconciliation finished: the member then holds all the seed held.
    assert ids <= store_ids(member.home)
    assert member.get("/readyz")["alone"] is False
    assert seed.get("/readyz") == {
        "ready": True,
        "store": True,
        "listening": True,
        "synced": True,
        "alone": True,
    }
    print(f"seed: readiness during a {PRELOAD}-record catch-up: {seen.count(503)} answers 503")


# ---------------------------------------------------------------------------- the soak

SOAK_SECONDS = float(os.environ.get("COMMONS_SEED_SOAK", "0") or 0)
MEMBERS = 20
#: Members running at once (a 2-core machine runs the seed and 8 members comfortably).
AT_ONCE = 8
CHANGE_EVERY = 5.0
AUTHOR_EVERY = 0.25
#: The seed's resident memory may grow by at most this much between the end of the first
#: tenth of the soak (warm: caches filled, every member seen) and the end.
MAX_GROWTH = 30e6


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rss(node: NodeProcess) -> float:
    text = node.request("GET", "/metrics").text
    (line,) = [x for x in text.splitlines() if x.startswith("process_resident_memory_bytes ")]
    return float(line.split()[1])


@pytest.mark.skipif(
    SOAK_SECONDS <= 0, reason="the seed soak is opt-in: scripts/reliability --soak SECONDS"
)
def test_seed_soak(nodes: Nodes) -> None:
    rng = random.Random(os.environ.get("COMMONS_RELIABILITY_SEED", "seed-soak"))
    seed = nodes.home("seed")
    port = _free_port()
    seed.start(extra=("--listen", f"/ip4/127.0.0.1/tcp/{port}", "--seed"))
    seed_addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{seed.peer_id}"
    members = [nodes.home(f"m{i}") for i in range(MEMBERS)]
    for member in members[:AT_ONCE]:
        member.start(seed_addr)
    project = seed.post("/api/v1/projects", {"name": "Soaked"})["id"]
    acked = {bytes.fromhex(project)}
    memory: list[tuple[float, float]] = []
    began = time.monotonic()
    deadline = began + SOAK_SECONDS
    next_sample = began
    joins: list[str] = []
    churn_errors: list[BaseException] = []
    done = threading.Event()
    churn_rng = random.Random(rng.random())

    def churn() -> None:
        """Every CHANGE_EVERY seconds a member leaves and another joins (a thread of its own,
        so that the slow start of a node does not slow the authoring down)."""
        try:
            while not done.wait(CHANGE_EVERY):
                leaving = churn_rng.choice([m for m in members if m.running])
                if churn_rng.random() < 0.25:
                    leaving.kill()  # a laptop's lid closed: no goodbye
                else:
                    leaving.stop()
                joining = churn_rng.choice(
                    [m for m in members if not m.running and m is not leaving]
                )
                joining.start(seed_addr)
                joins.append(joining.name)
        except BaseException as exc:
            churn_errors.append(exc)

    changer = threading.Thread(target=churn, daemon=True)
    changer.start()
    while time.monotonic() < deadline and not churn_errors:
        live = [m for m in members if m.running]
        for author in rng.sample(live, len(live)):
            body = {"type": "code", "title": f"by {author.name} during the soak"}
            path = f"/api/v1/projects/{project}/contributions"
            try:
                response = author.request("POST", path, auth=True, json=body)
            except Exception:  # the member is leaving right now: not acknowledged
                continue
            if response.status_code == 201:  # 404 until the project reached a fresh member
                acked.add(bytes.fromhex(response.json()["id"]))
                break
        if time.monotonic() >= next_sample:
            memory.append((time.monotonic() - began, _rss(seed)))
            next_sample += 10.0
        time.sleep(AUTHOR_EVERY)
    done.set()
    changer.join(120)
    if churn_errors:
        raise churn_errors[0]
    for member in members:
        if member.running:
            member.stop()
    # Every member comes back once, alone with the seed: each must get everything.
    for member in members:
        member.start(seed_addr)
        wait_until(
            lambda m=member: acked <= store_ids(m.home),
            timeout=60,
            what=f"{member.name} to hold every acknowledged record",
        )
        member.stop()
    assert acked <= store_ids(seed.home)
    assert digest(store_ids(seed.home)) == digest(store_ids(members[0].home))
    assert store_raws(seed.home, acked).keys() == acked
    warm = [rss for at, rss in memory if at >= SOAK_SECONDS / 10]
    first, last = statistics.median(warm[:3]), statistics.median(warm[-3:])
    assert last - first < MAX_GROWTH, f"the seed's memory grew from {first:.0f} to {last:.0f}"
    seed.stop(signal.SIGTERM)
    print(
        f"seed-soak: {SOAK_SECONDS:.0f} s, {MEMBERS} members ({AT_ONCE} at once), {len(joins)} "
        f"joins, {len(acked)} records: all held by the seed and every member; seed RSS "
        f"{first / 1e6:.0f} MB warm, {last / 1e6:.0f} MB at the end, peak "
        f"{max(r for _, r in memory) / 1e6:.0f} MB"
    )
