"""Figure 8: ``ledger`` and ``shares`` of a big project through the API, first call and warm.

Two projects, each in a store the node starts from (a copy of a cached one), milliseconds per
HTTP call measured here:

* C contributions by 50 authors and E endorsements by the maintainer. Each repetition starts
  the node three times: calling ``ledger`` first, then ``shares`` first, the moment the API
  answers (then each view W more times: warm calls), and ``ledger`` first a few seconds after
  start (once the node's start-up warming has read the project).
* A history of N attested contributions by A authors, shaped as ``commons import-git`` makes
  them (1,000,000 by 20,000 in the full run: issue 16's Linux scale): the node starts twice,
  calling ``ledger`` first, then ``shares`` first, the moment the API answers, then warm.
* The same history while an empty node catches up with it, asked all along
  (:mod:`bench.fig_views_sync`).

Nothing was shown before on these stores: no fold, no snapshot; the views read the tallies the
store keeps at insert time (node.store.tally). Bare limits, measured in the same run: for the
first call, reading what the answer needs from SQLite without node code (the project's records
decoded with msgpack's C decoder for the first project, what any fold must at least do; the
per-participant tally rows and one page of records, unpacked with msgpack, for the attested
history); for warm calls, ``GET /api/v1/peers`` (an API call that touches neither the store
nor a view: the HTTP floor). Also reported: each store's size and bytes per record against
the records' own bytes.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack

from bench import data, fig_views_sync
from bench.common import log, make_home, ratio, start_node, stop_nodes, summary, wait_ready
from node.store.schema import CONTRIBUTION


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - started)


def _answered(node: Any, path: str, timeout: float = 60.0) -> tuple[float, float]:
    """ms until the last byte of the answer arrived, and until the client had parsed it
    (the round trip the earlier runs reported): the node's part, and the client's too."""
    started = time.perf_counter()
    with urllib.request.urlopen(node.api + path, timeout=timeout) as response:
        payload = response.read()
    received = time.perf_counter()
    json.loads(payload)
    return 1000 * (received - started), 1000 * (time.perf_counter() - started)


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


def bare_tallied(db: Path, pid: bytes) -> float:
    """ms to read a project's tally rows and its newest page of 1,000 contributions from
    SQLite and unpack those records with msgpack: what answering from the tallies reads."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    number = conn.execute("SELECT n FROM scopes WHERE name = ?", (pid.hex(),)).fetchone()[0]
    tallies = conn.execute(
        "SELECT u.key, u.handle, t.parts, t.contributions, t.minutes FROM tallies AS t"
        " JOIN units AS u ON u.n = t.unit WHERE t.project = ?",
        (number,),
    ).fetchall()
    rows = conn.execute(
        f"SELECT raw FROM records WHERE scope = ? AND kind = {CONTRIBUTION}"
        " ORDER BY ts DESC, id DESC LIMIT 1000",
        (number,),
    ).fetchall()
    values = [msgpack.unpackb(raw) for (raw,) in rows]
    conn.close()
    assert tallies
    assert values
    return 1000 * (time.perf_counter() - started)


def attested(root: Path, size: dict[str, Any]) -> dict[str, Any]:
    """First ``ledger`` and ``shares`` right after start on the attested history, and warm."""
    n, authors = size["views_attested"], size["views_attested_authors"]
    template = data.attested_store("linux", n, authors)
    raws = data.attested_records("linux", n, authors)
    pid = data.genesis("linux").id
    paths = {view: f"/api/v1/projects/{pid.hex()}/{view}" for view in ("ledger", "shares")}
    first: dict[str, list[float]] = {"ledger": [], "shares": []}
    warm: dict[str, list[float]] = {"ledger": [], "shares": []}
    # The same calls to the answer's last byte, before the client parses it.
    first_answer: dict[str, list[float]] = {"ledger": [], "shares": []}
    warm_answer: dict[str, list[float]] = {"ledger": [], "shares": []}
    bare: list[float] = []
    for rep in range(size["reps"]):
        for view in ("ledger", "shares"):
            node = make_home(root, f"attested-{rep}-{view}", template_db=template)
            try:
                bare.append(bare_tallied(node.home / "ledger.db", pid))
                start_node(node)
                wait_ready([node], timeout=300)
                answer, parsed = _answered(node, paths[view], timeout=120)
                first_answer[view].append(answer)
                first[view].append(parsed)
                for _ in range(size["views_warm"]):
                    for name, path in paths.items():
                        answer, parsed = _answered(node, path)
                        warm_answer[name].append(answer)
                        warm[name].append(parsed)
            finally:
                stop_nodes([node])
            log(
                f"views attested rep {rep + 1}: first {view} {first_answer[view][-1]:.0f} ms"
                f" answered, {first[view][-1]:.0f} ms parsed"
            )
    bare_s = summary(bare)
    raw = sum(map(len, raws)) / len(raws)
    out: dict[str, Any] = {"contributions": n, "authors": authors, "bare_ms": bare_s}
    for view in ("ledger", "shares"):
        f = summary(first[view])
        out[view] = {
            "first_ms": f,
            "warm_ms": summary(warm[view]),
            "first_answer_ms": summary(first_answer[view]),
            "warm_answer_ms": summary(warm_answer[view]),
            "first_ratio": ratio(f["median"], bare_s["median"]),
        }
    out["store_bytes"] = template.stat().st_size
    out["disk_bytes_per_record"] = template.stat().st_size / len(raws)
    out["raw_bytes_per_record"] = raw
    out["disk_ratio"] = ratio(out["disk_bytes_per_record"], raw)
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
        history = attested(root, size)
        during = fig_views_sync.run(root, size)
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
    out["attested"] = history
    out["during_catchup"] = during
    out["store_bytes"] = template.stat().st_size
    out["http_floor_ms"] = floor
    out["target"] = "<= 100 ms per call"
    return out
