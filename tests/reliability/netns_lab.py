"""A small private network of Linux network namespaces, for partition tests (needs root).

Layout: one namespace ``<prefix>-sw`` holds two bridges, ``brA`` and ``brB``; each node gets a
namespace ``<prefix>-n<i>`` with ``eth0`` (address ``10.231.<net>.<10 + i>/24``) whose veth peer
``p<i>`` sits in the switch namespace. Healed, every port is on ``brA``: one LAN. Partitioned,
the ports of one half move to ``brB``, which has no link to ``brA``: packets between the halves
go nowhere, exactly like a cut cable (TCP connections are not reset; they stall).

Every address lives inside these namespaces; nothing is configured in the caller's namespace.
``NetnsLab.down`` deletes the namespaces (the veth pairs and bridges go with them); the lab
is a context manager, and ``sweep_stale`` removes the leftovers of a run that was killed.

The test process reaches a node's loopback API from a thread that has joined the node's
namespace with ``setns(2)`` (a network namespace is a per-thread property on Linux):
``lab.call(i, fn, *args)`` runs ``fn`` on such a thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["NetnsLab", "NetnsUnavailable", "sweep_stale"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
#: Namespace names: ``<prefix><pid>-<n>-...``, so that a sweep knows whose they were; runs
#: sharing a machine set ``COMMONS_NETNS_PREFIX`` apart (letters only).
PREFIX = os.environ.get("COMMONS_NETNS_PREFIX", "crl")


class NetnsUnavailable(Exception):
    """Network namespaces cannot be created here (not root, no ``ip``, a container)."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def sweep_stale(prefix: str = PREFIX) -> None:
    """Delete the namespaces named ``prefix`` left by a process that no longer runs."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _ip("netns", "del", name, check=False)
        except PermissionError:
            pass


class NetnsLab:
    def __init__(self, nodes: int, *, net: int = 231, prefix: str = PREFIX) -> None:
        self.n = nodes
        self.kind = prefix
        self.prefix = f"{prefix}{os.getpid()}-{id(self) % 10_000}"
        self.switch = f"{self.prefix}-sw"
        self.net = net
        self.created: list[str] = []
        self._executors: dict[int, concurrent.futures.ThreadPoolExecutor] = {}

    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def ip(self, i: int) -> str:
        return f"10.{self.net}.0.{10 + i}"

    # ---- life cycle

    def up(self) -> NetnsLab:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        sweep_stale(self.kind)
        try:
            self._add(self.switch)
        except (RuntimeError, FileNotFoundError) as exc:
            raise NetnsUnavailable(f"cannot create a network namespace: {exc}") from exc
        for bridge in ("brA", "brB"):
            _ip("link", "add", bridge, "type", "bridge", ns=self.switch)
            _ip("link", "set", bridge, "up", ns=self.switch)
        for i in range(self.n):
            ns = self.ns(i)
            self._add(ns)
            _ip(
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                f"p{i}",
                "netns",
                self.switch,
            )
            _ip("addr", "add", f"{self.ip(i)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)
            _ip("link", "set", f"p{i}", "master", "brA", ns=self.switch)
            _ip("link", "set", f"p{i}", "up", ns=self.switch)
        return self

    def _add(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("link", "set", "lo", "up", ns=name)

    def down(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()
        for name in reversed(self.created):
            _ip("netns", "del", name, check=False)
        self.created.clear()

    def __enter__(self) -> NetnsLab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ---- faults

    def partition(self, side_b: set[int]) -> None:
        """Cut the nodes in ``side_b`` off from the others (they still reach each other)."""
        for i in range(self.n):
            bridge = "brB" if i in side_b else "brA"
            _ip("link", "set", f"p{i}", "master", bridge, ns=self.switch)

    def heal(self) -> None:
        self.partition(set())

    # ---- running things inside

    def exec_prefix(self, i: int) -> list[str]:
        """Prepend to an argv to run it in node ``i``'s namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    def call(self, i: int, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``fn(*args, **kw)`` on a thread inside node ``i``'s network namespace."""
        executor = self._executors.get(i)
        if executor is None:
            executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{i}", initializer=_enter, initargs=(self.ns(i),)
            )
            self._executors[i] = executor
        return executor.submit(fn, *args, **kw).result()


def _enter(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
    finally:
        os.close(fd)


@contextlib.contextmanager
def lab(nodes: int) -> Iterator[NetnsLab]:
    with NetnsLab(nodes) as running:
        yield running
