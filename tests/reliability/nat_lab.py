"""A home router in Linux network namespaces, for the NAT test (needs root, ``ip`` and ``nft``).

Layout (every name starts with ``rl<pid>-``): ``pub`` holds a bridge, the "internet"
10.77.0.0/24, on which ``seed`` (10.77.0.10), ``open`` (10.77.0.11) and the router ``nat``
(10.77.0.1, its WAN side) sit. Behind the router, ``home`` (192.168.77.10) has the router's
LAN side (192.168.77.1) as its default route; the router forwards and masquerades what
leaves by its WAN (nftables ``masquerade``), as a home router does. Nobody on the internet
has a route to 192.168.77.0/24, and the router forwards no port inwards: ``home`` can dial
out, and nothing can dial it. ``NatLab(homes=2)`` adds ``home2`` (192.168.78.10) behind a
second such router, ``nat2`` (10.77.0.2).

The test process reaches a node's loopback API from a thread that joined the node's
namespace (``call``), as ``netns_lab.py`` does.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar

from netns_lab import NETNS_DIR, NetnsUnavailable, _enter, _ip

__all__ = ["NatLab"]

T = TypeVar("T")
PREFIX_RE = re.compile(r"^rl(\d+)-")
PUBLIC = {"seed": "10.77.0.10", "open": "10.77.0.11"}
#: Each home behind its own router: home name -> (router, its WAN, its LAN, the home's IP).
HOMES = {
    "home": ("nat", "10.77.0.1", "192.168.77.1", "192.168.77.10"),
    "home2": ("nat2", "10.77.0.2", "192.168.78.1", "192.168.78.10"),
}
MASQUERADE = """
table ip rlnat {
  chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}
"""


def _sweep() -> None:
    """Delete this lab's namespaces left by a process that no longer runs."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return
    for name in names:
        match = PREFIX_RE.match(name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _ip("netns", "del", name, check=False)
        except PermissionError:
            pass


class NatLab:
    def __init__(self, homes: int = 1) -> None:
        self.homes = list(HOMES)[:homes]
        self.prefix = f"rl{os.getpid()}"
        self.created: list[str] = []
        self._executors: dict[str, concurrent.futures.ThreadPoolExecutor] = {}

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def ip(self, name: str) -> str:
        return HOMES[name][3] if name in HOMES else PUBLIC[name]

    def up(self) -> NatLab:
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        if shutil.which("nft") is None:
            raise NetnsUnavailable("the NAT test needs nft (nftables) for the router")
        _sweep()
        try:
            self._add("pub")
        except (RuntimeError, FileNotFoundError) as exc:
            raise NetnsUnavailable(f"cannot create a network namespace: {exc}") from exc
        pub = self.ns("pub")
        _ip("link", "add", "br0", "type", "bridge", ns=pub)
        _ip("link", "set", "br0", "up", ns=pub)
        for name, ip in PUBLIC.items():
            self._add(name)
            self._wire(name, "eth0", pub, f"p{name}", f"{ip}/24")
            _ip("link", "set", f"p{name}", "master", "br0", ns=pub)
        for home in self.homes:
            router, wan, lan, ip = HOMES[home]
            self._add(router)
            self._wire(router, "wan0", pub, f"p{router}", f"{wan}/24")
            _ip("link", "set", f"p{router}", "master", "br0", ns=pub)
            self._add(home)
            self._wire(home, "eth0", self.ns(router), "lan0", f"{ip}/24")
            _ip("addr", "add", f"{lan}/24", "dev", "lan0", ns=self.ns(router))
            _ip("route", "add", "default", "via", lan, ns=self.ns(home))
            self._run(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self._run(router, ["nft", "-f", "-"], stdin=MASQUERADE)
        return self

    def _wire(self, name: str, dev: str, other_ns: str, peer: str, cidr: str) -> None:
        ns = self.ns(name)
        _ip("link", "add", dev, "netns", ns, "type", "veth", "peer", peer, "netns", other_ns)
        _ip("addr", "add", cidr, "dev", dev, ns=ns)
        _ip("link", "set", dev, "up", ns=ns)
        _ip("link", "set", peer, "up", ns=other_ns)

    def _run(self, name: str, argv: list[str], stdin: str | None = None) -> None:
        proc = subprocess.run(
            [*self.exec_prefix(name), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise NetnsUnavailable(f"{' '.join(argv)} in {name}: {proc.stderr.strip()}")

    def _add(self, name: str) -> None:
        _ip("netns", "add", self.ns(name))
        self.created.append(self.ns(name))
        _ip("link", "set", "lo", "up", ns=self.ns(name))

    def down(self) -> None:
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self._executors.clear()
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        self.created.clear()

    def exec_prefix(self, name: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(name)]

    def call(self, name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a thread inside namespace ``name``."""
        executor = self._executors.get(name)
        if executor is None:
            executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"netns-{name}", initializer=_enter, initargs=(self.ns(name),)
            )
            self._executors[name] = executor
        return executor.submit(fn, *args).result()
