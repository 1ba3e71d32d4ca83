"""The small shared helpers at the bottom of node/: one copy of each rule that several layers
need (exception-group unwrapping, the millisecond clock, glibc's allocator calls, and
completing a multiaddr with its peer id)."""

from __future__ import annotations

import time

import pytest
import trio

from node import memory
from node.clock import now_ms
from node.net.transport import dialable
from node.trio_util import leaves, open_unwrapping_nursery, raise_single, real_leaves


async def _fail(exc: BaseException) -> None:
    raise exc


async def _one_failure(boom: BaseException) -> None:
    async with open_unwrapping_nursery() as nursery:
        nursery.start_soon(_fail, boom)
        nursery.start_soon(trio.sleep_forever)  # cancelled: not news


async def _two_failures() -> None:
    async with open_unwrapping_nursery() as nursery:
        nursery.start_soon(_fail, ValueError("a"))
        nursery.start_soon(_fail, KeyError("b"))


async def test_a_single_failure_leaves_the_nursery_bare_with_its_own_context() -> None:
    boom = ValueError("boom")
    with pytest.raises(ValueError, match="boom") as caught:
        await _one_failure(boom)
    assert caught.value is boom
    assert not isinstance(caught.value.__context__, BaseExceptionGroup)


async def test_several_failures_stay_a_group() -> None:
    with pytest.RaisesGroup(ValueError, KeyError, flatten_subgroups=True):
        await _two_failures()


def test_nested_groups_are_flattened_and_cancellations_set_aside() -> None:
    inner = ValueError("inner")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("mid", [inner]), KeyError("k")])
    assert leaves(group) == [inner, group.exceptions[1]]
    cancelled = trio.Cancelled._create()
    assert real_leaves(BaseExceptionGroup("m", [cancelled, inner])) == [inner]
    assert real_leaves(BaseExceptionGroup("c", [cancelled])) == [cancelled]
    with pytest.raises(ValueError, match="inner"):
        raise_single(BaseExceptionGroup("one", [BaseExceptionGroup("deeper", [inner])]))
    with pytest.raises(BaseExceptionGroup):
        raise_single(group)


def test_now_ms_is_the_wall_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    stamp = now_ms()
    assert isinstance(stamp, int)
    assert before <= stamp <= time.time_ns() // 1_000_000


def test_glibc_calls_are_harmless_and_idempotent() -> None:
    memory.fix_mmap_threshold()
    memory.fix_mmap_threshold()
    memory.malloc_trim()
    assert memory.MMAP_THRESHOLD == 128 * 1024


def test_a_frozen_heap_is_left_out_of_collections_until_thawed() -> None:
    """``freeze_heap`` moves what is alive to the permanent generation (a full collection
    then walks none of it); ``thaw_heap`` gives it back."""
    import gc

    held = [[i] for i in range(1000)]
    memory.freeze_heap()
    try:
        assert gc.get_freeze_count() >= len(held)
    finally:
        memory.thaw_heap()
    assert gc.get_freeze_count() == 0


def test_dialable_appends_the_peer_id_once() -> None:
    peer = "12D3KooWExample"
    assert dialable("/ip4/127.0.0.1/tcp/4001", peer) == f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"
    full = f"/ip4/127.0.0.1/tcp/4001/p2p/{peer}"
    assert dialable(full, peer) == full
