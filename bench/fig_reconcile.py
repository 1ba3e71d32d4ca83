"""Figure 3: reconciliation of two 100,000-record sets that differ by d records.

In process: the client and server halves of ``/commons/sync/1`` as ``protocol.sync_session``
drives them (the same frames from ``protocol.sync``, the same negentropy frame-size limit and
batching), with every frame encoded so that the bytes are the bytes on the stream. The
server holds d records the client lacks, spread at random (seeded) over the set. Reported:
negentropy round trips and bytes (the reconciliation itself), then the whole session with the
record transfer (hello, neg, want/recs, bye).

End to end (the full run): a node holding all the records and one lacking d of them, as two
processes; the lacking one dials and syncs; the bytes and rounds come from its ``/metrics``.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
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

TARGETS = {
    0: (1, 1024),
    1: (None, 2048),
    10: (3, 16 * 1024),
    100: (None, None),
    1000: (None, 1 << 20),
}


def simulate(
    server_raws: list[bytes], client_raws: list[bytes], ts_of: dict[bytes, int]
) -> dict[str, Any]:
    """One sync session, in memory. Returns rounds, bytes and CPU seconds."""
    import hashlib

    from protocol import negentropy
    from protocol.sync import (
        MAX_WANT,
        Bye,
        Hello,
        Neg,
        Recs,
        Want,
        decode_frame,
        encode_frame,
        pack_records,
        shared_scopes,
    )
    from protocol.sync_session import NEG_FRAME_BUDGET, NEG_FRAME_LIMIT, NEG_ITEM_OVERHEAD

    def ids(raws: list[bytes]) -> dict[bytes, bytes]:
        return {hashlib.sha256(r).digest(): r for r in raws}

    server_map, client_map = ids(server_raws), ids(client_raws)
    scope = "ab" * 32
    started = time.process_time()
    client_storage = negentropy.Storage((ts_of[i], i) for i in client_map)
    server_storage = negentropy.Storage((ts_of[i], i) for i in server_map)
    build = time.process_time() - started

    def wire(frame: Any) -> tuple[int, Any]:
        encoded = encode_frame(frame)
        return len(encoded), decode_frame(encoded[4:])

    total = 0
    started = time.process_time()
    hello = Hello(follow_all=True, scopes=(scope,))
    total += 2 * wire(hello)[0]
    number = shared_scopes(hello, hello).index(scope)
    client = negentropy.Negentropy(client_storage, frame_size_limit=NEG_FRAME_LIMIT)
    server = negentropy.Negentropy(server_storage, frame_size_limit=NEG_FRAME_LIMIT)
    message: bytes | None = client.initiate()
    rounds = 0
    neg_bytes = 0
    payload = 0  # the negentropy messages alone, without the neg frames around them
    while message is not None:
        assert len(message) + NEG_ITEM_OVERHEAD <= NEG_FRAME_BUDGET
        size, frame = wire(Neg(messages={number: message}))
        neg_bytes += size
        reply = server.reconcile(frame.messages[number])
        payload += len(message) + len(reply or b"")
        size, frame = wire(Neg(messages={number: reply or b""}))
        neg_bytes += size
        rounds += 1
        message = client.reconcile(frame.messages[number])
    neg_cpu = time.process_time() - started
    have, need = client.drain()
    total += neg_bytes
    transfer_rounds = 0
    queue = list(need)
    while queue:
        ask = queue[:MAX_WANT]
        size, frame = wire(Want(ids=tuple(ask)))
        total += size
        raws = [server_map[i] for i in frame.ids]
        taken, n = pack_records(raws)
        size, _ = wire(Recs(records=tuple(taken)))
        total += size
        transfer_rounds += 1
        queue = queue[n:]
    total += wire(Bye())[0]
    assert not have
    assert len(need) == len(server_map) - len(client_map)
    return {
        "neg_rounds": rounds,
        "neg_bytes": neg_bytes,
        "neg_message_bytes": payload,
        "total_bytes": total,
        "total_round_trips": 1 + rounds + transfer_rounds,
        "neg_cpu_s": neg_cpu,
        "storage_build_s": build,
    }


def _differ(raws: list[bytes], d: int) -> list[int]:
    """Indexes of the d records the client lacks (never the genesis)."""
    return sorted(random.Random(d).sample(range(1, len(raws)), d)) if d else []


def in_process(raws: list[bytes], ds: list[int], reps: int) -> dict[str, Any]:
    from protocol.record import decode_trusted

    ts_of = {}
    for raw in raws:
        record = decode_trusted(raw)
        ts_of[record.id] = record.ts
    out: dict[str, Any] = {}
    for d in ds:
        lacking = set(_differ(raws, d))
        client = [r for i, r in enumerate(raws) if i not in lacking]
        runs = [simulate(raws, client, ts_of) for _ in range(reps)]
        first = runs[0]
        rt_target, byte_target = TARGETS.get(d, (None, None))
        out[str(d)] = {
            "neg_rounds": first["neg_rounds"],
            "neg_bytes": first["neg_bytes"],
            "neg_message_bytes": first["neg_message_bytes"],
            "total_bytes": first["total_bytes"],
            "total_round_trips": first["total_round_trips"],
            "neg_cpu_ms": summary([1000 * r["neg_cpu_s"] for r in runs]),
            "storage_build_ms": summary([1000 * r["storage_build_s"] for r in runs]),
            "target_rounds": rt_target,
            "target_bytes": byte_target,
            "bytes_ratio": ratio(first["neg_bytes"], byte_target),
        }
        log(
            f"reconcile d={d}: {first['neg_rounds']} rounds, {first['neg_bytes']:,} B negentropy,"
            f" {first['total_bytes']:,} B in all"
        )
    return out


def end_to_end(raws: list[bytes], n: int, ds: list[int], reps: int) -> dict[str, Any]:
    """Two node processes per d: the full one serves, the lacking one dials and syncs."""
    template = data.template_store("big", n - 1)
    root = Path(tempfile.mkdtemp(prefix="commons-bench-reconcile-"))
    out: dict[str, Any] = {}
    full = make_home(root, "reconcile-full", template_db=template, sync_interval=3600)
    nodes = [full]
    try:
        start_node(full)
        wait_ready([full])
        for d in ds:
            samples: list[dict[str, float]] = []
            for rep in range(reps):
                name = name_below(f"reconcile-d{d}-{rep}", full.peer_id)
                node = make_home(root, name, template_db=template, sync_interval=3600)
                lacking = _differ(raws, d)
                if lacking:
                    import hashlib

                    with sqlite3.connect(node.home / "ledger.db") as conn:
                        conn.executemany(
                            "DELETE FROM records WHERE substr(id, 1, 8) = substr(?1, 1, 8)"
                            " AND id = ?1",
                            [(hashlib.sha256(raws[i]).digest(),) for i in lacking],
                        )
                nodes.append(node)
                started = time.monotonic()
                start_node(node, bootstrap=[full.addr])
                wait_ready([node])

                def done(node=node) -> bool:
                    text = node.get("/metrics")
                    return metric(text, "commons_sync_sessions_total") >= 1 and node.records() == n

                wait_until(done, 120, 0.05, what=f"sync of d={d}")
                elapsed = time.monotonic() - started
                text = node.get("/metrics")
                samples.append(
                    {
                        "bytes": metric(text, "commons_sync_sent_bytes_total")
                        + metric(text, "commons_sync_received_bytes_total"),
                        "rounds": metric(text, "commons_sync_rounds_total"),
                        "seconds": elapsed,
                    }
                )
                stop_nodes([node])
            out[str(d)] = {
                "bytes": summary([s["bytes"] for s in samples]),
                "rounds": summary([s["rounds"] for s in samples]),
                "start_to_synced_s": summary([s["seconds"] for s in samples]),
            }
            log(f"reconcile e2e d={d}: {out[str(d)]['bytes']['median']:,.0f} B")
    finally:
        stop_nodes(nodes)
        shutil.rmtree(root, ignore_errors=True)
    return out


def run(size: dict[str, Any]) -> dict[str, Any]:
    n = size["reconcile_records"]
    raws = data.project_records("big", n - 1)
    ds = [d for d in (0, 1, 10, 100, 1000) if d < n // 2]
    result: dict[str, Any] = {"records": n, "in_process": in_process(raws, ds, size["reps"])}
    if size.get("reconcile_e2e"):
        result["end_to_end"] = end_to_end(raws, n, ds, 1)
    return result
