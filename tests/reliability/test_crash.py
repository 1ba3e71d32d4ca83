"""Crash durability (guarantee 3 of RELIABILITY.md): nothing acknowledged is ever lost.

Node A (a ``commons node run`` process) takes a steady stream of records through its HTTP API
(two threads: one asks A to author contributions, one posts records signed elsewhere) and is
killed with SIGKILL at a random moment, again and again (3 times here, 20 in the full run).
After each kill, before A restarts: its store passes ``PRAGMA integrity_check`` and holds every
record whose id A had acknowledged with 201, each one valid (it parses and verifies, and its
id is the hash of its bytes). After each restart A serves again and syncs on: a record that a
second node W authored while A was dead reaches A, and at the end W holds everything A ever
acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import time

from procs import Writer, integrity, store_ids, store_raws, valid_raw
from reliability_harness import FULL
from system_harness import NodeProcess, Nodes, wait_until

from protocol.testing import RecordFactory

KILLS = 20 if FULL else 3
#: Seconds of writing before a kill: uniform in this range.
WRITE_SECONDS = (0.3, 2.0)


def _kill(node: NodeProcess) -> None:
    assert node.proc is not None
    assert node.proc.poll() is None, f"{node.name} died by itself"
    node.unclean_ok = True
    os.kill(node.pid, signal.SIGKILL)
    node.proc.wait(10)
    node._close_http()


def test_acknowledged_records_survive_sigkill(nodes: Nodes) -> None:
    rng = random.Random(os.environ.get("COMMONS_RELIABILITY_SEED", "crash"))
    w = nodes.start("w")
    a = nodes.home("a")
    a.start(w)
    project = a.post("/api/v1/projects", {"name": "Durable"})["id"]
    wait_until(lambda: w.has_record(project), what="the project to reach w")
    factory = RecordFactory()
    acked: set[bytes] = set()
    written = 0
    for kill in range(KILLS):
        writer = Writer(a.api, a.token, project, factory).start()
        time.sleep(rng.uniform(*WRITE_SECONDS))
        _kill(a)
        writer.stop()
        acked |= writer.acked
        written += len(writer.acked)
        assert writer.acked, f"kill {kill}: nothing was acknowledged before the kill"

        # Dead: the store is intact and holds every acknowledged record, valid.
        assert integrity(a.home) == "ok", f"kill {kill}"
        held = store_ids(a.home)
        lost = acked - held
        assert not lost, f"kill {kill}: {len(lost)} acknowledged records lost"
        raws = store_raws(a.home, writer.acked)
        assert all(valid_raw(i, raw) for i, raw in raws.items()), f"kill {kill}"

        # While A is dead, W authors a record; A must get it once it is back.
        missed = w.post(
            f"/api/v1/projects/{project}/contributions",
            {"type": "review", "title": f"while a was down #{kill}"},
        )["id"]
        a.start(w)
        assert a.status()["records"] >= len(held)
        wait_until(lambda: a.has_record(missed), what=f"kill {kill}: a to sync on")  # noqa: B023

    # Everything A acknowledged reached W (gossip or reconciliation), nothing was lost there.
    wait_until(lambda: acked <= store_ids(w.home), what="w to hold every acknowledged record")
    assert integrity(a.home) == "ok"
    print(f"crash: {KILLS} SIGKILLs, {len(acked)} acknowledged records, none lost")
