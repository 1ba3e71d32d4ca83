"""Figure 10: the dashboard's project page of a big project, rendered by the node.

The node starts from a copy of figure 8's store (one project with C contributions and E
endorsements). Once the project's views are made and held (the state of any node that has
shown the project once), ``GET /projects/ID`` is timed W times: the page with
the project's metadata, the shares chart and table, the contributions-per-month chart and
the first page of the ledger, as HTML.

Bare limit, in the same run: the three JSON calls whose figures the page shows
(``GET /api/v1/projects/ID``, ``.../shares`` and ``.../ledger?limit=50``), one after the
other: what any page of those figures costs before it is written as HTML. The ratio says what
the templates and charts add.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.common import log, make_home, ratio, start_node, stop_nodes, summary, wait_ready

#: Seconds to let the node make the project's views after its first call.
SNAPSHOT_WAIT = 4.0


def _ms(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - started)


def run(size: dict[str, Any]) -> dict[str, Any]:
    c, e, warm = size["views_contributions"], size["views_endorsements"], size["views_warm"]
    template = data.template_store("views", c, e)
    pid = data.genesis("views").id.hex()
    root = Path(tempfile.mkdtemp(prefix="commons-bench-dashboard-"))
    page_ms: list[float] = []
    bare_ms: list[float] = []
    sizes: list[int] = []
    api = [
        f"/api/v1/projects/{pid}",
        f"/api/v1/projects/{pid}/shares",
        f"/api/v1/projects/{pid}/ledger?limit=50",
    ]
    try:
        for rep in range(size["reps"]):
            node = make_home(root, f"dashboard-{rep}", template_db=template)
            try:
                start_node(node)
                wait_ready([node])
                node.get(api[2], timeout=120)  # the fold
                time.sleep(min(SNAPSHOT_WAIT, 1.0 + size["views_settle"]))
                html = node.get(f"/projects/{pid}", timeout=120)  # templates compiled
                sizes.append(len(html))
                for _ in range(max(warm, 3)):
                    page_ms.append(_ms(lambda n=node: n.get(f"/projects/{pid}")))
                    bare_ms.append(sum(_ms(lambda p=p, n=node: n.get(p)) for p in api))
            finally:
                stop_nodes([node])
            log(
                f"dashboard rep {rep + 1}: project page {page_ms[-1]:.1f} ms,"
                f" its three API calls {bare_ms[-1]:.1f} ms"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    page, bare = summary(page_ms), summary(bare_ms)
    return {
        "contributions": c,
        "endorsements": e,
        "page_ms": page,
        "api_calls_ms": bare,
        "ratio": ratio(page["median"], bare["median"]),
        "page_bytes": max(sizes) if sizes else 0,
        "target": "<= 100 ms",
    }
