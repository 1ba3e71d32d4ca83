"""Figure 8: ``ledger`` and ``shares`` of a big project through the API, first call and warm.

The node starts from a copy of a store holding one project with C contributions and E
endorsements by its maintainer. Each repetition starts the node three times: calling
``ledger`` first, then ``shares`` first, the moment the API answers (then each view W more
times: warm calls), and ``ledger`` first a few seconds after start (once the node's
start-up warming has folded the project). Milliseconds per HTTP call, measured here.

Bare limits, measured in the same run: for the first call, reading the project's records
from SQLite and decoding them with msgpack's C decoder, no node code (what any view of the
project must at least do); for warm calls, ``GET /api/v1/peers`` (an API call that touches
neither the store nor a view: the HTTP floor).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from bench import data
from bench.common import log, make_home, ratio, start_node, stop_nodes, summary, wait_ready


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - started)


def bare_cold(db: Path, pid: bytes) -> float:
    """ms to read the project's records from SQLite and decode each with msgpack."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT raw FROM records WHERE project = (SELECT n FROM scopes WHERE name = ?)",
        (pid.hex(),),
    ).fetchall()
    values = [msgpack.unpackb(raw) for (raw,) in rows]
    conn.close()
    assert len(values) > 1
    return 1000 * (time.perf_counter() - started)


def run(size: dict[str, Any]) -> dict[str, Any]:
    c, e, warm = size["views_contributions"], size["views_endorsements"], size["views_warm"]
    template = data.template_store("views", c, e)
    pid = data.genesis("views").id.hex()
    root = Path(tempfile.mkdtemp(prefix="commons-bench-views-"))
    first: dict[str, list[float]] = {"ledger": [], "shares": [], "settled": []}
    settle = size["views_settle"]
    warm_ms: dict[str, list[float]] = {"ledger": [], "shares": [], "floor": []}
    bare: list[float] = []
    paths = {
        "ledger": f"/api/v1/projects/{pid}/ledger",
        "shares": f"/api/v1/projects/{pid}/shares",
    }
    try:
        for rep in range(size["reps"]):
            for view in ("ledger", "shares", "settled"):
                node = make_home(root, f"views-{rep}-{view}", template_db=template)
                try:
                    bare.append(bare_cold(node.home / "ledger.db", bytes.fromhex(pid)))
                    start_node(node)
                    wait_ready([node])
                    if view == "settled":
                        time.sleep(settle)
                        first[view].append(
                            _timed(lambda n=node: n.get(paths["ledger"], timeout=120))
                        )
                        continue
                    first[view].append(_timed(lambda v=view, n=node: n.get(paths[v], timeout=120)))
                    for _ in range(warm):
                        for name, path in paths.items():
                            warm_ms[name].append(_timed(lambda p=path, n=node: n.get(p)))
                        warm_ms["floor"].append(_timed(lambda n=node: n.get("/api/v1/peers")))
                finally:
                    stop_nodes([node])
            log(
                f"views rep {rep + 1}: first ledger {first['ledger'][-1]:.0f} ms, first shares"
                f" {first['shares'][-1]:.0f} ms, bare cold {bare[-1]:.0f} ms"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"contributions": c, "endorsements": e}
    bare_s = summary(bare)
    floor = summary(warm_ms["floor"])
    for view in ("ledger", "shares"):
        f, w = summary(first[view]), summary(warm_ms[view])
        out[view] = {
            "first_ms": f,
            "warm_ms": w,
            "first_ratio": ratio(f["median"], bare_s["median"]),
            "warm_ratio": ratio(w["median"], floor["median"]),
        }
    settled = summary(first["settled"])
    out["ledger_after_start"] = {
        "seconds_after_start": settle,
        "first_ms": settled,
        "first_ratio": ratio(settled["median"], bare_s["median"]),
    }
    out["bare_cold_ms"] = bare_s
    out["http_floor_ms"] = floor
    out["target"] = "<= 100 ms per call"
    return out
