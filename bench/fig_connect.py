"""Figure 6: time from dial to a usable connection, against a bare TCP connect.

A real node listens; :mod:`bench.connect_probe` (another process, using the node's own
``node.net.transport``) dials it K times: ``connect`` (TCP + Noise + Yamux), then the first use
(open the sync protocol's stream and exchange ``hello``). The bare limit: TCP connects to the
same port from the same process.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    PROCS,
    PYTHON,
    REPO,
    log,
    make_home,
    name_below,
    ratio,
    start_node,
    stop_nodes,
    summary,
    wait_ready,
    wait_until,
)


def run(size: dict[str, Any]) -> dict[str, Any]:
    count = size["connect_count"]
    root = Path(tempfile.mkdtemp(prefix="commons-bench-connect-"))
    listener = make_home(root, "connect-listener")
    try:
        start_node(listener)
        wait_ready([listener])
        out = root / "probe.json"
        argv = [PYTHON, str(REPO / "bench" / "connect_probe.py")]
        argv += ["--seed-name", name_below("connect-probe", listener.peer_id)]
        argv += ["--addr", listener.addr, "--count", str(count), "--out", str(out)]
        proc = PROCS.start(argv, log_path=root / "probe.log")
        try:
            wait_until(lambda: proc.poll() is not None, 120, 0.1, what="the connect probe")
        finally:
            PROCS.stop(proc)
        if not out.exists():
            raise RuntimeError("connect probe failed: " + (root / "probe.log").read_text()[-2000:])
        result = json.loads(out.read_text())
    finally:
        stop_nodes([listener])
        shutil.rmtree(root, ignore_errors=True)
    connect, usable, tcp = (summary(result[k]) for k in ("connect_ms", "usable_ms", "tcp_ms"))
    log(
        f"connect: {connect['median']:.1f} ms (usable {usable['median']:.1f} ms),"
        f" bare TCP {tcp['median']:.2f} ms"
    )
    return {
        "dials": count,
        "connect_ms": connect,
        "usable_ms": usable,
        "bare_tcp_ms": tcp,
        "ratio": ratio(usable["median"], tcp["median"]),
        "target": "<= 50 ms",
    }
