"""The Commons benchmark: each figure of issue 4 beside its bare limit, measured in one run.

    .venv/bin/python bench/run.py [--quick] [--json FILE] [--only FIG[,FIG...]]

(``scripts/bench`` sets up the venv and runs this.) Prints a table and writes every figure as
JSON (default ``bench-out/latest.json``). The full run takes about 15 minutes on 2 cores,
``--quick`` under 3; ``--tiny`` (or ``COMMONS_BENCH_TINY=1``) shrinks everything further for
the smoke test. Every process started is stopped at the end, also on error or interrupt.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PROCS, REPO, log
from bench.fig_views_sync import ms as _ms

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "reps": 3,
        "settle": 3.0,
        "ingest_records": 20_000,
        "catchup_records": 100_000,
        "catchup_attested": 1_000_000,
        "catchup_attested_authors": 20_000,
        "reconcile_records": 100_000,
        "reconcile_e2e": True,
        "prop_nodes": 20,
        "prop_records": 200,
        "prop_rate": 10.0,
        "prop_reps": 2,
        "tput_rate": 400.0,
        "tput_seconds": 60.0,
        "connect_count": 20,
        "idle_records": 100_000,
        "idle_peers": 10,
        "idle_seconds": 60.0,
        "idle_settle": 15.0,
        "views_contributions": 50_000,
        "views_endorsements": 5_000,
        "views_warm": 5,
        "views_settle": 4.0,
        "views_attested": 1_000_000,
        "views_attested_authors": 20_000,
        "views_catchup": 100_000,
        "views_catchup_authors": 20_000,
        "git_commits": 1_000_000,
        "git_authors": 20_000,
        "git_sign_samples": 50_000,
        "git_reimport": False,
        "dht_nodes": 50,
        "dht_clients": 10,
        "dht_degree": 4,
        "dht_lookups": 30,
    },
    "quick": {
        "reps": 2,
        "settle": 2.0,
        "ingest_records": 5_000,
        "catchup_records": 10_000,
        "catchup_attested": 100_000,
        "catchup_attested_authors": 20_000,
        "reconcile_records": 20_000,
        "reconcile_e2e": False,
        "prop_nodes": 8,
        "prop_records": 40,
        "prop_rate": 10.0,
        "prop_reps": 1,
        "tput_rate": 300.0,
        "tput_seconds": 10.0,
        "connect_count": 10,
        "idle_records": 10_000,
        "idle_peers": 3,
        "idle_seconds": 10.0,
        "idle_settle": 3.0,
        "views_contributions": 5_000,
        "views_endorsements": 500,
        "views_warm": 3,
        "views_settle": 2.0,
        "views_attested": 100_000,
        "views_attested_authors": 2_000,
        "views_catchup": 10_000,
        "views_catchup_authors": 2_000,
        "git_commits": 50_000,
        "git_authors": 2_000,
        "git_sign_samples": 20_000,
        "git_reimport": True,
        "dht_nodes": 20,
        "dht_clients": 5,
        "dht_degree": 4,
        "dht_lookups": 6,
    },
    "tiny": {
        "reps": 1,
        "settle": 0.5,
        "ingest_records": 300,
        "catchup_records": 1_000,
        "catchup_attested": 1_000,
        "catchup_attested_authors": 50,
        "reconcile_records": 2_000,
        "reconcile_e2e": False,
        "prop_nodes": 3,
        "prop_records": 3,
        "prop_rate": 10.0,
        "prop_reps": 1,
        "tput_rate": 50.0,
        "tput_seconds": 1.0,
        "connect_count": 2,
        "idle_records": 1_000,
        "idle_peers": 1,
        "idle_seconds": 1.0,
        "idle_settle": 0.5,
        "views_contributions": 300,
        "views_endorsements": 30,
        "views_warm": 1,
        "views_settle": 0.5,
        "views_attested": 1_000,
        "views_attested_authors": 50,
        "views_catchup": 1_000,
        "views_catchup_authors": 50,
        "git_commits": 500,
        "git_authors": 50,
        "git_sign_samples": 500,
        "git_reimport": True,
        "dht_nodes": 8,
        "dht_clients": 4,
        "dht_degree": 2,
        "dht_lookups": 3,
    },
}

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


def _module(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    from bench import (
        fig_catchup,
        fig_connect,
        fig_dashboard,
        fig_dht,
        fig_footprint,
        fig_import_git,
        fig_ingest,
        fig_propagation,
        fig_reconcile,
        fig_throughput,
        fig_views,
    )

    return {
        "ingest": fig_ingest.run,
        "catchup": fig_catchup.run,
        "reconcile": fig_reconcile.run,
        "propagation": fig_propagation.run,
        "throughput": fig_throughput.run,
        "connect": fig_connect.run,
        "idle": fig_footprint.run,
        "views": fig_views.run,
        "import_git": fig_import_git.run,
        "dashboard": fig_dashboard.run,
        "dht": fig_dht.run,
    }[name]


# --------------------------------------------------------------------------------------------
# The table


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits == 0 and abs(value) < 10:
        digits = 2 if abs(value) < 1 else 1
    return f"{value:,.{digits}f}"


def _range(s: dict[str, Any] | None, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "-"
    if s.get("n", 1) <= 1 or s["min"] == s["max"]:
        return _n(s["median"], digits)
    return f"{_n(s['median'], digits)} [{_n(s['min'], digits)}-{_n(s['max'], digits)}]"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    out: list[tuple[str, str, str, str, str]] = []
    r = results.get("ingest")
    if r and "error" not in r:
        limit = f"{_n(r['bare_limit'])}/s"
        out.append(
            (
                "1 ingest: import (rec/s)",
                _range(r["import"]),
                limit,
                _ratio(r["import"]["ratio"]),
                ">= 0.70x",
            )
        )
        out.append(
            (
                "1 ingest: sync receive (pipelined)",
                _range(r["receive"]),
                limit,
                _ratio(r["receive"]["ratio"]),
                ">= 0.70x",
            )
        )
        out.append(
            (
                "1 ingest: one ingest() a frame",
                _range(r["ingest_call"]),
                limit,
                _ratio(r["ingest_call"]["ratio"]),
                ">= 0.70x",
            )
        )
    r = results.get("catchup")
    if r and "error" not in r:
        for v, what in ((r, ""), (r.get("attested"), " attested")):
            if v:
                out.append(
                    (
                        f"2 catch-up of {v['records']:,}{what} (s)",
                        _range(v["seconds"], 1),
                        f"{_range(v['bare_ingest_s'], 1)} s bare ingest",
                        _ratio(v["ratio"]),
                        "<= 1.2x",
                    )
                )
        out.append(
            (
                "2 catch-up: bytes/record on wire",
                _range(r["bytes_per_record"]),
                f"{_n(r['raw_bytes_per_record'])} B record",
                _ratio((r["bytes_per_record"]["median"] or 0) / r["raw_bytes_per_record"]),
                "",
            )
        )
    r = results.get("reconcile")
    if r and "error" not in r:
        for d, v in r["in_process"].items():
            target = []
            if v["target_rounds"]:
                target.append(f"<= {v['target_rounds']} RT")
            if v["target_bytes"]:
                target.append(f"<= {v['target_bytes']:,} B")
            e2e = r.get("end_to_end", {}).get(d)
            extra = f"; e2e {_n(e2e['bytes']['median'])} B" if e2e else ""
            out.append(
                (
                    f"3 reconcile d={d} ({r['records']:,})",
                    f"{v['neg_rounds']} RT, {v['neg_bytes']:,} B",
                    f"all: {v['total_bytes']:,} B{extra}",
                    _ratio(v["bytes_ratio"]),
                    ", ".join(target),
                )
            )
    r = results.get("propagation")
    if r and "error" not in r:
        node, bare = r["node"], r["bare"]
        out.append(
            (
                f"4 propagation p50, {r['nodes']} nodes (ms)",
                _range(node["p50_ms"]),
                f"{_range(bare['p50_ms'])} bare",
                "",
                "",
            )
        )
        out.append(
            (
                "4 propagation p99 (ms)",
                _range(node["p99_ms"]),
                f"{_range(bare['p99_ms'])} bare",
                _ratio(r["p99_ratio"]),
                "<= 100 ms",
            )
        )
        out.append(
            (
                "4 propagation missing records",
                _range(node["missing"]),
                f"{_range(bare['missing'])} bare",
                "",
                "0",
            )
        )
    r = results.get("throughput")
    if r and "error" not in r:
        node, bare = r["node"], r["bare"]
        out.append(
            (
                f"5 throughput A-B-C (rec/s at C, {node['offered_per_s']:.0f} offered)",
                _range(node["rate_at_c_summary"]),
                f"{_range(bare['rate_at_c_summary'])} bare",
                _ratio(r["rate_ratio"]),
                ">= 300/s",
            )
        )
        cpu = node["cpu_ms_per_record"]
        bcpu = bare["cpu_ms_per_record"]
        out.append(
            (
                "5 CPU ms/record A, B (relay), C",
                f"{cpu['A']:.2f}, {cpu['B']:.2f}, {cpu['C']:.2f}",
                f"{bcpu['A']:.2f}, {bcpu['B']:.2f}, {bcpu['C']:.2f} bare",
                _ratio(r["relay_cpu_ratio"]),
                "B <= 1 ms",
            )
        )
        out.append(("5 missing at C after sync", str(node["missing_at_c_after_sync"]), "", "", "0"))
        relayed = r.get("node_relayed")
        if relayed:
            cpu = relayed["cpu_ms_per_record"]
            out.append(
                (
                    "5 throughput, A behind a circuit relay at B (rec/s at C)",
                    _range(relayed["rate_at_c_summary"]),
                    f"{_range(node['rate_at_c_summary'])} gossip line",
                    _ratio(r["relayed_rate_ratio"]),
                    "",
                )
            )
            out.append(
                (
                    "5 relayed: CPU ms/record A, B (relay), C; missing",
                    f"{cpu['A']:.2f}, {cpu['B']:.2f}, {cpu['C']:.2f};"
                    f" {relayed['missing_at_c_after_sync']}",
                    "",
                    "",
                    "",
                )
            )
        batched = r.get("node_batched")
        if batched:
            cpu = batched["cpu_ms_per_record"]
            out.append(
                (
                    "5 throughput, batched API (/api/v1/bundles)",
                    _range(batched["rate_at_c_summary"]),
                    f"{_range(bare['rate_at_c_summary'])} bare",
                    _ratio(r["batched_rate_ratio"]),
                    ">= 300/s",
                )
            )
            out.append(
                (
                    "5 batched: CPU ms/record A, B, C; missing",
                    f"{cpu['A']:.2f}, {cpu['B']:.2f}, {cpu['C']:.2f};"
                    f" {batched['missing_at_c_after_sync']}",
                    "",
                    "",
                    "B <= 1 ms; 0",
                )
            )
    r = results.get("connect")
    if r and "error" not in r:
        out.append(
            (
                "6 connect: dial (ms)",
                _range(r["connect_ms"], 1),
                f"{_range(r['bare_tcp_ms'], 2)} TCP",
                "",
                "",
            )
        )
        out.append(
            (
                "6 connect: dial to usable (ms)",
                _range(r["usable_ms"], 1),
                f"{_range(r['bare_tcp_ms'], 2)} TCP",
                _ratio(r["ratio"]),
                "<= 50 ms",
            )
        )
    r = results.get("idle")
    if r and "error" not in r:
        node, bare = r["node"], r["bare"]
        label = f"7 idle, {r['records']:,} rec, {r['peers']} peers"
        out.append(
            (
                f"{label}: CPU %",
                _n(node["cpu_percent"], 2),
                f"{_n(bare['cpu_percent'], 2)} bare",
                _ratio(r["cpu_ratio"]),
                "<= 1 %",
            )
        )
        out.append(
            (
                f"{label}: RSS MB",
                _n(node["rss_mb"]),
                f"{_n(bare['rss_mb'])} bare",
                _ratio(r["rss_ratio"]),
                f"<= {r['rss_target_mb']} MB",
            )
        )
        out.append(
            (
                "7 disk bytes/record",
                _n(node["disk_bytes_per_record"]),
                f"{_n(bare['raw_bytes_per_record'])} raw",
                _ratio(r["disk_ratio"]),
                "",
            )
        )
    r = results.get("views")
    if r and "error" not in r:
        for view in ("ledger", "shares"):
            v = r[view]
            out.append(
                (
                    f"8 {view}: first call at start, never shown (ms)",
                    _range(v["first_ms"]),
                    f"{_range(r['bare_cold_ms'])} read+decode",
                    _ratio(v["first_ratio"]),
                    "<= 100 ms",
                )
            )
            out.append(
                (
                    f"8 {view}: warm (ms)",
                    _range(v["warm_ms"], 1),
                    f"{_range(r['http_floor_ms'], 1)} HTTP floor",
                    _ratio(v["warm_ratio"]),
                    "<= 100 ms",
                )
            )
        settled = r["ledger_after_start"]
        out.append(
            (
                f"8 ledger: first call {settled['seconds_after_start']:.0f} s after start (ms)",
                _range(settled["first_ms"]),
                f"{_range(r['bare_cold_ms'])} read+decode",
                _ratio(settled["first_ratio"]),
                "<= 100 ms",
            )
        )
    history = (results.get("views") or {}).get("attested")
    if history:
        n = f"{history['contributions']:,}"
        for view in ("ledger", "shares"):
            v = history[view]
            out.append(
                (
                    f"8 {view}: first call at start, {n} attested (ms)",
                    _range(v["first_ms"]),
                    f"{_range(history['bare_ms'])} read tallies+page",
                    _ratio(v["first_ratio"]),
                    "<= 100 ms",
                )
            )
            out.append(
                (f"8 {view}: warm, {n} attested (ms)", _range(v["warm_ms"], 1), "", "", "<= 100 ms")
            )
            if "first_answer_ms" in v:  # to the answer's last byte, before the client parses
                for when, key in (
                    ("first call at start", "first_answer_ms"),
                    ("warm", "warm_answer_ms"),
                ):
                    out.append(
                        (
                            f"8 {view}: {when}, {n} attested, answered (ms)",
                            _range(v[key], 1),
                            "",
                            "",
                            "<= 100 ms",
                        )
                    )
        out.append(
            (
                f"8 disk bytes/record, {n} attested",
                _n(history["disk_bytes_per_record"]),
                f"{_n(history['raw_bytes_per_record'])} raw",
                _ratio(history["disk_ratio"]),
                "<= 1.5x",
            )
        )
    during = (results.get("views") or {}).get("during_catchup")
    if during:
        n = f"{during['contributions']:,}"
        for view in ("ledger", "shares"):
            calls = [run[view]["answered_ms"] for run in during["runs"]["asked"]]
            worst = max(calls, key=lambda c: c["p99"] or 0)
            out.append(
                (
                    f"8 {view}: during a {n} attested catch-up, answered p50/p99",
                    f"{_ms(worst['p50'])} / {_ms(worst['p99'])} (max {_ms(worst['max'])})",
                    "",
                    "",
                    "<= 100 ms",
                )
            )
        out.append(
            (
                f"8 {n} attested catch-up, views asked all along (s)",
                f"{during['catchup_asked_s']:.1f}",
                f"{during['catchup_quiet_s']:.1f} not asked",
                _ratio(during["catchup_ratio"]),
                "",
            )
        )
    r = results.get("import_git")
    if r and "error" not in r:
        slower = min(r["bare_git_log_per_s"]["median"], r["bare_signing_per_s"]["median"])
        out.append(
            (
                f"9 import-git, {r['commits']:,} commits (commits/s)",
                _range(r["import_per_s"]),
                f"{_n(r['bare_git_log_per_s']['median'])} git log,"
                f" {_n(r['bare_signing_per_s']['median'])} signing",
                _ratio(r["ratio"]),
                f">= 0.50x of {_n(slower)}",
            )
        )
        if r["reimport_per_s"]["median"] is not None:
            out.append(
                (
                    "9 import-git again, all held (commits/s)",
                    _range(r["reimport_per_s"]),
                    "",
                    "",
                    "",
                )
            )
    r = results.get("dashboard")
    if r and "error" not in r:
        out.append(
            (
                f"10 dashboard: project page, {_n(r['contributions'])} contributions (ms)",
                _range(r["page_ms"], 1),
                f"{_range(r['api_calls_ms'], 1)} its 3 API calls",
                _ratio(r["ratio"]),
                "<= 100 ms",
            )
        )
    r = results.get("dht")
    if r and "error" not in r:
        lk, ms, wm = r["lookup_ms"], r["messages"], r["warm_lookup_ms"]
        out.append(
            (
                f"11 DHT provider lookup, {r['nodes']} nodes (ms p50/p99)",
                f"{_n(lk['p50'])} / {_n(lk['p99'])}",
                f"{ms['p50']} / {ms['p99']} messages",
                "",
                "",
            )
        )
        out.append(
            (
                "11 the same lookup again, connected (ms p50/p99)",
                f"{_n(wm['p50'])} / {_n(wm['p99'])}",
                "",
                "",
                "",
            )
        )
    for name, value in results.items():
        if isinstance(value, dict) and "error" in value:
            out.append((f"{name}: FAILED", value["error"][:60], "", "", ""))
    return out


def table(results: dict[str, Any]) -> str:
    header = ("figure", "measured: median [min-max]", "bare limit (same run)", "ratio", "target")
    body = rows(results)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(5)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, under 3 minutes")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--json", metavar="FILE", help="write the figures here (default bench-out/latest.json)"
    )
    p.add_argument("--only", metavar="FIGS", help=f"comma-separated subset of {','.join(FIGURES)}")
    args = p.parse_args(argv)
    mode = (
        "tiny"
        if args.tiny or os.environ.get("COMMONS_BENCH_TINY")
        else ("quick" if args.quick else "full")
    )
    size = dict(SIZES[mode])
    override = os.environ.get("COMMONS_BENCH_SIZES")  # JSON, for experiments: {"reps": 1}
    if override:
        size.update(json.loads(override))
    figures = FIGURES if not args.only else [f.strip() for f in args.only.split(",")]
    unknown = set(figures) - set(FIGURES)
    if unknown:
        p.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    out_path = Path(args.json) if args.json else REPO / "bench-out" / "latest.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": mode,
        "sizes": size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_at_start": os.getloadavg(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        for name in figures:
            t0 = time.monotonic()
            log(f"figure {name} ({mode})")
            try:
                results[name] = _module(name)(size)
            except Exception as exc:
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                PROCS.kill_all()
            results.setdefault("durations_s", {})[name] = round(time.monotonic() - t0, 1)
            out_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    finally:
        PROCS.kill_all()
    results["total_s"] = round(time.monotonic() - started, 1)
    results["load_at_end"] = os.getloadavg()
    out_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(table(results))
    print(f"\n{mode} run in {results['total_s']:.0f} s; figures in {out_path}")
    return 1 if any(isinstance(v, dict) and "error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
