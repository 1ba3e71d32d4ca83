"""Figure 1: ingest rate of the node's paths against the bare limit, in this process.

Bare limit: the same records, decoded with msgpack's C decoder, verified with libsodium
(``crypto_sign_open`` over the signing input rebuilt by msgpack), hashed with SHA-256 and
inserted into SQLite (the node's schema, WAL, ``synchronous=FULL``, one transaction per 1000)
by a plain loop with no node code; once on one thread and once with the decode+verify split
over two threads (libsodium releases the GIL). The better of the two is the limit.

Node paths: ``commons import`` (``node.cli.bundles._import_into``, the code the command
runs); the sync receive path (``node.sync.ingest.Pipeline`` over ``Ingestor``, fed frames packed
exactly as a sync server packs them, as the sync client feeds it, with the node's signature
helper process running, as it does during a catch-up); and one ``Ingestor.ingest`` call per
frame (what a pushed frame or an API submission takes: threads only).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings

from bench import data
from bench.common import log, ratio, summary

DOMAIN = b"commons-record-v1\x00"
BARE_BATCH = 1000
META_KINDS = {"project", "project-update", "profile"}


def _bare_check(raws: list[bytes]) -> list[tuple[Any, ...]]:
    rows = []
    for raw in raws:
        value = msgpack.unpackb(raw)
        sig = value.pop("sig")
        message = DOMAIN + msgpack.packb(value)
        nacl.bindings.crypto_sign_open(sig + message, value["author"])
        body = value["body"]
        rows.append(
            (
                hashlib.sha256(raw).digest(),
                raw,
                value["kind"],
                value["author"],
                value.get("project"),
                value["ts"],
                body.get("target"),
            )
        )
    return rows


def bare_ingest(raws: list[bytes], db_path: Path, threads: int) -> float:
    """Seconds to verify and store ``raws`` with no node code."""
    from node.store.sqlite import MIGRATIONS

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    scopes: dict[str, int] = {}

    def scope(name: str) -> int:
        n = scopes.get(name)
        if n is None:
            n = conn.execute("INSERT INTO scopes (name) VALUES (?)", (name,)).lastrowid
            scopes[name] = n
        return n

    insert = (
        "INSERT OR IGNORE INTO records (id, raw, kind, author, project, scope, ts, target,"
        " received_at, published) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
    )
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    started = time.perf_counter()
    for start in range(0, len(raws), BARE_BATCH):
        batch = raws[start : start + BARE_BATCH]
        if pool is None:
            rows = _bare_check(batch)
        else:
            half = (len(batch) + 1) // 2
            parts = pool.map(_bare_check, [batch[:half], batch[half:]])
            rows = [row for part in parts for row in part]
        now = int(time.time() * 1000)
        conn.execute("BEGIN IMMEDIATE")
        out = []
        for rid, raw, kind, author, project, ts, target in rows:
            if kind == "project":
                project = rid
            pnum = scope(project.hex()) if project is not None else None
            snum = scope("meta") if kind in META_KINDS or project is None else pnum
            out.append((rid, raw, kind, author, pnum, snum, ts, target, now))
        conn.executemany(insert, out)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    if pool is not None:
        pool.shutdown()
    conn.close()
    return elapsed


def node_import(bundle: Path, db_path: Path) -> float:
    """Seconds for the code of ``commons import`` to import the bundle into a new store."""
    from node.cli.bundlefile import BundleScan
    from node.cli.bundles import _import_into
    from node.policy import Policy
    from node.store.sqlite import Store
    from node.textout import Progress

    with Store.open(db_path) as store:
        started = time.perf_counter()
        scan = BundleScan()
        # The default policy (no blocks, no limits): what a fresh home imports with.
        _import_into(store, Policy(), bundle, scan, Progress("import", stream=io.StringIO()))
        elapsed = time.perf_counter() - started
    assert not scan.rejected, scan.rejected[:3]
    return elapsed


def node_receive(raws: list[bytes], db_path: Path, *, pipelined: bool) -> float:
    """Seconds for the receive path to take the records in sync-sized frames: the sync
    client's :class:`node.sync.ingest.Pipeline` with the signature helper running
    (``pipelined``), or one ``Ingestor.ingest`` call a frame (what a ``push`` to the server
    and the API's submissions take)."""
    import trio

    from node.metrics import Metrics
    from node.store.sqlite import Store
    from node.sync.ingest import Ingestor, Pipeline
    from node.sync.verifier import Verifier
    from protocol.sync import pack_records

    frames = []
    rest = list(raws)
    while rest:
        taken, n = pack_records(rest)
        frames.append(taken)
        del rest[:n]

    async def run(store: Store) -> float:
        metrics = Metrics()
        verifier = Verifier(metrics)
        ingestor = Ingestor(
            store, now_ms=lambda: int(time.time() * 1000), metrics=metrics, verifier=verifier
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier.run)
            if pipelined:  # started before the clock, as the sync client's first want does
                verifier.want()
                with trio.fail_after(30):
                    while not verifier.ready:  # noqa: ASYNC110 - no event to wait on
                        await trio.sleep(0.01)
            elapsed = await timed(ingestor)
            nursery.cancel_scope.cancel()
        return elapsed

    async def timed(ingestor: Ingestor) -> float:
        started = time.perf_counter()
        new = 0
        if pipelined:
            async with trio.open_nursery() as nursery:
                pipeline = Pipeline(ingestor, nursery, source="sync")
                for frame in frames:
                    refused, stored = await pipeline.feed(frame)
                    assert not refused
                    new += len(stored.new) if stored is not None else 0
                refused, stored = await pipeline.flush()
                assert not refused
                new += len(stored.new) if stored is not None else 0
        else:
            for frame in frames:
                result = await ingestor.ingest(frame, source="sync")
                new += len(result.new)
        elapsed = time.perf_counter() - started
        assert new == len(raws), (new, len(raws))
        return elapsed

    with Store.open(db_path) as store:
        return trio.run(run, store)


def run(size: dict[str, Any]) -> dict[str, Any]:
    n = size["ingest_records"]
    reps = size["reps"]
    raws = data.project_records("ingest", n - 1)
    bundle = data.bundle_path("ingest", n - 1)
    results: dict[str, list[float]] = {
        "bare_1t": [],
        "bare_2t": [],
        "import": [],
        "receive": [],
        "ingest_call": [],
    }
    for rep in range(reps):
        for what in results:
            tmp = Path(tempfile.mkdtemp(prefix="commons-bench-ingest-"))
            try:
                db = tmp / "ledger.db"
                if what == "bare_1t":
                    seconds = bare_ingest(raws, db, 1)
                elif what == "bare_2t":
                    seconds = bare_ingest(raws, db, 2)
                elif what == "import":
                    seconds = node_import(bundle, db)
                else:
                    seconds = node_receive(raws, db, pipelined=what == "receive")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            results[what].append(len(raws) / seconds)
        log(
            f"ingest rep {rep + 1}/{reps}: "
            + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items())
        )
    stats = {k: summary(v) for k, v in results.items()}
    limit = max(stats["bare_1t"]["median"] or 0, stats["bare_2t"]["median"] or 0)
    return {
        "records": len(raws),
        "unit": "records/s",
        "bare_limit": limit,
        "bare_1t": stats["bare_1t"],
        "bare_2t": stats["bare_2t"],
        "import": {**stats["import"], "ratio": ratio(stats["import"]["median"], limit)},
        "receive": {**stats["receive"], "ratio": ratio(stats["receive"]["median"], limit)},
        "ingest_call": {
            **stats["ingest_call"],
            "ratio": ratio(stats["ingest_call"]["median"], limit),
        },
        "target": ">= 0.70 of the bare limit",
    }
