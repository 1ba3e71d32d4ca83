"""The signature helper process: its pipe format, its life, and the node's fallback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import trio
from test_node import wait_until

from node.metrics import Metrics
from node.store.sqlite import Store
from node.sync._verifier_helper import MAX_REQUEST_ITEMS, READY, encode_request, verify_request
from node.sync.admission import validate_batch
from node.sync.ingest import HELPER_BATCH, Ingestor, Pipeline
from node.sync.verifier import Verifier, helper_command
from protocol.record import Record
from protocol.testing import RecordFactory

NOW = 1_900_000_000_000
SMALL_ORDER_KEY = bytes([1]) + bytes(31)


def _items(records: list[Record]) -> list[tuple[bytes, bytes, bytes]]:
    return [(r.author, r.signing_input(), r.sig) for r in records]


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def test_the_helper_judges_each_item_as_verify_does(f: RecordFactory) -> None:
    project = f.project("alice")
    good = f.contribution("bob", project)
    key, message, sig = _items([good])[0]
    items = [
        (key, message, sig),
        (key, message + b"x", sig),  # another message
        (key, message, _flip(sig, 5)),  # R damaged
        (key, message, sig[:32] + bytes([0xFF]) * 32),  # S >= L
        (f.pub("alice"), message, sig),  # another author
        (SMALL_ORDER_KEY, message, sig),  # small-order key: libsodium refuses it
        (key, b"", sig),
    ]
    request = encode_request(items)
    assert verify_request(request[4:]) == bytes([1, 0, 0, 0, 0, 0, 0])
    assert verify_request(encode_request([])[4:]) == b""


def test_a_malformed_request_is_refused_at_every_cut(f: RecordFactory) -> None:
    records = [f.project("alice"), f.project("bob", name="Two")]
    body = encode_request(_items(records))[4:]
    assert verify_request(body) == b"\x01\x01"
    for cut in range(len(body)):
        with pytest.raises(ValueError, match="request"):
            verify_request(body[:cut])
    with pytest.raises(ValueError, match="after the last item"):
        verify_request(body + b"\x00")
    with pytest.raises(ValueError, match="items in a request"):
        verify_request((MAX_REQUEST_ITEMS + 1).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="items, at most"):
        encode_request(_items(records[:1]) * (MAX_REQUEST_ITEMS + 1))
    with pytest.raises(ValueError, match="32 bytes"):
        encode_request([(b"short", b"m", bytes(64))])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_helper_starts_when_wanted_and_stops_when_idle(f: RecordFactory) -> None:
    metrics = Metrics()
    verifier = Verifier(metrics, idle=0.5)
    project = f.project("alice")
    records = [f.contribution("bob", project, title=f"c{i}") for i in range(50)]
    items = _items(records)
    items[7] = (items[7][0], items[7][1] + b"!", items[7][2])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(verifier.run)
        assert await verifier.verify(items) is None  # not running yet: asked for
        await wait_until(lambda: verifier.ready)
        pid = verifier.pid
        assert pid is not None
        verdicts = await verifier.verify(items)
        assert verdicts == [i != 7 for i in range(50)]
        assert metrics.get("commons_verifier_records_total") == 50
        # Nothing more to do: after the idle time the helper is stopped and reaped.
        await wait_until(lambda: verifier.pid is None)
        assert not verifier.ready
        assert not _pid_alive(pid)
        verifier.want()
        await wait_until(lambda: verifier.ready)
        assert await verifier.verify(items[:3]) == [True, True, True]
        assert metrics.get("commons_verifier_starts_total") == 2
        nursery.cancel_scope.cancel()
    assert metrics.total("commons_verifier_failures_total") == 0


_IMPOSTOR = """\
import pathlib, sys
pathlib.Path({marker!r}).write_text(" ".join(sys.argv))
sys.stdout.buffer.write(b"R")  # claims to be ready, then says every signature is good
sys.stdout.buffer.flush()
while True:
    head = sys.stdin.buffer.read(8)
    if len(head) < 8:
        break
    size = int.from_bytes(head[:4], "little")
    count = int.from_bytes(head[4:], "little")
    sys.stdin.buffer.read(size - 4)
    sys.stdout.buffer.write(b"\\x01" * count)
    sys.stdout.buffer.flush()
"""


async def test_the_helper_never_runs_code_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, f: RecordFactory
) -> None:
    """A node started in a folder that holds a ``node`` package (a checkout of something
    else, a downloaded archive) runs its own helper, not that package: neither the working
    directory nor PYTHONPATH reaches the helper's ``sys.path``."""
    marker = tmp_path / "impostor-ran"
    for where in ("cwd", "pythonpath"):
        package = tmp_path / where / "node"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(_IMPOSTOR.format(marker=str(marker)))
        (package / "_verifier_helper.py").write_text(_IMPOSTOR.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "pythonpath"))
    project = f.project("alice")
    good = f.contribution("bob", project)
    forged = (good.author, good.signing_input() + b"!", good.sig)
    verifier = Verifier(Metrics(), idle=0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(verifier.run)
        verifier.want()
        await wait_until(lambda: verifier.ready)
        # The impostor would call the forged signature good; the real helper does not.
        assert await verifier.verify([_items([good])[0], forged]) == [True, False]
        nursery.cancel_scope.cancel()
    assert not marker.exists()


def _mixed_batch(f: RecordFactory, n: int, seed: int) -> tuple[list[bytes], set[int]]:
    """``n`` raw records, a few of them broken in different ways; the broken indexes."""
    rng = random.Random(seed)
    project = f.project("alice")
    raws = [project.raw] + [
        f.contribution(f"user{i % 7}", project, title=f"work {i}").raw for i in range(n - 1)
    ]
    broken: set[int] = set()
    for i in rng.sample(range(1, n), 12):
        raw = raws[i]
        how = rng.choice(["sig", "body", "truncate"])
        if how == "sig":
            raws[i] = _flip(raw, raw.find(b"\xa3sig\xc4\x40") + 10)
        elif how == "body":
            raws[i] = _flip(raw, raw.find(b"work") + 1)  # signed text changed
        else:
            raws[i] = raw[:-3]
        broken.add(i)
    return raws, broken


async def test_ingest_with_the_helper_decides_exactly_as_the_threads(
    tmp_path: os.PathLike[str], f: RecordFactory
) -> None:
    """The sync client's pipeline with the helper running: the same records stored and the
    same refusals as validating everything here; a single ``ingest`` call keeps to threads."""
    raws, broken = _mixed_batch(f, 3 * HELPER_BATCH, seed=4)
    refuse = raws[5]  # valid, but refused by the node's own rule

    def accept(record: Record) -> str | None:
        return "not-followed: test" if record.raw == refuse else None

    expected_good, expected_bad = validate_batch(raws, NOW, accept)
    assert {i for i, _ in expected_bad} == broken | {5}
    metrics = Metrics()
    verifier = Verifier(metrics, idle=30)
    with Store.open(f"{tmp_path}/ledger.db") as store:
        ingestor = Ingestor(
            store, now_ms=lambda: NOW, metrics=metrics, accept=accept, verifier=verifier
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier.run)
            ingestor.expect(len(raws))
            await wait_until(lambda: verifier.ready)
            cut = len(raws) // 2 + 7
            pipeline = Pipeline(ingestor, nursery, source="sync")
            assert await pipeline.feed(raws[:cut]) == ([], None)
            refused_a, stored_a = await pipeline.feed(raws[cut:])
            assert stored_a is None  # waiting for more records, to be stored with them
            refused_b, stored_b = await pipeline.flush()
            by_helper = metrics.get("commons_verifier_records_total")
            assert by_helper > 0
            single = await ingestor.ingest(raws[:HELPER_BATCH], source="api")
            assert single.new == []  # all stored already
            assert len(single.duplicates) + len(single.rejected) == HELPER_BATCH
            assert metrics.get("commons_verifier_records_total") == by_helper
            nursery.cancel_scope.cancel()
        assert stored_b is not None
        assert refused_a + refused_b == expected_bad
        new = [r.id for r in stored_b.new]
        assert new == [r.id for _, r in expected_good]
        assert store.count() == len(expected_good)


async def test_a_helper_that_hangs_is_killed_and_loses_nothing(
    tmp_path: os.PathLike[str], f: RecordFactory
) -> None:
    """The helper takes requests but never answers: the node kills it after its answer time
    and verifies the batches itself, with the same verdicts."""
    raws, broken = _mixed_batch(f, 2 * HELPER_BATCH, seed=9)
    metrics = Metrics()
    verifier = Verifier(metrics, idle=30, answer_within=0.5)
    with Store.open(f"{tmp_path}/ledger.db") as store:
        ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=metrics, verifier=verifier)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier.run)
            ingestor.expect(len(raws))
            await wait_until(lambda: verifier.ready)
            pid = verifier.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            pipeline = Pipeline(ingestor, nursery, source="sync")
            half = len(raws) // 2
            assert await pipeline.feed(raws[:half]) == ([], None)
            assert verifier.backlog > 0
            refused_a, stored_a = await pipeline.feed(raws[half:])
            refused_b, stored_b = await pipeline.flush()
            await wait_until(lambda: verifier.pid is None)
            assert not _pid_alive(pid)
            nursery.cancel_scope.cancel()
        assert metrics.get("commons_verifier_failures_total") == 1
        assert stored_a is None
        assert stored_b is not None
        assert {i for i, _ in refused_a + refused_b} == broken
        assert len(stored_b.new) == len(raws) - len(broken)
        assert store.count() == len(raws) - len(broken)


async def test_a_helper_killed_mid_request_answers_none(f: RecordFactory) -> None:
    metrics = Metrics()
    verifier = Verifier(metrics, idle=30)
    project = f.project("alice")
    items = _items([f.contribution("bob", project, title=f"c{i}") for i in range(4000)])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(verifier.run)
        verifier.want()
        await wait_until(lambda: verifier.ready)
        pid = verifier.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        ticket = verifier.submit(items)
        assert ticket is not None
        os.kill(pid, signal.SIGKILL)
        assert await verifier.answer(ticket) is None
        assert verifier.submit(items) is None  # stopped: callers verify themselves
        nursery.cancel_scope.cancel()
    assert metrics.get("commons_verifier_failures_total") == 1


def test_the_helper_leaves_quietly_when_the_node_is_gone(f: RecordFactory) -> None:
    """A node killed mid-catch-up leaves its helper writing into a closed pipe: the helper
    exits at once, without a traceback."""
    project = f.project("alice")
    request = encode_request(
        _items([f.contribution("bob", project, title=f"c{i}") for i in range(2000)])
    )
    helper = subprocess.Popen(
        helper_command(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert helper.stdout is not None
    assert helper.stdin is not None
    assert helper.stdout.read(1) == READY
    helper.stdin.write(request)
    helper.stdin.flush()
    helper.stdout.close()
    helper.stdin.close()
    assert helper.wait(timeout=20) == 0
    assert helper.stderr is not None
    assert helper.stderr.read() == b""
    helper.stderr.close()


def test_the_helper_outlives_a_signal_to_the_group_and_leaves_when_told() -> None:
    """Ctrl-C or a service manager's SIGTERM reaches the node's whole process group: the
    helper stays until the node, stopping, closes its input (dying at the signal made the
    node log a failure while it stopped)."""
    helper = subprocess.Popen(helper_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert helper.stdout is not None
    assert helper.stdin is not None
    assert helper.stdout.read(1) == READY
    for sig in (signal.SIGINT, signal.SIGTERM):
        helper.send_signal(sig)
    with pytest.raises(subprocess.TimeoutExpired):
        helper.wait(timeout=0.5)
    helper.stdin.close()
    assert helper.wait(timeout=20) == 0
    helper.stdout.close()
