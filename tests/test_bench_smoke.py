"""The benchmark still runs: ``scripts/bench`` on tiny sizes (about 30 s), every figure present.

Benchmarks are not tests: nothing here looks at a timing, only that each figure was measured
and written to the JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = [
    "ingest",
    "catchup",
    "reconcile",
    "propagation",
    "throughput",
    "connect",
    "idle",
    "views",
    "import_git",
    "dashboard",
    "dht",
]


def test_bench_runs_on_tiny_sizes_and_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    env = dict(os.environ, COMMONS_BENCH_TINY="1", COMMONS_BENCH_CACHE=str(tmp_path / "cache"))
    env.pop("COMMONS_BENCH_SIZES", None)
    proc = subprocess.run(
        [str(ROOT / "scripts" / "bench"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "tiny"
    for name in FIGURES:
        assert name in result, name
        assert "error" not in result[name], result[name]
    assert {"import", "receive", "bare_limit"} <= set(result["ingest"])
    assert {"seconds", "bare_ingest_s", "bytes_per_record"} <= set(result["catchup"])
    assert result["catchup"]["attested"]["records"] == 1_001
    assert result["catchup"]["attested"]["ratio"] > 0
    assert set(result["reconcile"]["in_process"]) >= {"0", "1", "10"}
    assert {"node", "bare"} <= set(result["propagation"])
    assert {"node", "bare"} <= set(result["throughput"])
    assert {"connect_ms", "usable_ms", "bare_tcp_ms"} <= set(result["connect"])
    assert {"node", "bare"} <= set(result["idle"])
    assert {"ledger", "shares"} <= set(result["views"])
    assert result["import_git"]["new"] == result["import_git"]["commits"] > 500
    assert result["dht"]["lookup_ms"]["p50"] is not None
    assert result["dht"]["providers_found"]["median"] >= 1
    assert "figure" in proc.stdout  # the table
