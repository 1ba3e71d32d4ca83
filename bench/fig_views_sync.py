"""Figure 8, during a sync: ``ledger`` and ``shares`` asked all the time while a node catches up.

An empty node catches up with one holding N attested contributions by A authors (shaped as
``commons import-git`` makes them; 100,000 by 20,000 in the full run), as in figure 2. In one
run nobody asks the empty node anything; in the other, from the moment its API answers until
it holds every record, a client asks the project's ``ledger`` (the default page of 1,000) and
``shares`` one after the other, pausing ``PACE`` seconds between rounds (a call answered 404
before the project's genesis arrived is not counted). Reported: p50, p99 and the greatest of
the calls' milliseconds to the answer's last byte (the node's part) and after the client
parsed it, the catch-up seconds of both runs (what the calls cost the sync), and the load
average around each run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import data
from bench.common import log, make_home, name_below, ratio, start_node, stop_nodes, wait_ready

#: Seconds between two rounds of calls.
PACE = 0.05


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """p50, p99 and the greatest of ``values`` (nearest rank), and how many there are."""
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": rank(0.5), "p99": rank(0.99), "max": ordered[-1], "n": len(ordered)}


def ms(value: float | None) -> str:
    """Milliseconds for the log and the report; ``-`` when no call was answered (a tiny
    catch-up may end before the project's genesis is asked for)."""
    return "-" if value is None else f"{value:.0f} ms"


def _call(api: str, path: str) -> tuple[float, float] | None:
    """ms to the answer's last byte and to its parsed JSON; None for a 404."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(api + path, timeout=60) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    received = time.perf_counter()
    json.loads(payload)
    return 1000 * (received - started), 1000 * (time.perf_counter() - started)


def one(root: Path, template: Path, total: int, name: str, *, asked: bool) -> dict[str, Any]:
    """One catch-up of ``total`` records, with the views asked all along or not at all."""
    full = make_home(root, f"{name}-full", template_db=template, sync_interval=3600)
    empty = make_home(root, name_below(f"{name}-empty", full.peer_id), sync_interval=3600)
    pid = data.genesis("linux").id.hex()
    paths = {view: f"/api/v1/projects/{pid}/{view}" for view in ("ledger", "shares")}
    answered: dict[str, list[float]] = {"ledger": [], "shares": []}
    #: (ms answered, seconds since the empty node's API answered) of every call.
    when: dict[str, list[tuple[float, float]]] = {"ledger": [], "shares": []}
    parsed: dict[str, list[float]] = {"ledger": [], "shares": []}
    try:
        start_node(full)
        wait_ready([full], timeout=300)
        load_before = os.getloadavg()[0]
        start_node(empty, bootstrap=[full.addr])
        wait_ready([empty])
        ready = time.time()
        deadline = time.monotonic() + 900
        while empty.records() < total:
            if time.monotonic() > deadline:
                raise TimeoutError("the catch-up did not end in 900 s")
            if asked:
                for view, path in paths.items():
                    timed = _call(empty.api, path)
                    if timed is not None:
                        answered[view].append(timed[0])
                        when[view].append((timed[0], time.time() - ready))
                        parsed[view].append(timed[1])
            time.sleep(PACE if asked else 0.25)
        with empty.db() as conn:
            (last_ms,) = conn.execute("SELECT max(received_at) FROM records").fetchone()
        out: dict[str, Any] = {
            "seconds": last_ms / 1000 - ready,
            "load": [load_before, os.getloadavg()[0]],
        }
        if asked:
            for view in paths:
                out[view] = {
                    # The first call that found the project: its answers may be in the making.
                    "first_ms": answered[view][0] if answered[view] else None,
                    "answered_ms": percentiles(answered[view]),
                    "parsed_ms": percentiles(parsed[view]),
                    "slowest": sorted(when[view], reverse=True)[:5],
                }
        return out
    finally:
        stop_nodes([full, empty])


def run(root: Path, size: dict[str, Any]) -> dict[str, Any]:
    n, authors = size["views_catchup"], size["views_catchup_authors"]
    template = data.attested_store("linux", n, authors)
    runs: dict[str, list[dict[str, Any]]] = {"quiet": [], "asked": []}
    for rep in range(size["reps"]):
        for mode in ("quiet", "asked"):
            result = one(root, template, n + 1, f"vsync-{rep}-{mode}", asked=mode == "asked")
            runs[mode].append(result)
            log(
                f"views during a catch-up rep {rep + 1}, {mode}: {result['seconds']:.1f} s,"
                f" load {result['load'][0]:.1f}-{result['load'][1]:.1f}"
                + "".join(
                    f", {view} first {ms(result[view]['first_ms'])}"
                    f" p50 {ms(result[view]['answered_ms']['p50'])}"
                    f" p99 {ms(result[view]['answered_ms']['p99'])}"
                    f" max {ms(result[view]['answered_ms']['max'])}"
                    for view in ("ledger", "shares")
                    if view in result
                )
            )
    quiet = min(r["seconds"] for r in runs["quiet"])
    asked = min(r["seconds"] for r in runs["asked"])
    return {
        "contributions": n,
        "authors": authors,
        "runs": runs,
        "catchup_quiet_s": quiet,
        "catchup_asked_s": asked,
        "catchup_ratio": ratio(asked, quiet),
        "target": "<= 100 ms per call at every moment",
    }
