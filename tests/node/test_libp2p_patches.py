"""The patch manifest of node/net/_compat: every upstream function a patch overrides, wraps,
re-implements or relies on is fingerprinted (SHA-256 of ``inspect.getsource``), and every
attribute a patch reads is checked on a real host. An upgrade of py-libp2p then fails here,
naming the patch to review, instead of turning the patch into a silent no-op.

To review a patch after an upstream change: read the upstream diff against the patch
module's docstring, adapt the patch, then record the new fingerprint this test prints.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import libp2p.pubsub
import libp2p.stream_muxer.yamux.yamux as yamux
import pytest
import trio
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.swarm import Swarm
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub, ValidationCache
from libp2p.pubsub.rpc_queue import PriorityQueue, RpcQueue
from libp2p.stream_muxer.yamux.yamux import Yamux

import node.net
import node.net._compat
from node.net import ALLOW_VERSION_ENV, Libp2pVersionError, check_libp2p_version
from node.net._compat import (
    auto_connector,
    blacklist,
    buffered_reads,
    circuit,
    delivery,
    frame_events,
    idontwant,
    inbound_limiter,
    logs,
    merged_writes,
    outbound_queue,
    sender_record,
)
from node.net.transport import Transport, TransportConfig, open_transport

PATCHES: list[ModuleType] = [
    importlib.import_module(f"node.net._compat.{info.name}")
    for info in pkgutil.iter_modules(node.net._compat.__path__)
]
MANIFEST = [
    (module.__name__, name, digest)
    for module in PATCHES
    for name, digest in module.UPSTREAM.items()
]
#: Our subclasses of upstream classes, each overriding upstream methods.
OVERRIDES = [
    idontwant.CommonsGossipSub,
    delivery.DeliveringPubsub,
    buffered_reads.BufferedReadsPubsub,
    merged_writes.MergedWritesPubsub,
    blacklist.BlacklistPubsub,
    circuit.CommonsCircuitRelay,
]


def resolve(dotted: str) -> Any:
    """The object named ``dotted`` (a module, then attributes), read from each class's own
    ``__dict__``: a method that moved to a base class counts as changed."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        # A module the import hook defers (node/net/_imports.py) is fingerprinted as upstream
        # wrote it.
        upstream = vars(obj).get("__upstream__")
        if upstream is not None:
            obj = upstream()
        for name in parts[i:]:
            obj = vars(obj)[name] if isinstance(obj, type) else getattr(obj, name)
        return obj
    raise AssertionError(f"nothing importable in {dotted}")


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()


def test_every_patch_module_says_what_it_patches_and_fingerprints_it() -> None:
    assert {m.__name__.rsplit(".", 1)[1] for m in PATCHES} >= {
        "auto_connector",
        "blacklist",
        "buffered_reads",
        "delivery",
        "dial_cache",
        "frame_events",
        "idontwant",
        "inbound_limiter",
        "listeners",
        "logs",
        "mdns",
        "merged_writes",
        "outbound_queue",
        "sender_record",
        "yamux_env",
    }
    for module in PATCHES:
        assert module.UPSTREAM, f"{module.__name__} fingerprints nothing"
        if module is not node.net._compat.host:
            doc = module.__doc__ or ""
            for part in ("Patch:", "Why:", "Upstream bug:", "On upgrade:"):
                assert part in doc, f"{module.__name__}'s docstring lacks {part!r}"


@pytest.mark.parametrize(("patch", "upstream", "recorded"), MANIFEST)
def test_upstream_source_is_what_the_patch_was_written_against(
    patch: str, upstream: str, recorded: str
) -> None:
    try:
        obj = resolve(upstream)
    except (KeyError, AttributeError):
        pytest.fail(f"{upstream} is gone from py-libp2p: the patch in {patch} must be reviewed")
    actual = fingerprint(obj)
    assert actual == recorded, (
        f"{upstream} changed upstream: review the patch in {patch}, then record {actual}"
    )


@pytest.mark.parametrize("cls", OVERRIDES, ids=lambda c: c.__name__)
def test_each_override_replaces_a_fingerprinted_upstream_method(cls: type) -> None:
    """A renamed upstream method would leave our override as dead code."""
    upstream = next(b for b in cls.__mro__ if b.__module__.startswith("libp2p."))
    module = inspect.getmodule(cls)
    assert module is not None
    for name, member in vars(cls).items():
        if not inspect.isfunction(member):
            continue
        owner = next((b for b in upstream.__mro__ if name in vars(b)), None)
        assert owner is not None, f"{cls.__name__}.{name} overrides nothing in {upstream}"
        key = f"{owner.__module__}.{owner.__qualname__}.{name}"
        assert key in module.UPSTREAM, f"{key} is overridden but not fingerprinted"


def test_the_demoted_log_messages_are_still_logged_upstream() -> None:
    for logger_name, patterns in logs.EXPECTED_ERRORS.items():
        source = inspect.getsource(importlib.import_module(logger_name))
        for pattern in patterns:
            literal = re.split(r"[\\(\[]", pattern)[0]
            assert literal in source, f"{logger_name} no longer logs {literal!r}: review logs.py"


def test_routine_dht_failures_are_demoted_and_others_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed DHT query is routine (a peer gone, a client asked); a failure to load the
    provider store is not."""
    logs.install()
    store = logging.getLogger("libp2p.kad_dht.provider_store")
    with caplog.at_level(logging.INFO):
        store.warning("Failed to get providers from 12D3KooWexample: No known addresses")
        logging.getLogger("libp2p.kad_dht.peer_routing").warning("Failed to open stream to X: y")
        store.warning("Failed to load provider records: disk full")
    assert [r.getMessage() for r in caplog.records] == [
        "Failed to load provider records: disk full"
    ]


def test_the_sender_record_functions_have_no_unpatched_callers() -> None:
    """A third pubsub module calling them per RPC would bypass the cache silently."""
    root = Path(libp2p.pubsub.__file__).parent
    callers = set()
    for path in root.rglob("*.py"):
        if re.search(r"\b(env_to_send_in_RPC|maybe_consume_signed_record)\(", path.read_text()):
            callers.add("libp2p.pubsub." + ".".join(path.relative_to(root).with_suffix("").parts))
    defining = {"libp2p.pubsub.utils"}
    patched = {m.__name__ for m in sender_record.PATCHED_MODULES}
    assert callers - defining == patched | set(sender_record.UNPATCHED_CALLERS)


def test_the_pinned_version_is_checked_at_import() -> None:
    assert importlib.metadata.version("libp2p") == "0.8.1"
    check_libp2p_version(lambda dist: "0.8.1", environ={})
    with pytest.raises(Libp2pVersionError, match=r"0\.8\.1.*0\.9\.0.*COMMONS_ALLOW"):
        check_libp2p_version(lambda dist: "0.9.0", environ={})
    with pytest.raises(Libp2pVersionError, match="no version"):
        check_libp2p_version(lambda dist: None, environ={ALLOW_VERSION_ENV: "0"})
    check_libp2p_version(lambda dist: "0.9.0", environ={ALLOW_VERSION_ENV: "1"})


def test_patches_fail_loudly_on_objects_without_their_target() -> None:
    class Bare:
        pass

    with pytest.raises(AttributeError):
        outbound_queue.widen(Bare())  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        inbound_limiter.lift_inbound_limit(Bare())  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        auto_connector.disable_auto_connector(Bare())  # type: ignore[arg-type]


async def test_every_attribute_a_patch_reads_exists_on_a_real_host() -> None:
    seeds = [hashlib.sha256(b"patches-%d" % i).digest() for i in range(2)]
    configs = [TransportConfig(seed=s, listen=("/ip4/127.0.0.1/tcp/0",)) for s in seeds]
    with trio.fail_after(20):
        async with open_transport(configs[0]) as a, open_transport(configs[1]) as b:
            await a.connect(b.listen_addrs()[0])
            for t in (a, b):
                await t.subscribe("patches")
            while not a.mesh_peers("patches"):  # noqa: ASYNC110 (no event for the mesh)
                await trio.sleep(0.01)
            _check_host(a, b.peer_id)


def _check_host(t: Transport, other: str) -> None:
    host, pubsub = t._host, t._pubsub
    network = host.get_network()
    assert isinstance(network, Swarm)
    # inbound_limiter, auto_connector, dial_cache, listeners
    assert isinstance(network._inbound_limiter, trio.CapacityLimiter)
    assert network._inbound_limiter.total_tokens == inbound_limiter.UNLIMITED_INBOUND
    assert isinstance(network.auto_connector, AutoConnector)
    assert network.auto_connector.maybe_connect is auto_connector._never_dial
    assert callable(network.unblock_peer)
    assert network.listeners
    assert all(hasattr(x, "close") for x in network.listeners.values())
    # delivery, buffered_reads, merged_writes, outbound_queue, idontwant, host (mesh, cache)
    assert isinstance(pubsub, Pubsub)
    assert isinstance(pubsub.router, GossipSub)
    assert isinstance(pubsub.router, idontwant.CommonsGossipSub)
    assert [str(p) for p in pubsub.router.mesh["patches"]] == [other]
    assert isinstance(pubsub.validation_cache, ValidationCache)
    assert pubsub.validation_cache.ttl < 0
    (queue,) = pubsub.peer_queues.values()
    assert isinstance(queue, RpcQueue)
    assert isinstance(queue._queue, PriorityQueue)
    assert queue._queue.max_size == outbound_queue.OUTBOUND_QUEUE_RPCS
    # sender_record, yamux_env, frame_events
    for module in sender_record.PATCHED_MODULES:
        assert module.env_to_send_in_RPC is sender_record._sender_record  # type: ignore[attr-defined]
        consume = module.maybe_consume_signed_record  # type: ignore[attr-defined]
        assert consume is sender_record._consume_sender_record
    assert hasattr(yamux._py_yamux_env, "cache_info")
    assert hasattr(yamux._py_yamux_env_set, "cache_info")
    assert yamux.read_exactly is frame_events._read_exactly_noting_frames  # type: ignore[attr-defined]
    (conn,) = network.get_connections(pubsub.router.mesh["patches"].copy().pop())
    muxed = conn.muxed_conn
    assert isinstance(muxed, Yamux)
    assert not muxed.is_closed
    assert isinstance(muxed._ping_sent_time, float)
    assert muxed.secured_conn is not None
    assert callable(muxed._write_frame)


class _Stub:
    """The parts of a Pubsub that a blacklisted peer's teardown touches."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.closed: list[str] = []
        self.removed: list[Any] = []
        self.forgotten: list[Any] = []
        stub = self

        class Stream:
            async def reset(self) -> None:
                # The reset is a checkpoint: the peer's own teardown (its stream's reader
                # seeing the end, or the dropped connection) runs meanwhile.
                await trio.lowlevel.checkpoint()
                stub.dead(peer)

        class Queue:
            def close(self) -> None:
                stub.closed.append("queue")

        class Router:
            def remove_peer(self, pid: Any) -> None:
                stub.removed.append(pid)

        self.stream = Stream()
        self.peers: dict[Any, Any] = {peer: self.stream}
        self.peer_queues: dict[Any, Any] = {peer: Queue()}
        self.router = Router()
        self.race = True

    def dead(self, pid: Any) -> None:
        if self.race and pid in self.peers:  # what _handle_dead_peer does
            del self.peers[pid]
            self.peer_queues.pop(pid).close()
            self.router.remove_peer(pid)

    def _forget_all_subscriptions(self, pid: Any) -> None:
        self.forgotten.append(pid)


async def test_a_blacklisted_peers_teardown_survives_its_own_teardown_meanwhile() -> None:
    """Upstream's teardown deletes the peer after an await and raises KeyError when the peer
    was torn down meanwhile (which stops the pubsub service); the patched one does not, and
    when it wins the race it cleans up as the dead-peer handler would."""
    from libp2p.pubsub.pubsub import Pubsub

    raced = _Stub("peer")
    with pytest.raises(KeyError):
        await Pubsub._teardown_if_connected(raced, "peer")  # type: ignore[arg-type]
    raced = _Stub("peer")
    await blacklist.BlacklistPubsub._teardown_if_connected(raced, "peer")  # type: ignore[arg-type]
    assert raced.peers == {}
    assert (raced.closed, raced.removed, raced.forgotten) == (["queue"], ["peer"], ["peer"])
    alone = _Stub("peer")
    alone.race = False  # the teardown wins: it closes the queue and tells the router
    await blacklist.BlacklistPubsub._teardown_if_connected(alone, "peer")  # type: ignore[arg-type]
    assert (alone.peers, alone.peer_queues) == ({}, {})
    assert (alone.closed, alone.removed, alone.forgotten) == (["queue"], ["peer"], ["peer"])
