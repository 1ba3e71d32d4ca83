"""Figure 8: ``ledger`` and ``shares`` of a big project through the API, first call and warm.

The node starts from a copy of a store holding one project with C contributions and E
endorsements by its maintainer. Milliseconds per HTTP call, measured here, in two situations:

* Never shown before: the store holds no view snapshot of the project. Each repetition starts
  the node three times: calling ``ledger`` first, then ``shares`` first, the moment the API
  answers (then each view W more times: warm calls), and ``ledger`` first a few seconds after
  start (once the node's start-up warming has folded the project).
* After a restart: the node has run once on the store, answered ``ledger`` (so it folded the
  project) and stopped cleanly, which writes the project's view snapshot; then it starts
  again and ``ledger`` is called the moment the API answers; then once more for ``shares``.

Bare limits, measured in the same run: for the first call when never shown, reading the
project's records from SQLite and decoding them with msgpack's C decoder, no node code (what
any fold of the project must at least do); for the first call after a restart, reading the
stored snapshot from SQLite, inflating and unpacking it (what answering from it must at least
do); for warm calls, ``GET /api/v1/peers`` (an API call that touches neither the store nor a
view: the HTTP floor). Also reported: the snapshot's size in the store and the store's size.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
import zlib
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


def _snapshot_row(db: Path, pid: bytes) -> bytes | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT data FROM view_snapshots WHERE project = (SELECT n FROM scopes WHERE name = ?)",
            (pid.hex(),),
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0])


def bare_snapshot(db: Path, pid: bytes) -> float:
    """ms to read the project's stored view snapshot from SQLite, inflate and unpack it."""
    started = time.perf_counter()
    data = _snapshot_row(db, pid)
    assert data is not None
    ids, keys, packed = msgpack.unpackb(data)  # the ids and keys are stored as they are
    value = msgpack.unpackb(zlib.decompress(packed), strict_map_key=False)
    assert value
    assert ids
    assert keys
    return 1000 * (time.perf_counter() - started)


def restarted(root: Path, name: str, template: Path, pid: str) -> dict[str, float]:
    """First ``ledger``, then ``shares``, each right after a restart of a node that has shown
    the project once before and stopped cleanly (ms), and the bare snapshot read (ms)."""
    node = make_home(root, name, template_db=template)
    db = node.home / "ledger.db"
    out: dict[str, float] = {}
    try:
        start_node(node)
        wait_ready([node])
        node.get(f"/api/v1/projects/{pid}/ledger", timeout=120)  # the node folds the project
        for view in ("ledger", "shares"):
            stop_nodes([node])  # a clean stop writes the snapshot of that fold
            if _snapshot_row(db, bytes.fromhex(pid)) is None:
                raise RuntimeError(f"{name}: the node stopped without writing a snapshot")
            out.setdefault("bare", bare_snapshot(db, bytes.fromhex(pid)))
            node.port = 0  # a fresh listening port for the next run
            start_node(node)
            wait_ready([node])
            path = f"/api/v1/projects/{pid}/{view}"
            out[view] = _timed(lambda p=path: node.get(p, timeout=120))
        out["snapshot_bytes"] = len(_snapshot_row(db, bytes.fromhex(pid)) or b"")
    finally:
        stop_nodes([node])
    return out


def run(size: dict[str, Any]) -> dict[str, Any]:
    c, e, warm = size["views_contributions"], size["views_endorsements"], size["views_warm"]
    template = data.template_store("views", c, e)
    pid = data.genesis("views").id.hex()
    root = Path(tempfile.mkdtemp(prefix="commons-bench-views-"))
    first: dict[str, list[float]] = {"ledger": [], "shares": [], "settled": []}
    settle = size["views_settle"]
    warm_ms: dict[str, list[float]] = {"ledger": [], "shares": [], "floor": []}
    bare: list[float] = []
    after_restart: dict[str, list[float]] = {"ledger": [], "shares": []}
    bare_snap: list[float] = []
    snapshot_bytes = 0
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
            again = restarted(root, f"views-{rep}-restart", template, pid)
            for view in ("ledger", "shares"):
                after_restart[view].append(again[view])
            bare_snap.append(again["bare"])
            snapshot_bytes = int(again["snapshot_bytes"])
            log(
                f"views rep {rep + 1}: first ledger {first['ledger'][-1]:.0f} ms, first shares"
                f" {first['shares'][-1]:.0f} ms, bare cold {bare[-1]:.0f} ms; after a restart:"
                f" ledger {again['ledger']:.0f} ms, shares {again['shares']:.0f} ms, bare"
                f" snapshot read {again['bare']:.0f} ms"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"contributions": c, "endorsements": e}
    bare_s = summary(bare)
    bare_snap_s = summary(bare_snap)
    floor = summary(warm_ms["floor"])
    for view in ("ledger", "shares"):
        f, w, r = summary(first[view]), summary(warm_ms[view]), summary(after_restart[view])
        out[view] = {
            "first_ms": f,
            "warm_ms": w,
            "first_ratio": ratio(f["median"], bare_s["median"]),
            "warm_ratio": ratio(w["median"], floor["median"]),
            "after_restart_ms": r,
            "after_restart_ratio": ratio(r["median"], bare_snap_s["median"]),
        }
    settled = summary(first["settled"])
    out["ledger_after_start"] = {
        "seconds_after_start": settle,
        "first_ms": settled,
        "first_ratio": ratio(settled["median"], bare_s["median"]),
    }
    out["bare_cold_ms"] = bare_s
    out["bare_snapshot_ms"] = bare_snap_s
    out["snapshot_bytes"] = snapshot_bytes
    out["store_bytes"] = template.stat().st_size
    out["http_floor_ms"] = floor
    out["target"] = "<= 100 ms per call"
    return out
