"""Figure 2: an empty node catching up with one that holds N records (two processes).

The full node starts from a copy of a prepared store. The empty node starts with
``--bootstrap`` naming it (its peer id is chosen to sort below the full node's, so exactly one
session runs, the empty node's). Catch-up time runs from the moment the empty node's API
answers (it dials right after) to the ``received_at`` of the last record it stored, read from
its store afterwards; the start of the process is reported separately. Bytes on the wire are
the sync stream's payload bytes from its ``/metrics`` (Noise and Yamux framing not included).

The bare limit is :func:`bench.fig_ingest.bare_ingest` of the same N records, in the same
repetition (the better of one and two threads).

Then issue 16's form, once: a fresh node catching up an imported history (a million attested
contributions by 20,000 authors in the full run, the records ``commons import-git`` makes, as
figure 8 at Linux scale holds them) against the bare ingest of the same records on two threads,
measured just before it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.common import (
    log,
    make_home,
    metric,
    name_below,
    ratio,
    start_node,
    stop_nodes,
    summary,
    wait_ready,
    wait_until,
)
from bench.fig_ingest import bare_ingest


def one(root: Path, template: Path, n: int, rep: int) -> dict[str, float]:
    full = make_home(root, f"catchup-full-{rep}", template_db=template, sync_interval=3600)
    empty = make_home(root, name_below(f"catchup-empty-{rep}", full.peer_id), sync_interval=3600)
    nodes = [full, empty]
    try:
        start_node(full)
        wait_ready([full])
        spawned = time.time()
        start_node(empty, bootstrap=[full.addr])
        wait_ready([empty])
        ready = time.time()
        wait_until(lambda: empty.records() >= n, 600, 0.25, what="catch-up")
        text = empty.get("/metrics")
        with empty.db() as conn:
            (last_ms,) = conn.execute("SELECT max(received_at) FROM records").fetchone()
        return {
            "seconds": last_ms / 1000 - ready,
            "start_s": ready - spawned,
            "bytes": metric(text, "commons_sync_sent_bytes_total")
            + metric(text, "commons_sync_received_bytes_total"),
            "sessions": metric(text, "commons_sync_sessions_total"),
        }
    finally:
        stop_nodes(nodes)


def attested(size: dict[str, Any], root: Path) -> dict[str, Any]:
    """One catch-up of the attested history and its bare ingest (at a million, each takes
    minutes: one repetition)."""
    n, authors = size["catchup_attested"], size["catchup_attested_authors"]
    raws = data.attested_records("linux", n, authors)
    template = data.attested_store("linux", n, authors)
    bare = bare_ingest(raws, root / "bare-attested.db", 2)
    for leftover in root.glob("bare-attested.db*"):  # the database and its WAL: disk for the run
        leftover.unlink()
    homes = root / "attested"  # not the homes of the repetitions above
    homes.mkdir()
    run = one(homes, template, len(raws), 0)
    log(f"attested catch-up of {len(raws):,}: {run['seconds']:.1f} s (bare ingest {bare:.1f} s)")
    return {
        "records": len(raws),
        "seconds": summary([run["seconds"]]),
        "bare_ingest_s": summary([bare]),
        "ratio": ratio(run["seconds"], bare),
        "bytes_per_record": run["bytes"] / len(raws),
    }


def run(size: dict[str, Any]) -> dict[str, Any]:
    n = size["catchup_records"]
    reps = size["reps"]
    raws = data.project_records("big", n - 1)
    template = data.template_store("big", n - 1)
    root = Path(tempfile.mkdtemp(prefix="commons-bench-catchup-"))
    bare: list[float] = []
    runs: list[dict[str, float]] = []
    try:
        for rep in range(reps):
            db = root / f"bare-{rep}.db"
            seconds = min(bare_ingest(raws, db, 1), bare_ingest(raws, root / f"bare2-{rep}.db", 2))
            bare.append(seconds)
            runs.append(one(root, template, n, rep))
            log(
                f"catch-up rep {rep + 1}/{reps}: {runs[-1]['seconds']:.2f} s"
                f" (bare ingest {seconds:.2f} s), {runs[-1]['bytes'] / n:.0f} B/record"
            )
        history = attested(size, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    seconds = summary([r["seconds"] for r in runs])
    bare_s = summary(bare)
    return {
        "records": n,
        "seconds": seconds,
        "node_start_s": summary([r["start_s"] for r in runs]),
        "bare_ingest_s": bare_s,
        "ratio": ratio(seconds["median"], bare_s["median"]),
        "ratios": summary([r["seconds"] / b for r, b in zip(runs, bare, strict=True)]),
        "bytes_per_record": summary([r["bytes"] / n for r in runs]),
        "raw_bytes_per_record": sum(map(len, raws)) / n,
        "sessions": summary([r["sessions"] for r in runs]),
        "attested": history,
        # Issue 16 asks 1.2x of a million records (issue 4 asked 1.3x of 100,000).
        "target": "<= 1.2x the bare ingest time",
    }
