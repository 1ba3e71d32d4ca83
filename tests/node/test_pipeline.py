"""The sync client's ingest pipeline: several frames stored in one transaction, each record
acknowledged only once its transaction has committed, each refusal its own record's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from node.metrics import Metrics
from node.net.transport import Stream
from node.store.sqlite import Store
from node.sync.ingest import Ingestor, IngestResult, Pipeline
from node.sync.syncer import Syncer
from node.trio_util import open_unwrapping_nursery
from protocol import sync
from protocol.record import Record, record_id
from protocol.sync import Hello
from protocol.testing import RecordFactory

NOW = 1_900_000_000_000


def _records(f: RecordFactory, n: int, *, genesis: bool = True) -> list[bytes]:
    """``n`` records of a project: its genesis first (a record of the meta scope, which the
    pipeline stores at once), then contributions; without the genesis, ``n`` contributions."""
    project = f.project("alice")
    work = [f.contribution(f"user{i % 5}", project, title=f"work {i}").raw for i in range(n)]
    return [project.raw, *work[: n - 1]] if genesis else work


class _Spy:
    """Wraps ``store.add``: the size of each transaction, and whether every record the
    ingestor's listeners heard of had committed when they heard."""

    def __init__(self, store: Store, ingestor: Ingestor) -> None:
        self.store = store
        self.sizes: list[int] = []
        self.heard: list[bytes] = []
        self.heard_uncommitted: list[bytes] = []
        add = store.add

        def spy(records: Sequence[Record], **kwargs: bool) -> list[bool]:
            self.sizes.append(len(records))
            return add(records, **kwargs)

        store.add = spy  # type: ignore[method-assign]
        ingestor.on_new(self._listen)

    def _listen(self, records: list[Record], source: str) -> None:
        for record in records:
            self.heard.append(record.id)
            if not self.store.has(record.id):
                self.heard_uncommitted.append(record.id)


def _check_acknowledged(store: Store, stored: IngestResult | None) -> list[bytes]:
    """The ids reported stored by one call, each of them already in the store."""
    if stored is None:
        return []
    ids = [record.id for record in stored.new]
    assert all(store.has(i) for i in ids), "a record was acknowledged before its commit"
    return ids


async def test_frames_are_stored_together_and_acknowledged_after_the_commit(
    store: Store, f: RecordFactory
) -> None:
    raws = _records(f, 280)
    ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=Metrics())
    spy = _Spy(store, ingestor)
    acknowledged: list[bytes] = []
    async with trio.open_nursery() as nursery:
        pipeline = Pipeline(ingestor, nursery, source="sync", coalesce=100)
        for lo in range(0, len(raws), 40):
            refused, stored = await pipeline.feed(raws[lo : lo + 40])
            assert refused == []
            acknowledged += _check_acknowledged(store, stored)
            # Never more waiting than a transaction and a batch: memory stays bounded.
            assert store.count() >= len(raws[: lo + 40]) - 100 - 2 * 40
        assert store.count() < len(raws)  # some still waited for more before the flush
        refused, stored = await pipeline.flush()
        assert refused == []
        acknowledged += _check_acknowledged(store, stored)
    # The first frame holds the project's genesis: stored at once, so that the views show
    # the project while it is small. Then two 40-record frames a transaction (a third would
    # pass 100), the last two at the flush.
    assert spy.sizes == [40, 80, 80, 80]
    assert sorted(acknowledged) == sorted(spy.heard)
    assert len(acknowledged) == len(raws) == store.count()
    assert spy.heard_uncommitted == []


async def test_a_bad_record_in_a_coalesced_transaction_refuses_only_itself(
    store: Store, f: RecordFactory
) -> None:
    raws = _records(f, 90, genesis=False)
    broken = raws[45]
    at = broken.find(b"work") + 1
    raws[45] = broken[:at] + bytes([broken[at] ^ 1]) + broken[at + 1 :]  # signed text changed
    metrics = Metrics()
    ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=metrics)
    spy = _Spy(store, ingestor)
    results: list[tuple[list[tuple[int, str]], IngestResult | None]] = []
    async with trio.open_nursery() as nursery:
        pipeline = Pipeline(ingestor, nursery, source="sync")
        for lo in range(0, len(raws), 30):
            results.append(await pipeline.feed(raws[lo : lo + 30]))
        results.append(await pipeline.flush())
    # The refusal comes back when its frame is finished (the third call), its index counted
    # over every record fed; the other 89 are stored in one transaction at the flush.
    assert [refused for refused, _ in results] == [[], [], [(45, results[2][0][0][1])], []]
    assert results[2][0][0][1].startswith("bad-signature")
    assert [stored is None for _, stored in results] == [True, True, True, False]
    assert spy.sizes == [89]
    assert not store.has(record_id(raws[45]))
    assert store.count() == 89
    assert metrics.total("commons_ingest_rejected_total") == 1


@pytest.mark.parametrize("fail_at", ["begin", "store"])
async def test_a_failure_in_the_pipeline_reaches_the_caller(
    store: Store, f: RecordFactory, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """A store that fails while a transaction is written in the background, or a batch that
    cannot be begun, ends the fetch with that error; nothing is acknowledged."""
    raws = _records(f, 120, genesis=False)
    ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=Metrics())
    results = []

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    if fail_at == "store":
        monkeypatch.setattr(store, "add", broken)

    async def fetch() -> None:
        async with open_unwrapping_nursery() as nursery:
            pipeline = Pipeline(ingestor, nursery, source="sync", coalesce=50)
            for lo in range(0, len(raws), 40):
                if fail_at == "begin" and lo == 80:
                    monkeypatch.setattr(ingestor, "begin", broken)
                results.append(await pipeline.feed(raws[lo : lo + 40]))
            results.append(await pipeline.flush())

    with pytest.raises(OSError, match="disk gone"):
        await fetch()
    assert all(stored is None for _, stored in results)


async def test_records_wait_for_more_only_so_long(
    store: Store, f: RecordFactory, mock_clock: trio.testing.MockClock
) -> None:
    """From a slow peer, a frame's records are stored when the next frame comes, as without
    coalescing; from a fast one, together."""
    raws = _records(f, 160)
    ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=Metrics())
    spy = _Spy(store, ingestor)
    async with trio.open_nursery() as nursery:
        pipeline = Pipeline(ingestor, nursery, source="sync", coalesce=1000, within=5.0)
        for lo in range(0, 80, 20):  # slow: 6 s between two frames
            await pipeline.feed(raws[lo : lo + 20])
            mock_clock.jump(6)
        for lo in range(80, 160, 20):  # fast
            await pipeline.feed(raws[lo : lo + 20])
        await pipeline.flush()
    # The slow frames one at a time (the last of them with the fast ones), the rest at once.
    assert spy.sizes == [20, 20, 20, 20 + 80]
    assert store.count() == 160


async def test_projects_and_identities_are_stored_at_once(store: Store, f: RecordFactory) -> None:
    """A frame that holds records of the meta scope (a project's genesis, a device's link)
    is stored when it is finished, with whatever waited, not coalesced with later frames."""
    work = _records(f, 200, genesis=False)
    link = f.link("bob-paper", "bob-paper", "ticket-1").raw
    raws = [*work[:50], f.project("alice").raw, *work[50:120], link, *work[120:]]
    ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=Metrics())
    spy = _Spy(store, ingestor)
    async with trio.open_nursery() as nursery:
        pipeline = Pipeline(ingestor, nursery, source="sync", coalesce=1000)
        for lo in range(0, len(raws), 40):
            await pipeline.feed(raws[lo : lo + 40])
        await pipeline.flush()
    # Frames of 40: the genesis is the 51st record (second frame), the link the 122nd
    # (fourth): each frame's transaction takes what waited before it.
    assert spy.sizes == [80, 80, len(raws) - 160]
    assert store.count() == len(raws)


class _Pipe:
    """One end of an in-memory byte stream, as a libp2p stream; after ``frames`` big writes
    (a ``recs`` frame each) the next one fails, as when the connection breaks."""

    def __init__(self, end: trio.abc.Stream, frames: int | None = None) -> None:
        self.end = end
        self.frames = frames

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self.end.receive_some(max_bytes)
        except trio.ClosedResourceError:
            return b""

    async def write(self, data: bytes) -> None:
        if self.frames is not None and len(data) > 500_000:
            if self.frames == 0:
                raise trio.BrokenResourceError("the connection broke")
            self.frames -= 1
        await self.end.send_all(data)

    async def close(self) -> None:
        await self.end.aclose()


async def test_records_received_before_a_session_broke_are_stored(
    tmp_path: Path, f: RecordFactory
) -> None:
    """The serving peer's connection breaks after one full ``recs`` frame: the client keeps
    the valid records of that frame (they waited in the pipeline for the next ones)."""
    project = f.project("alice")
    raws = [project.raw] + [
        f.contribution(f"user{i % 9}", project, title=f"work {i}", description="x" * 300).raw
        for i in range(3999)
    ]
    metrics = Metrics()
    with Store.open(tmp_path / "full.db") as full, Store.open(tmp_path / "empty.db") as empty:
        await Ingestor(full, now_ms=lambda: NOW, metrics=metrics).ingest(raws, source="api")

        def syncer(store: Store) -> Syncer:
            async def hello() -> Hello:
                return Hello(follow_all=True, scopes=tuple(sorted({"meta", *store.scopes()})))

            ingestor = Ingestor(store, now_ms=lambda: NOW, metrics=metrics)
            return Syncer(store, ingestor, metrics, hello)

        near, far = trio.testing.memory_stream_pair()
        client = Stream(_Pipe(near), "server", sync.PROTOCOL_ID)  # type: ignore[arg-type]
        server = Stream(_Pipe(far, frames=1), "client", sync.PROTOCOL_ID)  # type: ignore[arg-type]
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(syncer(full).serve, server)
                with pytest.raises(sync.SyncError, match="closed"):
                    await syncer(empty).run_client(client)
        held = empty.count()
        assert 0 < held < len(raws)  # one frame's worth, stored although more were to come
        assert metrics.get("commons_ingest_new_total", source="sync") == held
